"""The party configuration file (TOML): who this party is, its peers, TLS, data, policy, audit.

``load_config(path)`` checks everything a party needs before it starts serving, and raises
``ConfigError`` with a message that names the offending key (``peers.bank_b.address``,
``data.loans.columns.credit_amount``, ...). Relative paths are relative to the file's folder.

A column's declaration says what its values are, in the bank's own words: ``bound`` (the
largest |value| of one entry), ``decimals`` (decimal places; 0 for ``int`` by default),
``total_bound`` (the largest sum over one customer's rows at this bank), ``min`` (the smallest
value of one entry; ``nonnegative = true`` says ``min = 0``), ``categories`` (every key the
column may hold). A source's ``[data.NAME.dp]`` says how a differentially private job bounds
one customer's rows: its customer id column and the most rows per customer it keeps. The
analyses' value-dependent parameters come from these, never from a requester (``Param.owner``
in ``smpc.analyses.registry``).

Example (services/bank_a.toml is a complete one)::

    [party]
    name = "bank_a"                 # this party's name = its certificate identity
    listen = "127.0.0.1:50051"

    [tls]
    ca = "certs/ca.pem"
    cert = "certs/bank_a.pem"
    key = "certs/bank_a.key"
    crl = "certs/ca.crl"            # optional: the CA's revocation list, re-read when it changes

    [compute]
    ranks = ["bank_a", "bank_b", "bank_c"]   # rank order of the three compute parties
    workers = 1                     # worker processes for bucketed joins (1: one session, in-process)
    engine = "process"              # or "ray": the workers as actors on the bank's Ray cluster
    address = "ray://head:10001"    # ray only: the cluster ("local": a Ray instance of this process)
    listen = "0.0.0.0:50061"        # where workers listen: port 0 ephemeral, else worker w on port + w
    advertise = "bank-a.example"    # the host the other parties' workers dial (default: listen's host)

    [peers.bank_b]
    address = "127.0.0.1:50052"
    identity = "bank_b"             # the certificate identity bank_b must present
    fingerprint = "sha256:..."      # optional: pin bank_b's one certificate (smpc certs fingerprint)

    [data.loans]                    # the first source is the default of a job that names none
    path = "data/bank_a_loans.csv"  # CSV or Parquet
    [data.loans.columns]            # a type, or a table with the type and what the values are
    creditability = { type = "str", categories = ["bad", "good"] }
    credit_amount = { type = "int", bound = 100000 }          # decimals: 0 for int columns
    balance = { type = "float", bound = 1e7, decimals = 2, total_bound = 1e9, nonnegative = true }
    customer_id = "str"
    note = "str"
    [data.loans.dp]                 # optional: how differentially private jobs bound one customer
    customer = "customer_id"        # keep at most rows_per_customer rows per id (none: one row each)
    rows_per_customer = 2           # the noise is scaled to the largest any bank declares

    [policy]
    allowed_analyses = ["default_rate_overall"]
    allowed_columns = { default_rate_overall = ["creditability", "credit_amount"] }
    allowed_sources = { default_rate_overall = ["loans"] }   # optional with one data source
    min_cell_size = 10
    min_contributors = 3            # banks that must each bring min_cell_size rows to a cell
    max_dominance = 100             # percent; a cell one bank dominates beyond this is suppressed
    allowed_recipients = ["bank_a", "bank_b", "bank_c"]
    max_rows = 1_000_000

    [join]
    salt_file = "certs/join_salt"   # the consortium's secret join salt (mode 0600)

    result_retention_days = 30      # how long jobs and their results are kept (then deleted, audited)

    [audit]
    path = "audit/bank_a.jsonl"
    anchor_interval_s = 60          # while the log grows, its signed head goes to the peers this often

    [store]                         # jobs and released results, kept across restarts (SQLite)
    key_file = "certs/bank_a.store_key"  # 32 random bytes as 64 hex digits (mode 0600); results are sealed with it
    path = "audit/bank_a.sqlite"    # optional; default: beside the audit log, suffix .sqlite

    [timeouts]                      # seconds
    step = 60                       # a job step waits this long for a peer's message
    connect = 10                    # reaching a peer to prepare, start or cancel a job (a
                                    # restarting peer is waited for this long)
    job = 3600                      # the longest a job may run

    [limits]                        # every key optional; these are the defaults
    submits_per_minute = 30         # jobs one identity may submit to this party per minute
    refusals_per_hour = 10          # refused jobs after which an identity's submits wait out the hour
    jobs_per_requester = 4          # jobs of one requester running here at once
    watch_streams_per_identity = 8  # open Watch streams of one identity
    max_concurrent_jobs = 8         # jobs running here at once, whoever coordinates them
    job_service_calls = 32          # job-service calls in flight at once, all clients together
    param_bytes = 65536             # a job's parameters, names and values, in UTF-8
    param_count = 256               # parameters of a job
    param_value_bytes = 16384       # one parameter value
"""

from __future__ import annotations

import difflib
import math
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smpc.errors import SmpcError
from smpc.service.identity import normalise_fingerprint
from smpc.sharing import N_COMPUTE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

COLUMN_TYPES = ("int", "float", "str", "bool")
DATA_FORMATS = ("csv", "parquet")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_ROOT_KEYS = ("party", "tls", "compute", "peers", "data", "policy", "audit", "timeouts", "limits", "analyses", "join",
              "store")
_POLICY_KEYS = ("allowed_analyses", "allowed_columns", "allowed_sources", "min_cell_size", "min_contributors",
                "max_dominance", "allowed_recipients", "max_rows", "result_retention_days", "dp")
DP_PERIODS = ("day", "month", "year")
_COLUMN_KEYS = ("type", "bound", "decimals", "total_bound", "min", "nonnegative", "categories")
MIN_SALT_CHARS = 16
DEFAULT_ANCHOR_INTERVAL_S = 60.0


class ConfigError(SmpcError, ValueError):
    """The party configuration is missing a key or has a wrong value (the message names it)."""


@dataclass(frozen=True)
class Peer:
    name: str
    address: str
    identity: str
    fingerprint: str | None = None  # "sha256:HEX" of the one certificate this peer may present


@dataclass(frozen=True)
class Column:
    """What a bank declares about one column: its type and, where it has them, the largest
    |value| of an entry, its decimal places, the largest sum over one customer's rows at this
    bank, the keys it may hold, and the smallest value of an entry."""

    type: str
    bound: float | None = None
    decimals: int | None = None
    total_bound: float | None = None
    categories: tuple[str, ...] | None = None
    min: float | None = None


@dataclass(frozen=True)
class DataSource:
    name: str
    path: Path
    format: str
    columns: dict[str, str]
    """Column name -> declared type."""
    declared: dict[str, Column] = field(default_factory=dict)
    """Column name -> its full declaration (a column declared by type only has no entry)."""
    dp_customer: str | None = None
    """``[data.NAME.dp] customer``: the customer id column by which a differentially private
    job keeps at most ``dp_rows_per_customer`` rows per customer; None: every row is its own
    customer."""
    dp_rows_per_customer: int = 1
    """``[data.NAME.dp] rows_per_customer``: the most rows of one customer such a job keeps
    (without ``customer``, the owner's word that no customer has more); the noise is scaled
    to the largest of the banks' values."""

    def column(self, name: str) -> Column:
        return self.declared.get(name) or Column(self.columns[name])


@dataclass(frozen=True)
class Policy:
    allowed_analyses: tuple[str, ...]
    allowed_columns: dict[str, tuple[str, ...]]
    min_cell_size: int
    allowed_recipients: tuple[str, ...]
    max_rows: int
    allowed_sources: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Analysis -> the data sources it may read (filled in for every allowed analysis when the
    configuration has one data source and leaves the table out)."""
    min_contributors: int = 3
    """Banks that must each bring at least min_cell_size rows to a released cell."""
    max_dominance: float = 100.0
    """Percent of a cell's sum one bank may contribute before the cell is suppressed (100: off)."""
    result_retention_days: float = 30.0
    """Days a job and its result are kept after it ended; then they are deleted (and audited)."""
    dp_budget: dict[str, float] = field(default_factory=dict)
    """``[policy.dp] budget_per_source``: data source -> the epsilon jobs may spend on it per
    period (``smpc.service.budget``); a source without one has no ledger limit."""
    dp_period: str = "month"
    """``[policy.dp] period``: the budget renews every calendar ``day``, ``month`` or ``year`` (UTC)."""
    dp_required: bool = False
    """``[policy.dp] required``: refuse jobs without dp_epsilon on every source with a budget."""


ENGINES = ("process", "ray")
MAX_WORKERS = 64


@dataclass(frozen=True)
class Compute:
    """``[compute]`` beyond the ranks: the worker pool that runs a bucketed join's sessions
    (``smpc.service.pool``). ``workers`` = 1 runs every job as one session in the party
    process, as without a pool."""

    workers: int = 1
    engine: str = "process"
    address: str | None = None
    """Ray only: ``ray://HOST:PORT`` (the bank's cluster), ``auto`` or ``local``."""
    listen: str = ""
    """HOST:PORT the workers bind: port 0 an ephemeral port each, else worker w on PORT + w;
    empty: the host of ``party.listen`` (Ray: every address), ephemeral ports."""
    advertise: str = ""
    """The host the other parties' workers dial; empty: the host of ``listen``."""


@dataclass(frozen=True)
class Timeouts:
    step: float = 60.0
    connect: float = 10.0
    job: float = 3600.0


@dataclass(frozen=True)
class Limits:
    """Per-identity quotas and the party's capacity (``[limits]``). Every refusal for one of
    them names its key, e.g. ``limits.watch_streams_per_identity``."""

    submits_per_minute: int = 30
    refusals_per_hour: int = 10
    jobs_per_requester: int = 4
    watch_streams_per_identity: int = 8
    max_concurrent_jobs: int = 8
    job_service_calls: int = 32
    param_bytes: int = 64 * 1024
    param_count: int = 256
    param_value_bytes: int = 16 * 1024


# the thread pools are sized from these, so a typo of a few digits must not ask for a million threads
_LIMIT_MAXIMUM = {"max_concurrent_jobs": 256, "job_service_calls": 1024}


@dataclass(frozen=True)
class PartyConfig:
    path: Path
    name: str
    listen: str
    ranks: tuple[str, ...]
    peers: dict[str, Peer]
    tls_ca: Path
    tls_cert: Path
    tls_key: Path
    data: dict[str, DataSource]
    policy: Policy
    audit_path: Path
    anchor_interval_s: float = DEFAULT_ANCHOR_INTERVAL_S
    """While its log grows, a party sends its signed head to the peers at least this often."""
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    analysis_modules: tuple[str, ...] = ()
    join_salt: str | None = field(default=None, repr=False)
    """The consortium's secret join salt ([join] salt_file); None without one."""
    tls_crl: Path | None = None
    store_path: Path | None = None
    """The job store's SQLite file ([store] path; default beside the audit log)."""
    store_key: bytes | None = field(default=None, repr=False)
    """The key that seals the job store ([store] key_file); None when files were not checked."""
    store_key_path: Path | None = None
    compute: Compute = field(default_factory=Compute)

    @property
    def rank(self) -> int:
        return self.ranks.index(self.name)


class _Reader:
    """Typed access to a TOML table that names the full key in every error."""

    def __init__(self, table: dict, prefix: str, base: Path, keys: tuple[str, ...] | None = None):
        self.table = table
        self.prefix = prefix
        self.base = base
        self.used: set[str] = set()
        if keys is not None:
            # before any read: a misspelt required key would otherwise surface as that key
            # missing, and the misspelling itself would never be named
            self._refuse_unknown(set(table) - set(keys), keys)

    def _refuse_unknown(self, unknown: set[str], known) -> None:
        if not unknown:
            return
        parts = []
        for name in sorted(unknown):
            close = difflib.get_close_matches(name, list(known), n=1)
            parts.append(f"'{self.key(name)}'" + (f" (a typo of '{close[0]}'?)" if close else " (a typo?)"))
        expected = ", ".join(sorted(known))
        where = f"'{self.prefix}'" if self.prefix else "the top level"
        raise ConfigError(f"unknown key {'; unknown key '.join(parts)}; {where} takes: {expected}")

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def _get(self, name: str, required: bool):
        self.used.add(name)
        if name not in self.table:
            if required:
                raise ConfigError(f"missing key '{self.key(name)}'")
            return None
        return self.table[name]

    def str(self, name: str, required: bool = True, default: str | None = None) -> str | None:
        value = self._get(name, required)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"key '{self.key(name)}' must be a non-empty string, got {value!r}")
        return value

    def name(self, name: str, required: bool = True) -> str | None:
        value = self.str(name, required)
        if value is not None and not _NAME.fullmatch(value):
            raise ConfigError(
                f"key '{self.key(name)}': {value!r} is not a valid party name "
                "(letters, digits, '_', '.', '-'; at most 63 characters)"
            )
        return value

    def names(self, name: str, required: bool = True) -> tuple[str, ...] | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"key '{self.key(name)}' must be a list of names, got {value!r}")
        return tuple(value)

    def number(self, name: str, default: float, integer: bool = False, minimum: float = 0) -> Any:
        value = self._get(name, False)
        if value is None:
            return default
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or value < minimum or (not integer and value <= 0):
            kind = "an integer" if integer else "a positive number"
            raise ConfigError(f"key '{self.key(name)}' must be {kind}" + (f" >= {minimum}" if integer else "")
                              + f", got {value!r}")
        return int(value) if integer else float(value)

    def path(self, name: str, must_exist: bool = True) -> Path:
        value = self.str(name)
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = (self.base / path).resolve()
        if must_exist and not path.is_file():
            raise ConfigError(f"key '{self.key(name)}': file {path} does not exist")
        return path

    def sub(self, name: str, required: bool = True, keys: tuple[str, ...] | None = None) -> _Reader | None:
        """The table at ``name``; with ``keys``, any other key in it is refused at once."""
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ConfigError(f"key '{self.key(name)}' must be a table, got {value!r}")
        return _Reader(value, self.key(name), self.base, keys)

    def done(self) -> None:
        self._refuse_unknown(set(self.table) - self.used, self.used)


def _check_address(key: str, address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"key '{key}': {address!r} is not HOST:PORT")


def load_config(path: str | Path, check_files: bool = True) -> PartyConfig:
    """Read and check a party configuration. ``check_files=False`` skips the checks that
    need the TLS and data files to exist (for validating example configs)."""
    path = Path(path).resolve()
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    base = path.parent
    root = _Reader(raw, "", base, keys=_ROOT_KEYS)

    party = root.sub("party", keys=("name", "listen"))
    name = party.name("name")
    listen = party.str("listen")
    _check_address("party.listen", listen)
    party.done()

    tls = root.sub("tls", keys=("ca", "cert", "key", "crl"))
    tls_ca, tls_cert, tls_key = (tls.path(k, must_exist=check_files) for k in ("ca", "cert", "key"))
    tls_crl = tls.path("crl", must_exist=check_files) if "crl" in tls.table else None
    tls.done()

    compute = root.sub("compute", keys=("ranks", "workers", "engine", "address", "listen", "advertise"))
    ranks = compute.names("ranks")
    pool = _read_compute(compute, listen)
    compute.done()
    if len(ranks) != N_COMPUTE or len(set(ranks)) != N_COMPUTE:
        raise ConfigError(f"key 'compute.ranks' must name {N_COMPUTE} different compute parties, got {list(ranks)}")
    if name not in ranks:
        raise ConfigError(f"key 'compute.ranks' must include this party ('{name}'), got {list(ranks)}")

    peers_table = root.sub("peers")
    peers: dict[str, Peer] = {}
    for peer_name in peers_table.table:
        entry = peers_table.sub(peer_name, keys=("address", "identity", "fingerprint"))
        if not _NAME.fullmatch(peer_name):
            raise ConfigError(f"key 'peers.{peer_name}': not a valid party name")
        address = entry.str("address")
        _check_address(f"peers.{peer_name}.address", address)
        identity = entry.str("identity", required=False, default=peer_name)
        pin = entry.str("fingerprint", required=False)
        fingerprint = None if pin is None else normalise_fingerprint(pin)
        if pin is not None and fingerprint is None:
            raise ConfigError(f"key 'peers.{peer_name}.fingerprint' must be 'sha256:' and 64 hex digits "
                              f"(smpc certs fingerprint FILE prints it), got {pin[:80]!r}")
        entry.done()
        peers[peer_name] = Peer(peer_name, address, identity, fingerprint)
    peers_table.done()
    if name in peers:
        raise ConfigError(f"key 'peers.{name}': a party is not its own peer")
    for other in ranks:
        if other != name and other not in peers:
            raise ConfigError(f"missing key 'peers.{other}' (compute.ranks names it)")
    for other in peers:
        if other not in ranks:
            raise ConfigError(f"key 'peers.{other}': not one of the compute parties in compute.ranks")

    data_table = root.sub("data")
    data: dict[str, DataSource] = {}
    for source_name in data_table.table:
        entry = data_table.sub(source_name, keys=("path", "format", "columns", "dp"))
        data_path = entry.path("path", must_exist=check_files)
        fmt = entry.str("format", required=False, default=None)
        if fmt is None:
            fmt = "parquet" if data_path.suffix.lower() in (".parquet", ".pq") else "csv"
        if fmt not in DATA_FORMATS:
            raise ConfigError(f"key 'data.{source_name}.format' must be one of {', '.join(DATA_FORMATS)}, got {fmt!r}")
        cols = entry.sub("columns")
        columns: dict[str, str] = {}
        declared: dict[str, Column] = {}
        for col, kind in cols.table.items():
            cols.used.add(col)
            if isinstance(kind, dict):
                declared[col] = _column(cols.sub(col, keys=_COLUMN_KEYS))
                kind = declared[col].type
            elif kind not in COLUMN_TYPES:
                raise ConfigError(
                    f"key 'data.{source_name}.columns.{col}' must be one of {', '.join(COLUMN_TYPES)} "
                    f"or a table with a 'type', got {kind!r}"
                )
            columns[col] = kind
        if not columns:
            raise ConfigError(f"key 'data.{source_name}.columns' declares no column")
        dp_customer, dp_rows = _dp_source(entry.sub("dp", required=False, keys=("customer", "rows_per_customer")),
                                          columns)
        entry.done()
        data[source_name] = DataSource(source_name, data_path, fmt, columns, declared, dp_customer, dp_rows)
    data_table.done()
    if not data:
        raise ConfigError("key 'data' declares no data source")

    pol = root.sub("policy", keys=_POLICY_KEYS)
    allowed_analyses = pol.names("allowed_analyses")
    cols_table = pol.sub("allowed_columns", required=False)
    allowed_columns: dict[str, tuple[str, ...]] = {}
    if cols_table is not None:
        for analysis in cols_table.table:
            allowed_columns[analysis] = cols_table.names(analysis)
        cols_table.done()
    sources_table = pol.sub("allowed_sources", required=False)
    allowed_sources: dict[str, tuple[str, ...]] = {}
    if sources_table is not None:
        for analysis in sources_table.table:
            allowed_sources[analysis] = sources_table.names(analysis)
        sources_table.done()
    min_cell_size = pol.number("min_cell_size", 1, integer=True, minimum=1)
    min_contributors = pol.number("min_contributors", 3, integer=True, minimum=1)
    max_dominance = pol.number("max_dominance", 100.0)
    if max_dominance > 100:
        raise ConfigError(f"key 'policy.max_dominance' is a percentage in (0, 100], got {max_dominance:g}")
    allowed_recipients = pol.names("allowed_recipients")
    max_rows = pol.number("max_rows", 10_000_000, integer=True, minimum=1)
    retention = pol.number("result_retention_days", Policy.result_retention_days)
    dp_budget, dp_period, dp_required = _dp_policy(pol.sub("dp", required=False,
                                                           keys=("budget_per_source", "period", "required")), data)
    pol.done()
    allowed_sources = _allowed_sources(tuple(allowed_analyses), allowed_sources, data)
    policy = Policy(tuple(allowed_analyses), allowed_columns, min_cell_size, tuple(allowed_recipients), max_rows,
                    allowed_sources, min_contributors, max_dominance, retention, dp_budget, dp_period, dp_required)

    join = root.sub("join", required=False, keys=("salt_file",))
    join_salt = None
    if join is not None:
        salt_path = join.path("salt_file", must_exist=check_files)
        join.done()
        if check_files:
            join_salt = _read_salt(salt_path)

    audit = root.sub("audit", keys=("path", "anchor_interval_s"))
    audit_path = audit.path("path", must_exist=False)
    anchor_interval = audit.number("anchor_interval_s", DEFAULT_ANCHOR_INTERVAL_S, minimum=1)
    audit.done()

    store = root.sub("store", keys=("key_file", "path"))
    store_key_path = store.path("key_file", must_exist=check_files)
    store_path = store.path("path", must_exist=False) if "path" in store.table else audit_path.with_suffix(".sqlite")
    store.done()
    store_key = read_store_key(store_key_path) if check_files else None
    if store_path in (audit_path, store_key_path):
        raise ConfigError(f"key 'store.path': {store_path} is the audit log or the key file; name a file of its own")

    t = root.sub("timeouts", required=False, keys=("step", "connect", "job"))
    timeouts = Timeouts()
    if t is not None:
        timeouts = Timeouts(
            step=t.number("step", timeouts.step), connect=t.number("connect", timeouts.connect),
            job=t.number("job", timeouts.job),
        )
        t.done()

    limits = _read_limits(root.sub("limits", required=False, keys=tuple(Limits.__dataclass_fields__)))

    extra = root.sub("analyses", required=False, keys=("modules",))
    modules: tuple[str, ...] = ()
    if extra is not None:
        modules = extra.names("modules", required=False) or ()
        extra.done()
    root.done()

    config = PartyConfig(
        path=path, name=name, listen=listen, ranks=tuple(ranks), peers=peers, tls_ca=tls_ca,
        tls_cert=tls_cert, tls_key=tls_key, data=data, policy=policy, audit_path=audit_path,
        anchor_interval_s=anchor_interval,
        timeouts=timeouts, analysis_modules=modules, join_salt=join_salt, tls_crl=tls_crl, limits=limits,
        store_path=store_path, store_key=store_key, store_key_path=store_key_path, compute=pool,
    )
    _check_policy_names(config)
    if check_files:
        check_tls_files(config)
        for source in data.values():
            check_source_columns(source)
    # after the sources' own checks: a column misspelt in [data.NAME].columns is named there
    _check_policy_columns(policy, data)
    return config


def _read_compute(compute: _Reader, party_listen: str) -> Compute:
    workers = compute.number("workers", 1, integer=True, minimum=1)
    if workers > MAX_WORKERS:
        raise ConfigError(f"key 'compute.workers' must be at most {MAX_WORKERS}, got {workers}")
    engine = compute.str("engine", required=False, default="process")
    if engine not in ENGINES:
        raise ConfigError(f"key 'compute.engine' must be one of {', '.join(ENGINES)}, got {engine!r}")
    address = compute.str("address", required=False)
    if address is not None and engine != "ray":
        raise ConfigError("key 'compute.address' names a Ray cluster: it needs compute.engine = \"ray\"")
    if engine == "ray" and address is None:
        raise ConfigError("key 'compute.address' is required with compute.engine = \"ray\" (\"ray://HOST:PORT\", "
                          "\"auto\" or \"local\")")
    # actors run on the cluster's nodes, not on the party's host: by default on every address
    host = "0.0.0.0" if engine == "ray" else party_listen.rpartition(":")[0]
    listen = compute.str("listen", required=False, default="") or f"{host}:0"
    _check_address("compute.listen", listen)
    if not 0 <= int(listen.rpartition(":")[2]) + workers - 1 <= 65535:
        raise ConfigError(f"key 'compute.listen': ports {listen.rpartition(':')[2]} + {workers} workers pass 65535")
    advertise = compute.str("advertise", required=False, default="") or listen.rpartition(":")[0]
    if advertise in ("0.0.0.0", "::", "[::]") and (engine == "ray" or workers == 1):
        advertise = ""  # each actor announces its own node's address; without a pool, nobody
    elif advertise in ("0.0.0.0", "::", "[::]"):
        raise ConfigError(f"key 'compute.advertise' is needed when compute.listen binds every address ({listen}): "
                          "the host name or address the other parties' workers dial")
    return Compute(workers=workers, engine=engine, address=address, listen=listen, advertise=advertise)


def _dp_policy(dp: _Reader | None, data: dict[str, DataSource]) -> tuple[dict[str, float], str, bool]:
    """``[policy.dp]``: (budget per source, period, required)."""
    if dp is None:
        return {}, "month", False
    budgets = dp.sub("budget_per_source", required=False)
    out: dict[str, float] = {}
    if budgets is not None:
        for source in budgets.table:
            if source not in data:
                raise ConfigError(f"key 'policy.dp.budget_per_source.{source}': no data source {source!r} "
                                  f"(declared: {', '.join(data)})")
            out[source] = budgets.number(source, 0.0)
        budgets.done()
    period = dp.str("period", required=False) or "month"
    if period not in DP_PERIODS:
        raise ConfigError(f"key 'policy.dp.period' must be one of {', '.join(DP_PERIODS)}, got {period!r}")
    required = dp._get("required", False)
    if required is None:
        required = False
    if not isinstance(required, bool):
        raise ConfigError(f"key 'policy.dp.required' must be true or false, got {required!r}")
    if required and not out:
        raise ConfigError("key 'policy.dp.required' needs key 'policy.dp.budget_per_source' for some source")
    dp.done()
    return out, period, required


MAX_ROWS_PER_CUSTOMER = 10_000
"""The largest ``[data.NAME.dp] rows_per_customer``: beyond it the noise swamps any count."""


def _dp_source(dp: _Reader | None, columns: dict[str, str]) -> tuple[str | None, int]:
    """``[data.NAME.dp]``: (the customer id column or None, rows kept per customer)."""
    if dp is None:
        return None, 1
    customer = dp.str("customer", required=False)
    if customer is not None and customer not in columns:
        raise ConfigError(f"key '{dp.key('customer')}': column {customer!r} is not declared in "
                          f"{dp.prefix.rsplit('.', 1)[0]}.columns (declared: {', '.join(columns)})")
    rows = dp.number("rows_per_customer", 1, integer=True, minimum=1)
    if rows > MAX_ROWS_PER_CUSTOMER:
        raise ConfigError(f"key '{dp.key('rows_per_customer')}' must be at most {MAX_ROWS_PER_CUSTOMER}, got {rows}")
    dp.done()
    return customer, rows


def _number(reader: _Reader, name: str, integer: bool = False) -> Any:
    value = reader._get(name, False)
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value):
        raise ConfigError(f"key '{reader.key(name)}' must be {'an integer' if integer else 'a number'}, got {value!r}")
    return value


def _column(cols: _Reader) -> Column:
    """One column's declaration table: ``{ type = ..., bound = ..., decimals = ..., ... }``."""
    from smpc.fixedpoint import EXACT_UNITS, MAX_DECIMALS

    kind = cols.str("type")
    if kind not in COLUMN_TYPES:
        raise ConfigError(f"key '{cols.key('type')}' must be one of {', '.join(COLUMN_TYPES)}, got {kind!r}")
    numeric = kind in ("int", "float")
    for key in ("bound", "decimals", "total_bound", "min", "nonnegative") if not numeric else ():
        if key in cols.table:
            raise ConfigError(f"key '{cols.key(key)}': only an int or float column has a {key}")
    if "categories" in cols.table and kind not in ("str", "int"):
        raise ConfigError(f"key '{cols.key('categories')}': only a str or int column has categories")
    bound, total = _number(cols, "bound"), _number(cols, "total_bound")
    for key, value in (("bound", bound), ("total_bound", total)):
        if value is not None and not value > 0:
            raise ConfigError(f"key '{cols.key(key)}' must be positive, got {value!r}")
    decimals = _number(cols, "decimals", integer=True)
    if decimals is None and kind == "int":
        decimals = 0
    if decimals is not None and not 0 <= decimals <= MAX_DECIMALS:
        raise ConfigError(f"key '{cols.key('decimals')}' must be in 0..{MAX_DECIMALS}, got {decimals}")
    for key, value in (("bound", bound), ("total_bound", total)):
        if value is not None and decimals is not None and not value * 10.0**decimals < EXACT_UNITS:
            raise ConfigError(
                f"key '{cols.key(key)}': {value:g} at {decimals} decimals is {value * 10.0**decimals:.4g} units, "
                f"beyond the 2^53 ({EXACT_UNITS:.4g}) that convert exactly; declare a tighter bound or fewer decimals"
            )
    if bound is not None and total is not None and total < bound:
        raise ConfigError(f"key '{cols.key('total_bound')}' ({total:g}) is below the bound of one entry ({bound:g})")
    least = _least(cols, bound)
    categories = None
    raw = cols._get("categories", False)
    if raw is not None:
        item = str if kind == "str" else int
        if (not isinstance(raw, list) or not raw
                or not all(isinstance(v, item) and not isinstance(v, bool) for v in raw)):
            raise ConfigError(f"key '{cols.key('categories')}' must be a non-empty list of "
                              f"{'strings' if kind == 'str' else 'integers'}, got {raw!r}")
        categories = tuple(str(v) for v in raw)
        if len(set(categories)) != len(categories):
            raise ConfigError(f"key '{cols.key('categories')}' names a key twice")
    cols.done()
    return Column(kind, None if bound is None else float(bound), decimals,
                  None if total is None else float(total), categories, least)


def _least(cols: _Reader, bound: float | None) -> float | None:
    """The declared smallest value of one entry: ``min``, or 0 for ``nonnegative = true``."""
    least = _number(cols, "min")
    nonnegative = cols._get("nonnegative", False)
    if nonnegative is not None:
        if not isinstance(nonnegative, bool):
            raise ConfigError(f"key '{cols.key('nonnegative')}' must be true or false, got {nonnegative!r}")
        if nonnegative and least is not None:
            raise ConfigError(f"key '{cols.key('nonnegative')}': declare either min or nonnegative, not both")
        if nonnegative:
            least = 0
    if least is not None and bound is not None and least > bound:
        raise ConfigError(f"key '{cols.key('min')}' ({least:g}) is above the column's bound ({bound:g})")
    return None if least is None else float(least)


def _allowed_sources(allowed: tuple[str, ...], table: dict[str, tuple[str, ...]],
                     data: dict[str, DataSource]) -> dict[str, tuple[str, ...]]:
    """Analysis -> the data sources it may read. One data source may leave the table out (it
    serves every allowed analysis); with several, each allowed analysis names its own, so a job
    can never point an analysis at a source its bank did not mean for it (a fraud lookup at the
    loan book asks who else's customer an id is)."""
    for analysis, sources in table.items():
        for source in sources:
            if source not in data:
                raise ConfigError(f"key 'policy.allowed_sources.{analysis}': no data source {source!r} "
                                  f"(declared: {', '.join(data)})")
    if not table and len(data) == 1:
        return {analysis: tuple(data) for analysis in allowed}
    for analysis in allowed:
        if analysis not in table:
            raise ConfigError(f"missing key 'policy.allowed_sources.{analysis}': with several data sources "
                              f"({', '.join(data)}) every allowed analysis names the ones it may read")
    return dict(table)


def _read_secret_file(path: Path, key: str, holds: str, errors: str = "strict") -> str:
    """A secret's file as stripped text (decoded with ``errors``), refused unless only its owner
    may read it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{key}: {path} is readable by others (mode {mode:04o}); it holds {holds}: chmod 600 it")
    return path.read_text(encoding="utf-8", errors=errors).strip()


def _read_salt(path: Path) -> str:
    """The join salt from its file: readable by its owner only, and long enough to be a secret."""
    salt = _read_secret_file(path, "key 'join.salt_file'", "the consortium's secret join salt")
    if len(salt) < MIN_SALT_CHARS:
        raise ConfigError(f"key 'join.salt_file': {path} holds fewer than {MIN_SALT_CHARS} characters; "
                          "the join salt is a secret all banks agreed on at set-up")
    return salt


def read_store_key(path: Path) -> bytes:
    """The job store's key from its file: 64 hex digits (32 bytes), readable by its owner only."""
    key = "key 'store.key_file'"
    text = _read_secret_file(path, key, "the key that seals this party's jobs and results", errors="replace")
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise ConfigError(f"{key}: {path} does not hold 64 hex digits (32 random bytes); make one with "
                          "(umask 077; openssl rand -hex 32 > FILE) and keep a copy with the database's backups")
    return bytes.fromhex(text)


def _read_limits(table: _Reader | None) -> Limits:
    if table is None:
        return Limits()
    defaults = Limits()
    values = {}
    for name in Limits.__dataclass_fields__:
        value = table.number(name, getattr(defaults, name), integer=True, minimum=1)
        most = _LIMIT_MAXIMUM.get(name)
        if most is not None and value > most:
            raise ConfigError(f"key '{table.key(name)}' must be at most {most}, got {value}")
        values[name] = value
    table.done()
    if values["param_value_bytes"] > values["param_bytes"]:
        raise ConfigError(f"key 'limits.param_value_bytes' ({values['param_value_bytes']}) may not exceed "
                          f"limits.param_bytes ({values['param_bytes']})")
    return Limits(**values)


def _check_policy_columns(policy: Policy, data: dict[str, DataSource]) -> None:
    """Every column the policy allows is declared by some data source. A job only ever reads
    declared columns, so a misspelt one here would silently allow nothing; which source a
    job reads is its own choice, so any source's declaration will do."""
    declared = {col for source in data.values() for col in source.columns}
    for analysis, columns in policy.allowed_columns.items():
        for col in columns:
            if col not in declared:
                close = difflib.get_close_matches(col, sorted(declared), n=1)
                raise ConfigError(
                    f"key 'policy.allowed_columns.{analysis}': column {col!r} is not declared by any data source "
                    f"([data.NAME].columns declare: {', '.join(sorted(declared))})"
                    + (f"; a typo of {close[0]!r}?" if close else "")
                )


def _check_policy_names(config: PartyConfig) -> None:
    from smpc.analyses import registry

    for module in config.analysis_modules:
        try:
            __import__(module)
        except Exception as exc:  # noqa: BLE001 - any failure to load operator code is a config error
            raise ConfigError(f"key 'analyses.modules': cannot load {module!r} ({type(exc).__name__}: {exc})") from None
    known = set(registry.names())
    for analysis in config.policy.allowed_analyses:
        if analysis not in known:
            raise ConfigError(
                f"key 'policy.allowed_analyses': unknown analysis {analysis!r} "
                f"(the catalogue has: {', '.join(sorted(known))})"
            )
    for key in ("allowed_columns", "allowed_sources"):
        for analysis in getattr(config.policy, key):
            if analysis not in known:
                raise ConfigError(f"key 'policy.{key}.{analysis}': unknown analysis")


def check_tls_files(config: PartyConfig) -> None:
    """The CA, certificate and key are readable PEM, the key matches the certificate, the CA
    signed it, and its identity is this party's name."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    try:
        ca = x509.load_pem_x509_certificate(config.tls_ca.read_bytes())
    except ValueError as exc:
        raise ConfigError(f"key 'tls.ca': {config.tls_ca} is not a PEM certificate ({exc})") from None
    try:
        cert = x509.load_pem_x509_certificate(config.tls_cert.read_bytes())
    except ValueError as exc:
        raise ConfigError(f"key 'tls.cert': {config.tls_cert} is not a PEM certificate ({exc})") from None
    try:
        key = serialization.load_pem_private_key(config.tls_key.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"key 'tls.key': {config.tls_key} is not an unencrypted PEM private key ({exc})") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if key.public_key().public_bytes(enc, pub) != cert.public_key().public_bytes(enc, pub):
        raise ConfigError(f"key 'tls.key': {config.tls_key} is not the key of the certificate {config.tls_cert}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"key 'tls.cert': {config.tls_cert} is not signed by the CA in tls.ca ({exc})") from None
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    identity = cn[0].value if cn else None
    if identity != config.name:
        raise ConfigError(
            f"key 'tls.cert': the certificate's identity is {identity!r}, but party.name is {config.name!r}"
        )
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = sans.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    if config.name not in dns:
        raise ConfigError(f"key 'tls.cert': the certificate has no subject alternative name {config.name!r}")


def check_source_columns(source: DataSource) -> None:
    """The file exists and has every declared column (reads the header only)."""
    import pandas as pd

    key = f"data.{source.name}"
    try:
        if source.format == "csv":
            header = list(pd.read_csv(source.path, nrows=0).columns)
        else:
            import pyarrow.parquet as pq

            header = list(pq.read_schema(source.path).names)
    except Exception as exc:  # noqa: BLE001 - any reader error is a config error naming the key
        raise ConfigError(f"key '{key}.path': cannot read {source.path} as {source.format} ({exc})") from None
    for col in source.columns:
        if col not in header:
            raise ConfigError(f"key '{key}.columns.{col}': {source.path} has no column {col!r}")

