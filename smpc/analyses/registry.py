"""The analysis catalogue: named SPMD functions with typed parameters that banks approve.

An analysis is ``fn(ctx, table, owners, **params) -> dict``:

- ``ctx`` is this rank's ``smpc.Context``;
- ``table`` is this rank's input as a pandas DataFrame, or None on a rank that holds no data;
  an analysis registered with ``streams=True`` also takes a ``smpc.sources.TableSource`` (a
  file read in batches), and the party service and ``smpc analyze`` hand it one, so that its
  local aggregation holds a batch of rows at a time, not the table;
- ``owners`` lists the ranks that hold data, in a fixed order every rank agrees on (in the
  party service the three banks are the three compute parties, ranks 0..2; in a local
  simulation banks may also be input parties, ranks >= 3);
- ``params`` are the typed parameters of its schema, already parsed and validated;
- the returned dict holds only revealed values (JSON-serialisable numbers, strings, lists),
  and is the same on every rank that receives the result (ranks that receive nothing may
  return None).

Every analysis is registered with ``@register`` together with its parameter schema and a
plaintext twin, ``plaintext(tables: {bank: DataFrame}, **params) -> dict``, that computes
the same dict in the clear (for tests and ``--check``). An optional
``check(table, party, **params)`` validates one bank's table locally and raises
``InputError`` naming the party, column and problem; the party service runs it while every
party decides whether to accept a job, before any share moves. Its docstring has a one-line summary
and ``Leakage:`` and ``Cost:`` sections; registration refuses a function without them.

Analyses that release statistics over records declare a ``min_cell_size`` parameter and
suppress any statistic over fewer records; the party service raises it to the largest of the
parties' policy minimums, and a party whose policy sets a minimum refuses analyses without one.
Analyses that release no per-group statistics -- the private-join analyses, whose answers are
about the receiving bank's own customers -- register with ``releases_cells=False``: a
minimum cell size does not apply to them, and a bank approves them (and their ``Leakage:``)
by naming them in its policy's ``allowed_analyses``.

Parameters that describe the values in the rows (a bound, decimal places, a list of group
keys, the join salt) are marked ``Param(owner=...)``: in the party service each bank sets them
from its own data configuration and a requester may not send them (see ``Param.owner``).

An analysis with a ``requester`` parameter answers that bank only (``blacklist_hits``): the
party service binds the parameter to the authenticated identity of the job's requester and
refuses any other recipient.

Only names from this catalogue travel over the wire: code is never accepted from a peer or a
client.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import math
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from smpc import simulation
from smpc.context import DEFAULT_TIMEOUT
from smpc.errors import InputError, SmpcError
from smpc.sharing import COMPUTE_RANKS, N_COMPUTE
from smpc.sources import as_frame

PARAM_TYPES = ("int", "float", "str", "bool", "column", "columns", "floats", "strs")
"""``column``: one column name; ``columns``/``strs``: a list of names (comma-separated on the
command line); ``floats``: a list of numbers."""

MIN_CELL_SIZE = "min_cell_size"
REQUESTER = "requester"
MIN_CONTRIBUTORS = "min_contributors"
MAX_DOMINANCE = "max_dominance"
DP_EPSILON = "dp_epsilon"

COLUMN_SETTINGS = ("bound", "decimals", "total_bound", "categories")
SOURCE_SETTINGS = ("dp_customer", "dp_rows_per_customer")
OWNER_SETTINGS = (*COLUMN_SETTINGS, *SOURCE_SETTINGS, "join_salt")
"""Where a data owner declares a value-dependent parameter (``Param.owner``): a column
setting in ``[data.NAME.columns]`` (``bound``, ``decimals``, ``total_bound``: the largest sum
over one customer's rows, ``categories``), a data source's privacy setting in
``[data.NAME.dp]`` (``dp_customer``: its customer id column, ``dp_rows_per_customer``: the
most rows of one customer a differentially private job keeps), or the consortium's join
salt (``join_salt``)."""
LOCAL_SETTINGS = ("join_salt", "dp_customer")
"""Owner settings each party uses as its own and that never travel: the salt is a secret,
and each bank caps its rows by its own customer column, whatever the others call theirs."""

JOIN_SALT_LABEL = b"smpc join salt fingerprint v1"

TRUE_WORDS = frozenset({"true", "1", "yes", "y", "t", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "f", "off"})
"""What a boolean parameter or a ``bool`` data column accepts (after stripping and lowering
case), in the party service and on the command line alike."""


@dataclass(frozen=True)
class Param:
    """One typed parameter of an analysis."""

    name: str
    type: str
    required: bool = False
    default: Any = None
    description: str = ""
    choices: tuple | None = None
    secret: bool = False
    """A value the audit logs must not hold (e.g. the join's salt): they record a fingerprint."""
    owner: str | None = None
    """Set by each data owner, not by a requester: the setting in ``OWNER_SETTINGS`` it comes
    from. Such a parameter depends on the values in a bank's rows, so a requester who could
    choose it would learn from the refusals where the rows lie; the party service fills it from
    every bank's own configuration (of the column named by ``owner_column``) and refuses a job
    that sends it. A local run (``smpc analyze``), where every file is on one machine, takes it
    as any other parameter."""
    owner_column: str | None = None
    """The column parameter (``column`` or ``columns``) whose declared columns set ``owner``."""
    per_column: str | None = None
    """The column parameter whose columns key this one: its value is {column: value},
    written ``NAME.COLUMN=VALUE`` on the command line and the wire (``edges.age=20,30``), and
    a column may go without. An owner-set one holds the setting of each column that declares
    it (``owner_column`` is the same parameter)."""

    def __post_init__(self):
        if self.owner is not None and self.owner not in OWNER_SETTINGS:
            raise SmpcError(f"parameter '{self.name}': unknown owner setting '{self.owner}' "
                            f"(one of {', '.join(OWNER_SETTINGS)})")
        if (self.owner in COLUMN_SETTINGS) != (self.owner_column is not None):
            raise SmpcError(f"parameter '{self.name}': a column setting needs owner_column, and only it")
        if self.per_column is not None and self.owner is not None and self.owner_column != self.per_column:
            raise SmpcError(f"parameter '{self.name}': an owner setting per column comes from that column parameter")
        if self.type not in PARAM_TYPES:
            raise SmpcError(f"parameter '{self.name}': unknown type '{self.type}' (one of {', '.join(PARAM_TYPES)})")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise SmpcError(f"parameter name '{self.name}' must be lower_snake_case")

    @property
    def is_column(self) -> bool:
        return self.type in ("column", "columns")

    def parse(self, raw: Any, analysis: str = "") -> Any:
        """The typed value of ``raw`` (a string from the command line or the wire, or an
        already-typed Python value); ``InputError`` naming the parameter otherwise."""
        where = f"{analysis}: parameter '{self.name}'" if analysis else f"parameter '{self.name}'"
        if raw is None:
            return None
        if self.per_column is not None:
            if not isinstance(raw, Mapping):
                raise InputError(f"{where}: expected one value per column ({self.name}.COLUMN=VALUE)")
            return {str(col): self._parse_one(v, f"{where[:-1]}.{col}'") for col, v in raw.items()}
        return self._parse_one(raw, where)

    def _parse_one(self, raw: Any, where: str) -> Any:
        try:
            value = self._convert(raw)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{where}: {exc}") from None
        if self.choices is not None and value not in self.choices:
            raise InputError(f"{where}: {value!r} is not one of {', '.join(map(str, self.choices))}")
        return value

    def _convert(self, raw: Any) -> Any:
        t = self.type
        if t == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in TRUE_WORDS:
                return True
            if text in FALSE_WORDS:
                return False
            raise ValueError(f"{raw!r} is not a boolean (true/false)")
        if t == "int":
            if isinstance(raw, bool):
                raise ValueError(f"{raw!r} is not an integer")
            if isinstance(raw, int):
                return raw
            if isinstance(raw, float):
                if not raw.is_integer():
                    raise ValueError(f"{raw!r} is not an integer")
                return int(raw)
            text = str(raw).strip()
            if not re.fullmatch(r"[+-]?\d+", text):
                raise ValueError(f"{raw!r} is not an integer")
            return int(text)
        if t == "float":
            if isinstance(raw, bool):
                raise ValueError(f"{raw!r} is not a number")
            value = float(raw) if not isinstance(raw, str) else float(raw.strip())
            if not math.isfinite(value):
                raise ValueError(f"{raw!r} is not a finite number")
            return value
        if t in ("str", "column"):
            if not isinstance(raw, str):
                raise ValueError(f"{raw!r} is not a string")
            if t == "column" and not raw.strip():
                raise ValueError("an empty column name")
            return raw
        items = _as_list(raw)
        if t == "floats":
            values = [float(x) for x in items]
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"{raw!r} holds a value that is not a finite number")
            return values
        if t == "columns" and not items:
            raise ValueError("an empty list of columns")
        return [str(x) for x in items]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "default": self.default,
            "description": self.description,
            **({"choices": list(self.choices)} if self.choices is not None else {}),
            **({"set_by_data_owner": self.owner} if self.owner is not None else {}),
            **({"per_column_of": self.per_column} if self.per_column is not None else {}),
        }


def _as_list(raw: Any) -> list:
    if isinstance(raw, str):
        return [x.strip() for x in raw.split(",") if x.strip()]
    if isinstance(raw, (list, tuple)):
        return list(raw)
    raise TypeError(f"{raw!r} is not a list")


@dataclass(frozen=True)
class Analysis:
    """A registered analysis: its SPMD function, schema, plaintext twin and documentation."""

    name: str
    fn: Callable
    params: tuple[Param, ...]
    plaintext: Callable
    summary: str
    leakage: str
    cost: str
    ring: int = 128
    module: str = ""
    check: Callable | None = None
    releases_cells: bool = True
    streams: bool = False
    """It reads its table in batches (it takes a ``TableSource`` as well as a DataFrame)."""
    _by_name: dict = field(default_factory=dict, compare=False, repr=False)

    def param(self, name: str) -> Param | None:
        return self._by_name.get(name)

    @property
    def has_min_cell_size(self) -> bool:
        return MIN_CELL_SIZE in self._by_name

    @property
    def owner_params(self) -> tuple[Param, ...]:
        """The parameters each data owner sets (``Param.owner``), in schema order."""
        return tuple(p for p in self.params if p.owner is not None)

    @property
    def requester_only(self) -> bool:
        """Its result is for the bank named by its ``requester`` parameter only."""
        return REQUESTER in self._by_name

    def parse_params(self, raw: Mapping[str, Any]) -> dict:
        """Typed parameters with defaults filled in. Unknown or missing required parameters
        and values of the wrong type raise ``InputError`` naming the parameter. A per-column
        parameter (``Param.per_column``) may come as ``NAME.COLUMN`` keys, each naming one of
        the columns of its column parameter."""
        raw = self._gather_per_column(raw)
        unknown = sorted(set(raw) - set(self._by_name))
        if DP_EPSILON in unknown:
            offer = ", ".join(a.name for a in analyses() if a.param(DP_EPSILON) is not None) or "none"
            raise InputError(f"{self.name}: no differentially private release (parameter 'dp_epsilon'): its outputs "
                             f"have no public bound on what one customer changes; the analyses that offer one: {offer}")
        if "dp_delta" in unknown:
            # the parameter a Gaussian mechanism would take: say what is offered instead
            raise InputError(f"{self.name}: no approximate (epsilon, delta) release (parameter 'dp_delta'): smpc "
                             "offers pure epsilon-DP with the discrete Laplace mechanism only (dp_epsilon; docs/dp.md)")
        if unknown:
            known = ", ".join(p.name for p in self.params) or "none"
            raise InputError(f"{self.name}: unknown parameter(s) {', '.join(unknown)} (it takes: {known})")
        out = {}
        for p in self.params:
            if p.name in raw and raw[p.name] is not None:
                out[p.name] = p.parse(raw[p.name], self.name)
            elif p.required:
                raise InputError(f"{self.name}: parameter '{p.name}' is required ({p.description})")
            else:
                out[p.name] = p.default
        for p in self.params:
            if p.per_column is not None and out.get(p.name):
                listed = out.get(p.per_column) or []
                listed = [listed] if isinstance(listed, str) else listed
                stray = [c for c in out[p.name] if c not in listed]
                if stray:
                    raise InputError(f"{self.name}: parameter '{p.name}.{stray[0]}' names a column that is not "
                                     f"in '{p.per_column}' ({', '.join(listed) or 'none'})")
        return out

    def _gather_per_column(self, raw: Mapping[str, Any]) -> dict:
        """``raw`` with every ``NAME.COLUMN`` key of a per-column parameter gathered into
        ``NAME`` = {COLUMN: value}; other keys as they are."""
        out: dict[str, Any] = {}
        for key, value in raw.items():
            name, dot, col = key.partition(".")
            p = self._by_name.get(name)
            if not dot or p is None or p.per_column is None:
                out[key] = value
                continue
            if not col:
                raise InputError(f"{self.name}: parameter {key!r} names no column")
            into = out.setdefault(name, {})
            if not isinstance(into, dict):
                raise InputError(f"{self.name}: parameter '{name}' is given both whole and per column")
            into[col] = value
        return out

    def columns(self, params: Mapping[str, Any]) -> list[str]:
        """The input columns named by (parsed) parameters, in schema order, without repeats."""
        cols: list[str] = []
        for p in self.params:
            if not p.is_column:
                continue
            value = params.get(p.name)
            for c in [value] if isinstance(value, str) else (value or []):
                if c not in cols:
                    cols.append(c)
        return cols

    def describe(self) -> dict:
        return {
            "name": self.name,
            "summary": self.summary,
            "leakage": self.leakage,
            "cost": self.cost,
            "ring": self.ring,
            "params": [p.describe() for p in self.params],
        }

    def check_input(self, table, party: str, params: Mapping[str, Any]) -> None:
        """Run the analysis' local input check (if it has one) on one bank's table."""
        if self.check is not None and table is not None:
            self.check(table, party, **params)

    def run_plaintext(self, tables: Mapping[str, Any], **params) -> dict:
        """The plaintext twin on {bank: DataFrame} (a ``TableSource`` is read whole), with the
        same parameter parsing."""
        return self.plaintext({bank: as_frame(t) for bank, t in tables.items()}, **self.parse_params(params))

    def run_simulated(self, tables: Mapping[str, Any], *, ring: int | None = None, timeout: float = DEFAULT_TIMEOUT,
                      result_ranks: Sequence[int] | None = None, **params) -> dict:
        """Run the analysis on secret shares in this process and return its result
        (``run_local`` with ``params`` parsed first)."""
        result, _ = self.run_local(tables, self.parse_params(params), ring=ring, timeout=timeout,
                                   result_ranks=result_ranks)
        return result

    def run_local(self, tables: Mapping[str, Any], params: Mapping[str, Any], *, ring: int | None = None,
                  timeout: float = DEFAULT_TIMEOUT, result_ranks: Sequence[int] | None = None,
                  progress: Callable[[float, str], None] | None = None) -> tuple[dict, dict]:
        """(result, cost) of the analysis on secret shares, every party simulated in this
        process (``smpc.simulate``); ``params`` are typed already (``parse_params``).

        Up to three banks are the compute parties themselves (ranks 0..n-1); with more banks
        every bank is an input party (ranks 3..) and the compute parties hold no data.
        ``result_ranks``: the ranks results are opened to (default: the compute parties and
        every bank). The result is the first that a rank received, with every rank's
        ``by_bank`` parts merged (``merge_by_bank``); cost = {"rounds", "bytes",
        "bytes_per_party"} measured from every party's ``comm_stats``. ``progress(fraction,
        stage)`` hears rank 0's ``report_progress``.
        """
        banks = list(tables)
        if not banks:
            raise InputError(f"{self.name}: no input tables")
        owners, names, extra = bank_layout(banks)
        inputs = {rank: {"table": tables[bank]} for rank, bank in zip(owners, banks, strict=True)}
        if result_ranks is None:
            result_ranks = sorted(set(COMPUTE_RANKS) | set(owners))

        def job(ctx, table=None):
            if progress is not None and ctx.rank == 0:
                set_progress_hook(ctx, progress)
            return self.fn(ctx, table, owners, **params), ctx.comm_stats()

        outcomes = simulation.simulate(job, ring=ring or self.ring, inputs=inputs, input_parties=extra,
                                       timeout=timeout, party_names=names, result_ranks=result_ranks)
        results = [r for r, _ in outcomes]
        result = next((r for r in results if r is not None), None)
        if result is None:
            raise SmpcError(f"{self.name}: no rank received a result")
        stats = [s for _, s in outcomes]
        cost = {
            "rounds": max(s["rounds"] for s in stats),
            "bytes": sum(s["bytes_sent"] for s in stats),
            "bytes_per_party": {names[r]: s["bytes_sent"] for r, s in enumerate(stats)},
        }
        return merge_by_bank(result, results), cost


def bank_layout(banks: Sequence[str]) -> tuple[list[int], list[str], int]:
    """(owner ranks, party names by rank, number of input parties) for a local simulation:
    up to three banks are the compute parties themselves, more banks are input parties."""
    banks = list(banks)
    if len(banks) <= N_COMPUTE:
        return list(range(len(banks))), banks + [f"compute_{r}" for r in range(len(banks), N_COMPUTE)], 0
    owners = list(range(N_COMPUTE, N_COMPUTE + len(banks)))
    return owners, [f"compute_{r}" for r in range(N_COMPUTE)] + banks, len(banks)


def merge_by_bank(result, results: list):
    """Analyses whose banks each receive their own part (``by_bank``: multi_lending) are shown
    as the consortium view, every rank's ``by_bank`` entries merged; others are unchanged."""
    parts = [r for r in results if isinstance(r, dict) and isinstance(r.get("by_bank"), dict)]
    if not isinstance(result, dict) or "by_bank" not in result or len(parts) < 2:
        return result
    return {**result, "by_bank": {bank: v for r in parts for bank, v in r["by_bank"].items()}}


_REGISTRY: dict[str, Analysis] = {}

_SECTION = re.compile(r"^([A-Z][A-Za-z ]*):\s*(.*)$")


def _doc_sections(doc: str) -> tuple[str, dict[str, str]]:
    """(summary line, {section: text}) of a docstring with ``Name:`` section headings."""
    lines = doc.strip().splitlines()
    summary = lines[0].strip() if lines else ""
    sections: dict[str, list[str]] = {}
    current = None
    for line in lines[1:]:
        m = _SECTION.match(line.strip())
        if m and not line.startswith((" ", "\t")):
            current = m.group(1)
            sections[current] = [m.group(2)] if m.group(2) else []
        elif current is not None:
            sections[current].append(line.strip())
    return summary, {k: " ".join(x for x in v if x).strip() for k, v in sections.items()}


def secret_fingerprint(value: str | bytes) -> str:
    """``hmac-sha256:`` and the first 16 hex digits of HMAC-SHA256 keyed by ``value`` over a
    fixed label: equal values give equal fingerprints, and without the value nobody can test a
    guess against it (an unkeyed hash of a low-entropy secret could be searched)."""
    key = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return "hmac-sha256:" + hmac.new(key, JOIN_SALT_LABEL, hashlib.sha256).hexdigest()[:16]


def audit_params(name: str, params: Mapping[str, Any]) -> dict:
    """``params`` as an audit log may hold them: the value of every ``secret`` parameter of
    analysis ``name`` is replaced by its ``secret_fingerprint``, so operators can check that
    every party used the same value without storing it."""
    try:
        analysis = get(name)
    except SmpcError:
        return dict(params)
    out = {}
    for key, value in params.items():
        param = analysis.param(key)
        if param is not None and param.secret and value is not None:
            value = secret_fingerprint(str(value))
        out[key] = value
    return out


def register(name: str | None = None, *, params: Sequence[Param] = (), plaintext: Callable, ring: int = 128,
             check: Callable | None = None, replace: bool = False, releases_cells: bool = True,
             streams: bool = False) -> Callable:
    """Decorator: add ``fn`` to the catalogue under ``name`` (default: the function's name).

    ``releases_cells=False`` declares that the analysis releases no statistics over groups of
    records, so a policy's minimum cell size does not apply to it (see the module docstring).
    ``streams=True`` declares that it reads its table in batches, so that it may be handed a
    ``smpc.sources.TableSource`` rather than a DataFrame.
    Refuses a docstring without ``Leakage:`` and ``Cost:`` sections, parameters the function
    does not accept, and a second analysis of the same name (unless ``replace``).
    """

    def decorate(fn: Callable) -> Callable:
        key = name or fn.__name__
        doc = inspect.getdoc(fn) or ""
        summary, sections = _doc_sections(doc)
        missing = [s for s in ("Leakage", "Cost") if not sections.get(s)]
        if missing:
            raise SmpcError(f"analysis '{key}': its docstring needs {' and '.join(s + ':' for s in missing)} sections")
        sig = inspect.signature(fn)
        accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
        positional = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) < 3 or [p.name for p in positional[:3]] != ["ctx", "table", "owners"]:
            raise SmpcError(f"analysis '{key}': the function must start with (ctx, table, owners)")
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise SmpcError(f"analysis '{key}': a parameter is declared twice")
        for p in params:
            if not accepts_any and p.name not in sig.parameters:
                raise SmpcError(f"analysis '{key}': the function does not accept parameter '{p.name}'")
            source = next((q for q in params if q.name == p.owner_column), None) if p.owner_column else None
            if p.owner_column is not None and (source is None or not source.is_column):
                raise SmpcError(f"analysis '{key}': parameter '{p.name}' is set from '{p.owner_column}', "
                                "which is not a column parameter of it")
            keyed = next((q for q in params if q.name == p.per_column), None) if p.per_column else None
            if p.per_column is not None and (keyed is None or not keyed.is_column):
                raise SmpcError(f"analysis '{key}': parameter '{p.name}' is given per column of '{p.per_column}', "
                                "which is not a column parameter of it")
        if key in _REGISTRY and not replace and _REGISTRY[key].fn is not fn:
            raise SmpcError(f"an analysis named '{key}' is already registered (from {_REGISTRY[key].module})")
        _REGISTRY[key] = Analysis(
            name=key, fn=fn, params=tuple(params), plaintext=plaintext, summary=summary,
            leakage=sections["Leakage"], cost=sections["Cost"], ring=ring, module=fn.__module__, check=check,
            releases_cells=releases_cells, streams=streams, _by_name={p.name: p for p in params},
        )
        return fn

    return decorate


def get(name: str) -> Analysis:
    """The analysis registered as ``name``; ``InputError`` listing the catalogue otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown analysis '{name}'; the catalogue has: {', '.join(names()) or 'nothing'}") from None


def names() -> list[str]:
    return sorted(_REGISTRY)


def analyses() -> list[Analysis]:
    return [_REGISTRY[n] for n in names()]


# ----- progress --------------------------------------------------------------------------
_progress_hooks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def set_progress_hook(ctx, hook: Callable[[float, str], None] | None) -> None:
    """Route ``report_progress(ctx, ...)`` of the job running on ``ctx`` to ``hook``."""
    if hook is None:
        _progress_hooks.pop(ctx, None)
    else:
        _progress_hooks[ctx] = hook


def report_progress(ctx, fraction: float, stage: str) -> None:
    """Tell whoever runs the job how far it is (0..1) and which stage it is in; a no-op
    unless a hook is set (the party service turns it into job events)."""
    hook = _progress_hooks.get(ctx)
    if hook is not None:
        hook(min(1.0, max(0.0, float(fraction))), stage)
