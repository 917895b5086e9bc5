"""A party's decision on a job request, taken locally before any share moves.

``decide(config, spec)`` applies this party's policy to a job (allowed analyses, the data
sources each may read, allowed columns per analysis, allowed result recipients, minimum cell
size, minimum contributors and maximum dominance, maximum rows), parses the parameters against
the catalogue's schema, fills in the parameters its data configuration sets (``Param.owner``:
bounds, decimals, categories from ``[data.NAME.columns]``, a differentially private job's
customer column and rows-per-customer cap from ``[data.NAME.dp]``, the join salt from ``[join]``),
loads the input columns with their declared types and runs the analysis' own input check.
An analysis that reads its table in batches (``Analysis.streams``: the statistics) gets a
``smpc.sources.TableSource`` instead of a DataFrame: every batch is typed and checked as
``load_table`` does a whole table, with the same row-precise messages, so the party holds a
batch at a time, not its rows (DuckDB reads the file).

A requester may not send a parameter a data owner sets: with a bound of its choosing, the
refusals would tell it where another bank's values lie. Each party answers what it declared
(``Decision.declared``); the coordinator merges the answers (``merge_declared``: the largest
bound, decimals and rows-per-customer cap, the union of categories) and every party checks
that the merged values cover its own declaration (``uncovered``) before it runs with them.
The join salt and the customer column never travel: each party uses its own (a bank caps its
rows by its own id column, which it reads for that only and never shares).

What a refusal says travels to the coordinator, the other banks and the requester, so
``Decision.message`` depends only on the request and this party's configuration; where the
party's own rows break its own declaration it says only that (rule ``data.schema``), and the
row, column and problem go to ``Decision.detail``, which stays in this party's audit log and
its stderr log. An analysis that answers its requester only (a ``requester`` parameter:
``blacklist_hits``) must name the job's authenticated requester, a bank with data, and have no
other recipient; one that releases no per-group statistics (``multi_lending``,
``blacklist_hits``) is not subject to the minimum cell size. Policy refusals are
``PolicyError``, data problems ``InputError``. No grpc here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from smpc.analyses import registry
from smpc.analyses.registry import (
    FALSE_WORDS,
    MAX_DOMINANCE,
    MIN_CELL_SIZE,
    MIN_CONTRIBUTORS,
    REQUESTER,
    TRUE_WORDS,
    Analysis,
)
from smpc.errors import InputError, SmpcError
from smpc.service.config import DataSource, PartyConfig
from smpc.sources import TableSource
from smpc.tables import read_table

DATA_SCHEMA = "data.schema"


@dataclass(frozen=True)
class JobRequest:
    """What every party decides on (the wire's ``JobSpec``)."""

    job_id: str
    analysis: str
    params: Mapping[str, str]
    source: str
    requester: str
    recipients: Sequence[str]
    coordinator: str
    parties: Sequence[str]


@dataclass
class Decision:
    accepted: bool
    party: str
    rule: str = ""
    error_type: str = ""
    message: str = ""
    """Public: what the coordinator, the other banks and the requester are told."""
    detail: str = ""
    """Local only (this party's audit log and stderr): the row, column and problem."""
    min_cell_size: int = 1
    min_contributors: int = 1
    max_dominance: float = 100.0
    declared: dict = field(default_factory=dict)
    """The mergeable parameters this party's configuration sets for the job (not the salt)."""
    salt_fingerprint: str = ""
    params: dict = field(default_factory=dict)
    duplicate_rows: int = 0
    """Local only: rows of the columns read that repeat an earlier row (each still counts)."""
    columns: list[str] = field(default_factory=list)
    rows: int = 0
    table: Any = None

    def as_audit(self) -> dict:
        out = {"decision": "accept" if self.accepted else "refuse"}
        if not self.accepted:
            out.update(rule=self.rule, error_type=self.error_type, reason=self.message)
            if self.detail:
                out["detail"] = self.detail
        else:
            out.update(min_cell_size=self.min_cell_size, columns=self.columns, rows=self.rows)
            if self.declared:
                out["declared"] = self.declared
            if self.salt_fingerprint:
                out["join_salt"] = self.salt_fingerprint
        return out


def decide(config: PartyConfig, req: JobRequest) -> Decision:
    party = config.name
    pol = config.policy

    def refuse(rule: str, what: str, error_type: str = "PolicyError", detail: str = "") -> Decision:
        return Decision(False, party, rule, error_type, f"{party} refuses job {req.job_id}: {what} (rule {rule})",
                        detail)

    if list(req.parties) != list(config.ranks):
        return refuse("compute.ranks",
                      f"the job's rank order {list(req.parties)} differs from ours {list(config.ranks)}")
    if req.analysis not in pol.allowed_analyses:
        return refuse("policy.allowed_analyses", f"analysis '{req.analysis}' is not allowed here")
    try:
        analysis = registry.get(req.analysis)
    except InputError as exc:
        return refuse("catalogue", str(exc), "InputError")
    for p in analysis.owner_params:
        if any(k == p.name or k.startswith(p.name + ".") for k in req.params):
            return refuse("params.owner", f"parameter '{p.name}' is set by each bank's data configuration, "
                                          "not by the requester")
    try:
        params = analysis.parse_params(dict(req.params))
    except InputError as exc:
        return refuse("params", str(exc), "InputError")
    for who in [req.requester, *req.recipients]:
        if who not in pol.allowed_recipients:
            return refuse("policy.allowed_recipients", f"'{who}' may not receive results from this party")
    if analysis.requester_only:
        # the result is for the requesting bank only: it is the authenticated requester, and
        # nobody else may be handed the result
        if params.get(REQUESTER) != req.requester:
            return refuse("params.requester",
                          f"{analysis.name} answers its requester only: parameter 'requester' is "
                          f"{params.get(REQUESTER)!r} but the job was requested by '{req.requester}'")
        if req.requester not in req.parties:
            return refuse("params.requester",
                          f"{analysis.name} answers a bank about its own data: the requester '{req.requester}' "
                          f"is not one of the banks ({', '.join(req.parties)})")
        others = [who for who in req.recipients if who != req.requester]
        if others:
            return refuse("recipients.requester_only",
                          f"{analysis.name} reveals its result to its requester only; "
                          f"{', '.join(repr(w) for w in others)} may not be a recipient")
    # a requester may ask for stricter disclosure control than the policy's, never looser: a
    # looser one is refused rather than raised behind its back, so a result never claims
    # terms the requester did not get
    min_cell = 1
    if analysis.has_min_cell_size:
        if MIN_CELL_SIZE in req.params and params[MIN_CELL_SIZE] < pol.min_cell_size:
            return refuse("policy.min_cell_size", "parameter 'min_cell_size' may raise this party's minimum cell "
                                                  "size, never lower it")
        min_cell = max(int(params.get(MIN_CELL_SIZE) or 1), pol.min_cell_size)
        params[MIN_CELL_SIZE] = min_cell
    elif pol.min_cell_size > 1 and analysis.releases_cells:
        return refuse(
            "policy.min_cell_size",
            f"analysis '{analysis.name}' has no minimum cell size, and this party requires {pol.min_cell_size}",
        )
    min_contributors = min(pol.min_contributors, len(req.parties))
    if analysis.param(MIN_CONTRIBUTORS) is not None:
        if MIN_CONTRIBUTORS in req.params and params[MIN_CONTRIBUTORS] < min_contributors:
            return refuse("policy.min_contributors", "parameter 'min_contributors' may raise this party's "
                                                     "minimum number of contributing banks, never lower it")
        min_contributors = max(params.get(MIN_CONTRIBUTORS) or 0, min_contributors)
        params[MIN_CONTRIBUTORS] = min_contributors
    max_dominance = pol.max_dominance
    if analysis.param(MAX_DOMINANCE) is not None:
        if MAX_DOMINANCE in req.params and params[MAX_DOMINANCE] > max_dominance:
            return refuse("policy.max_dominance", "parameter 'max_dominance' may lower this party's largest "
                                                  "share of one bank in a cell, never raise it")
        requested = params.get(MAX_DOMINANCE)
        max_dominance = min(requested, max_dominance) if requested is not None else max_dominance
        params[MAX_DOMINANCE] = max_dominance
    if req.source not in pol.allowed_sources.get(analysis.name, ()):
        allowed = ", ".join(pol.allowed_sources.get(analysis.name, ())) or "none"
        return refuse("policy.allowed_sources",
                      f"analysis '{analysis.name}' may not read data source '{req.source}' (allowed: {allowed})")
    if pol.dp_required and req.source in pol.dp_budget and params.get("dp_epsilon") is None:
        return refuse("policy.dp.required", f"data source '{req.source}' may be read by differentially private "
                                            "jobs only (parameter 'dp_epsilon')")
    source = config.data.get(req.source)
    if source is None:
        return refuse(
            "data", f"no data source '{req.source}' (this party has: {', '.join(config.data)})", "InputError"
        )
    columns = analysis.columns(params)
    allowed = pol.allowed_columns.get(analysis.name, ())
    for col in columns:
        if col not in allowed:
            return refuse(
                f"policy.allowed_columns.{analysis.name}",
                f"column '{col}' may not be used by {analysis.name} (allowed: {', '.join(allowed) or 'none'})",
            )
    for col in columns:
        if col not in source.columns:
            return refuse(f"data.{source.name}.columns", f"data source '{source.name}' declares no column '{col}'",
                          "InputError")
    try:
        declared, local = owner_values(analysis, params, source, config)
    except _Undeclared as exc:
        return refuse(exc.rule, str(exc))
    params.update(declared)
    params.update(local)
    customer = local.get("dp_customer")
    if customer is not None and customer not in columns:  # read to cap its rows, never shared
        columns = [*columns, customer]
    # the request and this party's configuration alone, on no rows: what fails here is the
    # request's doing, and may be said in full
    try:
        analysis.check_input(empty_table(source, columns), party, params)
    except SmpcError as exc:
        return refuse("params", str(exc), type(exc).__name__)
    schema_refusal = "its data does not match its declared schema"
    try:
        if analysis.streams:
            table = open_table(source, columns, party)
            rows = scan_table(table)
        else:
            table = load_table(source, columns, party)
            rows = len(table)
    except InputError as exc:
        return refuse(DATA_SCHEMA, schema_refusal, "InputError", detail=str(exc))
    if rows > pol.max_rows:
        return refuse("policy.max_rows",
                      f"data source '{source.name}' has more rows than the maximum of {pol.max_rows}")
    try:
        analysis.check_input(table, party, params)
    except SmpcError as exc:
        return refuse(DATA_SCHEMA, schema_refusal, "InputError",
                      detail=f"data source '{source.name}': {type(exc).__name__}: {exc}")
    fingerprint = registry.secret_fingerprint(config.join_salt) if "join_salt" in _owners(analysis, local) else ""
    if isinstance(table, TableSource):
        duplicates = table.duplicate_rows(columns)
        # the job reads the file again when it runs: rows beyond the policy's maximum stop it then too
        table = table.replace(prepare=_at_most(table.prepare, pol.max_rows, f"{party}, data source '{source.name}'"))
    else:
        duplicates = int(table.duplicated().sum()) if len(table.columns) else 0
    return Decision(True, party, min_cell_size=min_cell, min_contributors=min_contributors,
                    max_dominance=max_dominance, declared=declared, salt_fingerprint=fingerprint, params=params,
                    columns=columns, rows=rows, table=table, duplicate_rows=duplicates)


# ----- parameters the data owner sets ------------------------------------------------------
class _Undeclared(SmpcError):
    def __init__(self, message: str, rule: str):
        super().__init__(message)
        self.rule = rule


def _owners(analysis: Analysis, values: Mapping[str, Any]) -> set[str]:
    return {analysis.param(name).owner for name in values}


def owner_values(analysis: Analysis, params: Mapping[str, Any], source: DataSource,
                 config: PartyConfig) -> tuple[dict, dict]:
    """(this party's values of the analysis' owner-set parameters for the job's columns, to be
    merged with the other parties'; the ones it keeps to itself: the join salt, and with
    ``dp_epsilon`` its customer column). Raises ``_Undeclared`` naming the configuration key
    a job needs and this party lacks."""
    declared: dict[str, Any] = {}
    local: dict[str, Any] = {}
    for p in analysis.owner_params:
        if p.owner == "join_salt":
            if config.join_salt is None:
                raise _Undeclared(f"{analysis.name} joins on hashed ids and this party has no consortium join "
                                  "salt (key join.salt_file)", "join.salt_file")
            local[p.name] = config.join_salt
            continue
        if p.owner in registry.SOURCE_SETTINGS:
            if params.get(registry.DP_EPSILON) is None:
                continue  # no noise, no cap
            if p.owner == "dp_customer":
                if source.dp_customer is not None:
                    local[p.name] = source.dp_customer
            else:
                declared[p.name] = source.dp_rows_per_customer
            continue
        value = params.get(p.owner_column)
        cols = [value] if isinstance(value, str) else list(value or [])
        if not cols:
            continue  # an optional column left out (default_rate_overall without an amount)
        if p.per_column is not None:
            # per column: what each column declares; the analysis says what a column lacking it needs
            settings = {col: getattr(source.column(col), p.owner) for col in cols}
            per_column = {col: _mergeable(p, v) for col, v in settings.items() if v is not None}
            if per_column:
                declared[p.name] = per_column
            continue
        values = []
        for col in cols:
            setting = getattr(source.column(col), p.owner)
            if setting is None:
                raise _Undeclared(f"column '{col}' of data source '{source.name}' declares no {p.owner} "
                                  f"(key data.{source.name}.columns.{col}.{p.owner})", "data.declaration")
            values.append(setting)
        if p.owner == "categories":
            declared[p.name] = sorted({k for v in values for k in v})
        else:
            declared[p.name] = max(values)
    return declared, local


def _mergeable(p, value):
    return sorted(value) if p.owner == "categories" else value


def _merge(p, values: list):
    if p.owner == "categories":
        return sorted({k for v in values for k in v})
    return max(values)


def merge_declared(analysis: Analysis, answers: Sequence[Mapping[str, Any]]) -> dict:
    """What the job runs with: per owner-set parameter the largest bound, decimals, total
    bound or rows-per-customer cap, or the sorted union of categories, over the parties' declarations (per column for
    a per-column parameter, over the parties that declare that column's)."""
    merged: dict[str, Any] = {}
    for p in analysis.owner_params:
        values = [a[p.name] for a in answers if p.name in a]
        if not values:
            continue
        if p.per_column is not None:
            cols = sorted({c for v in values for c in v})
            merged[p.name] = {c: _merge(p, [v[c] for v in values if c in v]) for c in cols}
        else:
            merged[p.name] = _merge(p, values)
    return merged


def _covers(p, theirs, mine) -> bool:
    if p is not None and p.owner == "categories":
        return set(mine) <= set(theirs)
    return theirs >= mine


def uncovered(analysis: Analysis, merged: Mapping[str, Any], own: Mapping[str, Any]) -> str | None:
    """The first owner-set parameter whose merged value does not cover this party's own
    declaration (a smaller bound, fewer decimals, a missing category), or None."""
    for name, mine in own.items():
        p = analysis.param(name)
        if name not in merged:
            return name
        theirs = merged[name]
        if p is not None and p.per_column is not None:
            if any(col not in theirs or not _covers(p, theirs[col], v) for col, v in mine.items()):
                return name
        elif not _covers(p, theirs, mine):
            return name
    return None


def encode_declared(values: Mapping[str, Any]) -> dict[str, str]:
    """Owner-set values for the wire (``PrepareResponse.declared``, ``StartRequest.declared``)."""
    return {k: json.dumps(v) for k, v in values.items()}


def decode_declared(analysis: Analysis, wire: Mapping[str, str], who: str) -> dict:
    """The wire's owner-set values, typed by the analysis' schema; ``InputError`` naming
    ``who`` sent them for anything else."""
    out = {}
    for name, text in wire.items():
        p = analysis.param(name)
        if p is None or p.owner is None or p.owner in registry.LOCAL_SETTINGS:
            raise InputError(f"{who} sent '{name}', which is no owner-set parameter of {analysis.name}")
        try:
            value = p.parse(json.loads(text), analysis.name)
        except ValueError:
            raise InputError(f"{who} sent a malformed value of '{name}'") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{who} sent a value of '{name}' that is not finite")
        out[name] = value
    return out


_EMPTY_DTYPES = {"int": np.int64, "float": np.float64, "bool": np.int64, "str": object}


def empty_table(source: DataSource, columns: Sequence[str]) -> pd.DataFrame:
    """The job's columns with their declared types and no rows: built from the configuration
    alone, so a check on it cannot depend on the data."""
    return pd.DataFrame({c: pd.Series([], dtype=_EMPTY_DTYPES[source.columns[c]]) for c in columns})


def load_table(source: DataSource, columns: Sequence[str], party: str) -> pd.DataFrame:
    """The named columns of a data source, checked against their declared types.

    ``int``/``float`` columns must hold numbers (empty cells stay NaN), ``int`` ones whole
    numbers; ``bool`` ones true/false, yes/no, 1/0 and the like (``registry.TRUE_WORDS``,
    ``FALSE_WORDS``); ``str`` columns are read as text; and every value keeps to the column's
    declared minimum, bound, decimals and categories. Anything else raises ``InputError``
    naming the party, source, column and row (for this party's own log).
    """
    columns = list(columns)
    where = f"{party}, data source '{source.name}'"
    frame = read_table(source.path, where, fmt=source.format, columns=columns,
                       text_columns=[c for c in columns if source.columns[c] in ("str", "bool")])
    return typed_columns(frame, source, columns, where)


def open_table(source: DataSource, columns: Sequence[str], party: str) -> TableSource:
    """The named columns of a data source read in batches, each typed and checked as
    ``load_table`` types and checks a whole table (its messages name the row of the file)."""
    columns = list(columns)
    where = f"{party}, data source '{source.name}'"
    table = TableSource.of_file(source.path, where, fmt=source.format,
                                text_columns=[c for c in columns if source.columns[c] in ("str", "bool")])
    return table.replace(select=columns,
                         prepare=lambda frame, start: typed_columns(frame, source, columns, where, start))


def _at_most(prepare, max_rows: int, where: str):
    def prepare_at_most(frame: pd.DataFrame, start: int) -> pd.DataFrame:
        if start + len(frame) > max_rows:
            raise InputError(f"{where} has more rows than the maximum of {max_rows}")
        return prepare(frame, start)

    return prepare_at_most


def scan_table(table: TableSource) -> int:
    """Read every batch once (its types and declarations checked); the number of rows."""
    return sum(len(batch.frame) for batch in table.batches())


def typed_columns(frame: pd.DataFrame, source: DataSource, columns: Sequence[str], where: str,
                  start: int = 0) -> pd.DataFrame:
    """``load_table``'s typing and checks of ``columns`` of ``frame``, which holds the table's
    rows from ``start`` (0-based) on: messages count rows from the table's first."""
    # the message names rows, never values; decide() keeps it in this party's own log
    for col in columns:
        kind = source.columns[col]
        series = frame[col]
        if kind in ("int", "float"):
            numeric = pd.to_numeric(series, errors="coerce")
            bad = (numeric.isna() & series.notna()).to_numpy()
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise InputError(
                    f"{where}, column '{col}' (declared {kind}): row {start + row + 1} is not a number"
                )
            values = numeric.to_numpy(dtype=np.float64)
            if kind == "int":
                frac = np.isfinite(values) & (values != np.round(values))
                if frac.any():
                    row = int(np.flatnonzero(frac)[0])
                    raise InputError(
                        f"{where}, column '{col}' (declared int): row {start + row + 1} is not a whole number"
                    )
                if not np.isnan(values).any():
                    numeric = numeric.astype(np.int64)
            frame[col] = numeric
        elif kind == "bool":
            text = series.astype(str).str.strip().str.lower()
            ok = text.isin(TRUE_WORDS | FALSE_WORDS) | series.isna()
            if not ok.all():
                row = int(np.flatnonzero(~ok.to_numpy())[0])
                raise InputError(
                    f"{where}, column '{col}' (declared bool): row {start + row + 1} is not true/false"
                )
            frame[col] = text.isin(TRUE_WORDS).astype(np.int64).where(series.notna())
        _check_declared(frame[col], source.column(col), f"{where}, column '{col}'", start)
    return frame


def _check_declared(series: pd.Series, declared, where: str, start: int = 0) -> None:
    """The column's values against its declaration: min <= value, |value| <= bound, at most
    ``decimals`` decimal places, keys among ``categories`` (empty cells are the analyses' concern). The
    message names the row, never the value."""
    present = series.notna().to_numpy()

    def refuse(bad: np.ndarray, what: str) -> None:
        if bad.any():
            raise InputError(f"{where}: row {start + int(np.flatnonzero(bad)[0]) + 1} {what}")

    if declared.bound is not None or declared.decimals is not None or declared.min is not None:
        values = np.where(present, series.to_numpy(dtype=np.float64, na_value=0.0), 0.0)
        if declared.bound is not None:
            refuse(np.abs(values) > declared.bound, f"exceeds the declared bound {declared.bound:g}")
        if declared.min is not None:
            refuse(present & (values < declared.min), f"is below the declared minimum {declared.min:g}")
        if declared.decimals is not None:
            scale = 10.0**declared.decimals
            refuse(np.round(values * scale) / scale != values,
                   f"has more than the declared {declared.decimals} decimal places")
    if declared.categories is not None:
        keys = series.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
        refuse(present & ~keys.isin(declared.categories).to_numpy(), "holds a key outside the declared categories")
