"""Fraud-ring analyses across banks: shared identifiers, application velocity, mule fan-in.

Each runs one of the secure group-by primitives of ``smpc.grouping`` over keyed hashes of
the banks' values (``smpc.join.hash_ids``: the consortium's secret join salt), and answers
only the bank that holds a flagged row. Every analysis has a plaintext twin computing the
same dict in the clear, with the same refusals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from smpc.analyses.registry import Param, register, report_progress
from smpc.errors import InputError
from smpc.grouping import MAX_DAY, MAX_WINDOW_DAYS, distinct_in_window, distinct_threshold, window_counts
from smpc.join import DEFAULT_SALT, hash_ids, normalise_ids, table_ids

EPOCH = pd.Timestamp("1970-01-01")
DEFAULT_MAX_COUNT = 99
_SEP = "\x1f"  # joins a bank name and an account: not a printable character, so never in either
_ACCOUNT_ROW = "\x00receiving account"


# ----- local input handling (inside each bank, in the clear) ----------------------------------
def _require(table: pd.DataFrame, party: str, column: str) -> pd.Series:
    if column not in table.columns:
        have = ", ".join(map(str, table.columns[:20]))
        raise InputError(f"{party}: column '{column}' is missing from its data (it has: {have})")
    return table[column]


def id_kind(table: pd.DataFrame, party: str, column: str) -> str:
    """'number', 'text' or 'empty': how a bank stores an id column. Banks must agree, or equal ids
    stored as 123 at one bank and "00123" at another would silently never match."""
    series = _require(table, party, column)
    values = series.dropna()
    if not len(values):  # nothing to compare: an empty file agrees with every other
        return "empty"
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return "number"
    if len(values) and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                           for v in values.head(1000)):
        return "number"
    return "text"


def check_kinds(kinds: Mapping[str, Mapping[str, str]], alike: Sequence[str] = ()) -> None:
    """``InputError`` naming the first bank and column whose id kind differs from the first
    bank storing values in that column ({bank: {column: kind}}); the columns in ``alike``
    hold the same ids (accounts that send and receive) and must all agree."""
    first: dict[str, tuple[str, str, str]] = {}  # class: (bank, column, kind) seen first
    for bank, columns in kinds.items():
        for column, kind in columns.items():
            if kind == "empty":
                continue
            cls = "alike" if column in alike else column
            seen = first.setdefault(cls, (bank, column, kind))
            if kind != seen[2]:
                other = f"{seen[0]}'s" if seen[1] == column else f"{seen[0]}'s column '{seen[1]}'"
                raise InputError(f"{bank}, column '{column}': its ids are {kind} while {other} are {seen[2]}; "
                                 "every bank must store these ids alike (all text or all numbers)")


def _agree_on_kinds(ctx, owners: Sequence[int], table, columns: Sequence[str], alike: Sequence[str] = ()) -> None:
    """Every bank announces how it stores its id columns (number or text: a declared, public
    fact of its schema), in one round before anything is shared; all ranks refuse alike."""
    mine = None
    if table is not None and ctx.rank in owners:
        party = ctx.name_of(ctx.rank)
        mine = {c: id_kind(table, party, c) for c in columns}
    announced = ctx.publish_each(mine, owners)
    check_kinds({ctx.name_of(o): k for o, k in zip(owners, announced, strict=True) if k is not None}, alike)


def _optional_values(table: pd.DataFrame, party: str, column: str) -> tuple[np.ndarray, list[str]]:
    """(row positions with a value, their normalised values): empty entries link nothing."""
    series = _require(table, party, column)
    present = ~series.isna().to_numpy()
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):  # pandas' str columns too
        values = series.to_numpy(dtype=object).tolist()  # a list: iterating the Series costs ~20x more
        present &= np.array([not (isinstance(v, str) and not v.strip()) for v in values], dtype=bool)
    rows = np.flatnonzero(present)
    return rows, normalise_ids(series.iloc[rows].reset_index(drop=True), party, column)


def table_days(table: pd.DataFrame, party: str, column: str) -> np.ndarray:
    """Days since 1970-01-01 (int64) of a date column; ``InputError`` naming the bank, the
    column and the first row that is empty or not a date."""
    series = _require(table, party, column)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        parsed = series
    else:
        text = series.astype("string")
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")  # fast for the usual YYYY-MM-DD
        retry = parsed.isna().to_numpy() & text.notna().to_numpy()
        if retry.any():  # other spellings, element by element
            parsed = parsed.astype(object)
            parsed[retry] = pd.to_datetime(text[retry], errors="coerce", format="mixed").astype(object)
            parsed = pd.to_datetime(parsed)
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = "is empty" if pd.isna(series.iloc[row]) else "is not a date (expected e.g. 2024-03-31)"
        raise InputError(f"{party}, column '{column}': row {row + 1} {what}")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    days = ((parsed.dt.floor("D") - EPOCH) // pd.Timedelta(days=1)).to_numpy(dtype=np.int64)
    if len(days) and (int(days.min()) < -MAX_DAY or int(days.max()) > MAX_DAY):
        raise InputError(f"{party}, column '{column}': a date lies outside the years the analysis holds")
    return days


def _iso(days: np.ndarray) -> list[str]:
    """YYYY-MM-DD of days since 1970-01-01, all at once."""
    return np.datetime_as_string(np.asarray(days, dtype=np.int64).astype("datetime64[D]"), unit="D").tolist()


def _flags01(table: pd.DataFrame, party: str, column: str) -> np.ndarray:
    series = _require(table, party, column)
    values = pd.to_numeric(series, errors="coerce")
    bad = ~values.isin([0, 1]).to_numpy()
    if bad.any():
        raise InputError(f"{party}, column '{column}': row {int(np.flatnonzero(bad)[0]) + 1} is not 0 or 1")
    return values.to_numpy(dtype=np.int64)


def _check_counts(name: str, **values: int) -> None:
    for key, value in values.items():
        if value is not None and value < 1:
            raise InputError(f"{name}: {key} must be at least 1, got {value}")


def _bank_rank(ctx, owners: Sequence[int], requester: str, name: str) -> int:
    names = [ctx.name_of(r) for r in owners]
    if requester in names:
        return owners[names.index(requester)]
    raise InputError(f"{name}: requester '{requester}' is not one of the banks ({', '.join(names)})")


# ----- shared_attribute_links ----------------------------------------------------------------
def _attribute_pairs(table: pd.DataFrame, party: str, attribute: str, id: str):
    """(pair index of every row with an attribute (-1 without), distinct (attribute, id)
    pairs as two lists) of one bank, in first-seen order."""
    ids = table_ids(table, party, id)
    rows, attrs = _optional_values(table, party, attribute)
    pair_of_row = np.full(len(ids), -1, dtype=np.int64)
    # each column factorized on its own, then the pairs as one integer code: factorizing a
    # MultiIndex of strings took seconds at 1e5 rows; the order (first seen) is the same
    attr_codes, attr_values = pd.factorize(np.asarray(attrs, dtype=object))
    id_codes, id_values = pd.factorize(np.asarray(ids, dtype=object)[rows] if len(rows) else np.zeros(0, dtype=object))
    joint = attr_codes.astype(np.int64) * max(len(id_values), 1) + id_codes
    codes, pairs = pd.factorize(joint)
    pair_of_row[rows] = codes
    pair_attrs = np.asarray(attr_values, dtype=object)[pairs // max(len(id_values), 1)].tolist()
    pair_ids = np.asarray(id_values, dtype=object)[pairs % max(len(id_values), 1)].tolist()
    return ids, pair_of_row, pair_attrs, pair_ids


def _link_result(party: str, ids: list[str], pair_of_row: np.ndarray, pair_ids: list[str],
                 flags: np.ndarray, counts: np.ndarray) -> dict:
    flagged_rows = [
        {"row": int(r), "id": ids[r], "linked_ids": int(counts[p])}
        for r, p in enumerate(pair_of_row.tolist()) if p >= 0 and flags[p]
    ]
    return {"flagged_ids": sorted({pair_ids[p] for p in range(len(pair_ids)) if flags[p]}),
            "flagged_rows": flagged_rows}


def shared_attribute_links_plain(tables: Mapping[str, pd.DataFrame], *, attribute: str, id: str, min_ids: int,
                                 min_banks: int = 1, max_count: int = DEFAULT_MAX_COUNT,
                                 salt: str = DEFAULT_SALT) -> dict:
    """Plaintext twin of ``shared_attribute_links``."""
    _check_counts("shared_attribute_links", min_ids=min_ids, max_count=max_count)
    check_kinds({b: {id: id_kind(t, b, id), attribute: id_kind(t, b, attribute)} for b, t in tables.items()})
    parts = {bank: _attribute_pairs(t, bank, attribute, id) for bank, t in tables.items()}
    rows = pd.concat([pd.DataFrame({"a": pd.Series(p[2], dtype=object), "i": pd.Series(p[3], dtype=object),
                                    "bank": bank}) for bank, p in parts.items()], ignore_index=True)
    per_value = rows.groupby("a").agg(ids=("i", "nunique"), banks=("bank", "nunique"))
    flagged = per_value[(per_value["ids"] >= min_ids) & (per_value["banks"] >= min_banks)]
    by_bank = {}
    for bank, (ids, pair_of_row, pair_attrs, pair_ids) in parts.items():
        flags = np.array([a in flagged.index for a in pair_attrs], dtype=bool)
        counts = np.array([min(int(per_value.at[a, "ids"]), max_count) if f else 0
                           for a, f in zip(pair_attrs, flags, strict=True)], dtype=np.int64)
        by_bank[bank] = _link_result(bank, ids, pair_of_row, pair_ids, flags, counts)
    return {"flagged_total": len(flagged), "by_bank": by_bank}


def shared_attribute_links_check(table: pd.DataFrame, party: str, *, attribute: str, id: str, min_ids: int,
                                 min_banks: int = 1, max_count: int = DEFAULT_MAX_COUNT,
                                 salt: str = DEFAULT_SALT) -> None:
    """One bank's local input check: both columns present, ids and attribute values well formed."""
    _check_counts("shared_attribute_links", min_ids=min_ids, max_count=max_count)
    _attribute_pairs(table, party, attribute, id)


_SALT = Param("salt", "str", default=DEFAULT_SALT, secret=True, owner="join_salt",
              description="consortium-wide secret salt of the hashes (every bank must use the same)")

_SAL_PARAMS = [
    Param("attribute", "column", required=True, description="shared identifier column: phone, device or e-mail"),
    Param("id", "column", required=True, description="customer id column (same meaning at every bank)"),
    Param("min_ids", "int", required=True, description="flag an attribute value used by at least this many ids"),
    Param("min_banks", "int", default=1, description="... and seen at at least this many banks"),
    Param("max_count", "int", default=DEFAULT_MAX_COUNT,
          description="public cap on the number of linked ids reported per flagged row"),
    _SALT,
]


@register("shared_attribute_links", params=_SAL_PARAMS, plaintext=shared_attribute_links_plain,
          check=shared_attribute_links_check, ring=64, releases_cells=False)
def shared_attribute_links(ctx, table, owners, *, attribute, id, min_ids, min_banks=1, max_count=DEFAULT_MAX_COUNT,
                           salt=DEFAULT_SALT) -> dict | None:
    """Synthetic identities and rings: rows whose phone, device or e-mail is shared by many ids across banks.

    An attribute value (normalised as ids are: NFKC, outer whitespace removed) is flagged
    when at least ``min_ids`` distinct ids (the same id at two banks counts once) use it,
    at at least ``min_banks`` banks. Each bank merges its own repeated (attribute, id)
    pairs in the clear, hashes values and ids with the consortium's secret salt, and the
    consortium runs ``smpc.grouping.distinct_threshold`` (group = attribute, member = id).
    Rows without an attribute value link nothing. Every bank among the job's recipients
    receives, for its own rows only, whether each is flagged and, when flagged, the number
    of ids using its value (capped at the public ``max_count``); every recipient receives
    the number of flagged attribute values. A bank returns {"flagged_total": t, "by_bank":
    {its name: {"flagged_ids": [its ids with a flagged value, sorted], "flagged_rows":
    [{"row": 0-based row of its file, "id", "linked_ids"}]}}}; merged over the banks this
    equals the plaintext twin's dict.
    Leakage: each bank's number of distinct (attribute, id) pairs and whether it stores
    the two columns as text or numbers (to every party, before any share moves, so that
    mismatched types are refused); to every recipient bank, which of its own rows are
    flagged and, for those, min(ids using the value, max_count), and the number of flagged
    values in the consortium. Not which other banks or ids share a value, nor the size of
    unflagged groups. Repeated runs with other thresholds add up (min_ids = 2 tells a bank
    which of its values another id uses): a policy should limit them.
    Cost: ``distinct_threshold`` over N distinct (attribute, id) pairs in all: 1 round to
    agree on column types, 2 to share (3 words per pair), the two-word sort (~195 rounds,
    ~0.9 kB per pair at N = 1e5, smpc/protocols/sort.py), then exactly 7 + 1 + 2 + ceil(log2 N) + 8 (+1 with
    min_banks > 1) + 2 + 2 + 4 rounds and 0.4 to 0.64 kB per pair (docs/costs.md:
    "group-by distinct threshold"). Measured over gRPC at 3 banks x 1e5 applications
    (benchmarks/fraud_rings_grpc.py, min_banks = 2): 258 rounds, 503 MB sent by party 0.
    Error: none (exact counts; hash collisions, probability <= N^2 / 2^(64 - bank bits),
    would merge two values or ids).
    """
    _check_counts("shared_attribute_links", min_ids=min_ids, max_count=max_count)
    rank = ctx.rank
    party = ctx.name_of(rank)
    _agree_on_kinds(ctx, owners, table, [id, attribute])
    ids = pair_of_row = pair_attrs = pair_ids = groups = members = None
    if table is not None and rank in owners:
        report_progress(ctx, 0.02, "checking, merging and hashing values")
        ids, pair_of_row, pair_attrs, pair_ids = _attribute_pairs(table, party, attribute, id)
        groups, members = hash_ids(pair_attrs, salt), hash_ids(pair_ids, salt)
    report_progress(ctx, 0.05, "sharing (attribute, id) pairs")
    out = distinct_threshold(ctx, owners, groups, members, min_members=min_ids, min_banks=min_banks, cap=max_count,
                             recipients=[o for o in owners if o in ctx.result_ranks])
    if out.rows is None:
        return None
    report_progress(ctx, 1.0, "done")
    part = _link_result(party, ids, pair_of_row, pair_ids, out.rows[:, 0] == 1, out.rows[:, 1])
    return {"flagged_total": out.total, "by_bank": {party: part}}


# ----- velocity -------------------------------------------------------------------------------
def _applications(table: pd.DataFrame, party: str, id: str, time: str) -> tuple[list[str], np.ndarray]:
    return table_ids(table, party, id), table_days(table, party, time)


def _distinct_applications(ids: list[str], days: np.ndarray) -> tuple[list[str], np.ndarray]:
    frame = pd.DataFrame({"i": pd.Series(ids, dtype=object), "d": days}).drop_duplicates()
    return frame["i"].tolist(), frame["d"].to_numpy(dtype=np.int64)


def _velocity_entries(ids: list[str], days: np.ndarray, values: np.ndarray, min_applications: int | None) -> list:
    key = "flagged" if min_applications else "other_banks_applications"
    return [{"id": i, "time": d, key: bool(v) if min_applications else int(v)}
            for i, d, v in zip(ids, _iso(days), values.tolist(), strict=True)]


def velocity_plain(tables: Mapping[str, pd.DataFrame], *, requester: str, id: str, time: str, window_days: int,
                   min_applications: int = 0, max_count: int = DEFAULT_MAX_COUNT, salt: str = DEFAULT_SALT) -> dict:
    """Plaintext twin of ``velocity``."""
    _check_velocity(window_days, min_applications, max_count)
    if requester not in tables:
        raise InputError(f"velocity: requester '{requester}' is not one of the banks ({', '.join(tables)})")
    check_kinds({b: {id: id_kind(t, b, id)} for b, t in tables.items()})
    apps = {bank: _applications(t, bank, id, time) for bank, t in tables.items()}
    others = pd.concat([pd.DataFrame({"i": pd.Series(i, dtype=object), "d": d, "bank": bank}).drop_duplicates()
                        for bank, (i, d) in apps.items() if bank != requester], ignore_index=True) \
        if len(tables) > 1 else pd.DataFrame({"i": [], "d": [], "bank": []})
    by_id = {k: np.sort(g["d"].to_numpy(dtype=np.int64)) for k, g in others.groupby("i")}
    ids, days = apps[requester]
    values = []
    for i, d in zip(ids, days.tolist(), strict=True):
        seen = by_id.get(i, np.zeros(0, dtype=np.int64))
        n = int(np.searchsorted(seen, d, side="right") - np.searchsorted(seen, d - window_days, side="left"))
        values.append(n >= min_applications if min_applications else min(n, max_count))
    return {"counts": _velocity_entries(ids, days, np.array(values, dtype=np.int64), min_applications)}


def _check_velocity(window_days: int, min_applications: int, max_count: int) -> None:
    if window_days < 0:
        raise InputError(f"velocity: window_days must be at least 0, got {window_days}")
    if min_applications < 0:
        raise InputError(f"velocity: min_applications must be at least 0 (0: report counts), got {min_applications}")
    _check_counts("velocity", max_count=max_count)


def velocity_check(table: pd.DataFrame, party: str, *, requester: str, id: str, time: str, window_days: int,
                   min_applications: int = 0, max_count: int = DEFAULT_MAX_COUNT, salt: str = DEFAULT_SALT) -> None:
    """One bank's local input check: ids well formed, every date parseable."""
    _check_velocity(window_days, min_applications, max_count)
    _applications(table, party, id, time)


_VELOCITY_PARAMS = [
    Param("requester", "str", required=True, description="the bank asking: its rows are the applications to check"),
    Param("id", "column", required=True, description="customer id column (same meaning at every bank)"),
    Param("time", "column", required=True, description="application date column (e.g. 2024-03-31)"),
    Param("window_days", "int", required=True,
          description="count applications from this many days before an application up to its day"),
    Param("min_applications", "int", default=0,
          description="if set, reveal only whether the count reaches it, instead of the count"),
    Param("max_count", "int", default=DEFAULT_MAX_COUNT, description="public cap on the counts revealed"),
    _SALT,
]


@register("velocity", params=_VELOCITY_PARAMS, plaintext=velocity_plain, check=velocity_check, ring=64,
          releases_cells=False)
def velocity(ctx, table, owners, *, requester, id, time, window_days, min_applications=0,
             max_count=DEFAULT_MAX_COUNT, salt=DEFAULT_SALT) -> dict | None:
    """Application bursts: per requester application, how many the same id made at other banks just before.

    For each row of the requester's file (an application: id and date), the number of
    applications with the same normalised id at the *other* banks dated from window_days
    days before it up to its own day (both ends included; an application repeated at one
    bank on the same day counts once), capped at the public ``max_count``; or, with
    ``min_applications``, only whether that number reaches it. Runs
    ``smpc.grouping.window_counts`` (group = hashed id, time = the date). Only the
    requester receives anything: it returns {"counts": [{"id", "time" (YYYY-MM-DD),
    "other_banks_applications"} (or "flagged": true/false) per row of its file, in file
    order]}; every other rank returns None. In the party service the requester is bound to
    the job's authenticated caller.
    Leakage: each bank's number of (distinct) applications and whether it stores ids as
    text or numbers (to every party, before any share moves); to the requester only, per
    application, the capped count (or the flag). Not at which banks, not on which days.
    Repeated runs with other windows add up (window_days 0, 1, 2, ... date the other
    banks' applications); a policy should limit them.
    Cost: ``window_counts`` over 2 q + d rows (q requester rows, d other applications):
    1 round to agree on id types, 2 to share, the two-word sort (varies with the secret
    order), then exactly 6 + 2 + ceil(log2(2q + d)) + 3 + 8 + 2 + 1 (+1 for the cap)
    rounds and ~0.21 kB per sorted row (docs/costs.md: "window counts"). Measured over
    gRPC at 3 banks x 1e5 applications (4e5 sorted rows): 262 rounds, 545 MB sent by
    party 0.
    Error: none (exact counts).
    """
    _check_velocity(window_days, min_applications, max_count)
    rank = ctx.rank
    party = ctx.name_of(rank)
    asker = _bank_rank(ctx, owners, requester, "velocity")
    _agree_on_kinds(ctx, owners, table, [id])
    ids = days = groups = None
    if table is not None and rank in owners:
        report_progress(ctx, 0.02, "checking and hashing applications")
        ids, days = _applications(table, party, id, time)
        if rank != asker:
            ids, days = _distinct_applications(ids, days)
        groups = hash_ids(ids, salt)
    report_progress(ctx, 0.05, "sharing applications")
    out = window_counts(ctx, owners, groups, days, requester=asker, window_days=window_days, cap=max_count,
                        min_count=min_applications or None)
    if out.rows is None:
        return None
    report_progress(ctx, 1.0, "done")
    return {"counts": _velocity_entries(ids, days, out.rows[:, 0], min_applications)}


# ----- mule_fan_in ----------------------------------------------------------------------------
def _transfers(table: pd.DataFrame, party: str, receiver: str, receiver_bank: str, sender: str, victim: str,
               time: str | None, window_days: int | None, as_of: str | None):
    """One bank's transfers merged per (receiving account, sender), victim = any, and its own
    accounts: (groups, members, predicate, own accounts) as strings and 0/1; with ``as_of``,
    only the transfers dated up to it."""
    receivers = table_ids(table, party, receiver)
    banks = table_ids(table, party, receiver_bank)
    senders = table_ids(table, party, sender)
    victims = _flags01(table, party, victim)
    keep = np.ones(len(receivers), dtype=bool)
    if as_of is not None:
        keep = table_days(table, party, time) <= _as_of_day(as_of)
    frame = pd.DataFrame({"g": [b + _SEP + r for b, r in zip(banks, receivers, strict=True)],
                          "m": [party + _SEP + s for s in senders], "p": victims})[keep]
    merged = frame.groupby(["g", "m"], sort=False, as_index=False)["p"].max()
    own = list(dict.fromkeys(senders + [r for b, r in zip(banks, receivers, strict=True) if b == party]))
    return merged["g"].tolist(), merged["m"].tolist(), merged["p"].to_numpy(dtype=np.int64), own


def _dated_transfers(table: pd.DataFrame, party: str, receiver: str, receiver_bank: str, sender: str, victim: str,
                     time: str, as_of: str | None):
    """One bank's transfers merged per (receiving account, sender, day), victim = any (a
    repeat counts once in any window anyway), up to ``as_of`` if given, and its own
    accounts: (groups, members, days, predicate, own accounts)."""
    receivers = table_ids(table, party, receiver)
    banks = table_ids(table, party, receiver_bank)
    senders = table_ids(table, party, sender)
    victims = _flags01(table, party, victim)
    days = table_days(table, party, time)
    keep = np.ones(len(receivers), dtype=bool) if as_of is None else days <= _as_of_day(as_of)
    frame = pd.DataFrame({"g": [b + _SEP + r for b, r in zip(banks, receivers, strict=True)],
                          "m": [party + _SEP + s for s in senders], "d": days, "p": victims})[keep]
    merged = frame.groupby(["g", "m", "d"], sort=False, as_index=False)["p"].max()
    own = list(dict.fromkeys(senders + [r for b, r in zip(banks, receivers, strict=True) if b == party]))
    return (merged["g"].tolist(), merged["m"].tolist(), merged["d"].to_numpy(dtype=np.int64),
            merged["p"].to_numpy(dtype=np.int64), own)


def _own_account_rows(groups: list[str], own: list[str], party: str) -> tuple[list[str], np.ndarray]:
    """The own accounts that need a row of their own, and for every own account the index
    of the row whose group result answers it: the first of this bank's transfer rows to it
    where there is one (every row carries its group's result), else its own asking row
    after the transfers. Asking only for the rest sorts ~10 % fewer rows on typical data."""
    first: dict[str, int] = {}
    for i, g in enumerate(groups):
        first.setdefault(g, i)
    asking, index = [], np.empty(len(own), dtype=np.int64)
    for k, a in enumerate(own):
        at = first.get(party + _SEP + a)
        if at is None:
            at = len(groups) + len(asking)
            asking.append(a)
        index[k] = at
    return asking, index


def _peak_senders(rows: pd.DataFrame, window_days: int) -> pd.Series:
    """Per group, the most distinct members with a predicate row in any [t - window_days, t]
    (in the clear; the count can only rise at a predicate row's day, so those days suffice)."""
    victims = rows[rows["p"] == 1]
    peaks = {}
    for g, part in victims.groupby("g"):
        days = part["d"].to_numpy()
        peaks[g] = max(part["m"][(days >= t - window_days) & (days <= t)].nunique() for t in np.unique(days))
    return pd.Series(peaks, dtype=np.int64)


def _as_of_day(as_of: str | None) -> int:
    try:
        return int((pd.Timestamp(str(as_of)).floor("D") - EPOCH) // pd.Timedelta(days=1))
    except (ValueError, TypeError):
        raise InputError(f"mule_fan_in: as_of '{as_of}' is not a date (expected e.g. 2024-03-31)") from None


def _check_mule(min_senders: int, max_count: int, time: str | None, window_days: int | None,
                as_of: str | None) -> None:
    _check_counts("mule_fan_in", min_senders=min_senders, max_count=max_count)
    if window_days is not None and not 0 <= window_days <= MAX_WINDOW_DAYS:
        raise InputError(f"mule_fan_in: window_days must lie in [0, {MAX_WINDOW_DAYS}], got {window_days}")
    if (window_days is not None or as_of is not None) and not time:
        raise InputError("mule_fan_in: window_days and as_of need the time column")
    if as_of is not None:
        _as_of_day(as_of)


def mule_fan_in_plain(tables: Mapping[str, pd.DataFrame], *, receiver: str, receiver_bank: str, sender: str,
                      victim: str, min_senders: int, time: str | None = None, window_days: int | None = None,
                      as_of: str | None = None, max_count: int = DEFAULT_MAX_COUNT, salt: str = DEFAULT_SALT) -> dict:
    """Plaintext twin of ``mule_fan_in``."""
    _check_mule(min_senders, max_count, time, window_days, as_of)
    check_kinds({b: {receiver: id_kind(t, b, receiver), sender: id_kind(t, b, sender)} for b, t in tables.items()},
                (receiver, sender))
    if window_days is not None:
        dated = {bank: _dated_transfers(t, bank, receiver, receiver_bank, sender, victim, time, as_of)
                 for bank, t in tables.items()}
        rows = pd.concat([pd.DataFrame({"g": pd.Series(g, dtype=object), "m": pd.Series(m, dtype=object), "d": d,
                                        "p": p}) for g, m, d, p, _ in dated.values()], ignore_index=True)
        peaks = _peak_senders(rows, window_days)
        flagged = set(peaks[peaks >= min_senders].index)
        by_bank = {bank: {"flagged_accounts": sorted(a for a in own if bank + _SEP + a in flagged)}
                   for bank, (_, _, _, _, own) in dated.items()}
        return {"flagged_total": len(flagged), "by_bank": by_bank}
    parts = {bank: _transfers(t, bank, receiver, receiver_bank, sender, victim, time, window_days, as_of)
             for bank, t in tables.items()}
    rows = pd.concat([pd.DataFrame({"g": pd.Series(g, dtype=object), "m": pd.Series(m, dtype=object), "p": p})
                      for g, m, p, _ in parts.values()], ignore_index=True)
    senders = rows[rows["p"] == 1].groupby("g")["m"].nunique()
    flagged = senders[senders >= min_senders]
    by_bank = {}
    for bank, (_, _, _, own) in parts.items():
        accounts = {a: min(int(flagged[bank + _SEP + a]), max_count) for a in own if bank + _SEP + a in flagged.index}
        by_bank[bank] = {"flagged_accounts": sorted(accounts), "victim_senders": dict(sorted(accounts.items()))}
    return {"flagged_total": len(flagged), "by_bank": by_bank}


def mule_fan_in_check(table: pd.DataFrame, party: str, *, receiver: str, receiver_bank: str, sender: str,
                      victim: str, min_senders: int, time: str | None = None, window_days: int | None = None,
                      as_of: str | None = None, max_count: int = DEFAULT_MAX_COUNT, salt: str = DEFAULT_SALT) -> None:
    """One bank's local input check: the columns present and well formed, victims 0/1, dates parseable."""
    _check_mule(min_senders, max_count, time, window_days, as_of)
    if window_days is not None:
        _dated_transfers(table, party, receiver, receiver_bank, sender, victim, time, as_of)
    else:
        _transfers(table, party, receiver, receiver_bank, sender, victim, time, window_days, as_of)


_MULE_PARAMS = [
    Param("receiver", "column", required=True, description="receiving account id of each transfer"),
    Param("receiver_bank", "column", required=True,
          description="the member holding the receiving account (its party name)"),
    Param("sender", "column", required=True, description="sending customer (this bank's) of each transfer"),
    Param("victim", "column", required=True, description="0/1: the sender's bank reported the transfer as fraud"),
    Param("min_senders", "int", required=True, description="flag accounts paid by at least this many victims"),
    Param("time", "column", description="transfer date column (with window_days or as_of)"),
    Param("window_days", "int",
          description="sliding window: flag an account paid by min_senders victims within some window_days + 1 "
                      "consecutive days (a transfer exactly window_days before another counts with it)"),
    Param("as_of", "str", description="optional last day (YYYY-MM-DD): only transfers dated up to it count"),
    Param("max_count", "int", default=DEFAULT_MAX_COUNT, description="public cap on the sender counts revealed"),
    _SALT,
]


@register("mule_fan_in", params=_MULE_PARAMS, plaintext=mule_fan_in_plain, check=mule_fan_in_check, ring=64,
          releases_cells=False)
def mule_fan_in(ctx, table, owners, *, receiver, receiver_bank, sender, victim, min_senders, time=None,
                window_days=None, as_of=None, max_count=DEFAULT_MAX_COUNT, salt=DEFAULT_SALT) -> dict | None:
    """Mule accounts: receiving accounts paid by many reported fraud victims of several banks.

    Each bank's file lists its customers' outgoing transfers (receiving account, the member
    holding it by party name, sender, victim 0/1 as reported by the sender's bank, and
    optionally a date). A receiving account is flagged when at least ``min_senders``
    distinct reported victims (over all banks; a sender is its bank's customer, so senders
    of different banks are different people) paid it; with ``window_days``, within one
    sliding window: on some day t, at least ``min_senders`` distinct victims paid it on
    days t - window_days .. t (both ends included; a victim paying twice counts once).
    With ``as_of`` only transfers dated up to it count (each bank drops later ones
    locally). A bank's own accounts, which it learns about, are the senders of its file
    and the receivers its file names at itself. Without a window it runs
    ``smpc.grouping.distinct_threshold`` with group = (holding bank, receiving account),
    member = (sending bank, sender), predicate = victim, plus one row that only asks for
    each own account none of the bank's transfers pays (every row carries its group's
    result, so a transfer to an own account answers for it); with one,
    ``smpc.grouping.distinct_in_window`` (per group) on the same keys and the transfer
    date, each bank having merged its repeats of (account, sender, day).
    Every bank among the job's recipients returns {"flagged_total": flagged receiving
    accounts in the consortium, "by_bank": {its name: {"flagged_accounts": [sorted],
    "victim_senders": {account: min(victims, max_count)}}}}, without "victim_senders" when
    a window is given (the peak window's count is not computed); merged over the banks this
    equals the plaintext twin's.
    Leakage: each bank's number of distinct (account, sender) transfer pairs (with a
    window: (account, sender, day) triples) plus its own accounts that none of them pays,
    and whether it stores
    receiver and sender ids as text or numbers (to every party); to every recipient bank,
    which of its own accounts are flagged (without a window with their capped victim
    counts), and the number of flagged accounts in the consortium. Not who paid them, at
    which banks or on which days. Repeated runs with other thresholds or windows add up; a
    policy should limit them.
    Cost: without a window, ``distinct_threshold`` over N rows (transfer pairs and asking
    rows): 1 round to agree on id types, 2 to share (3 words per row), the two-word
    sort, then exactly 7 + 1 + 2 + ceil(log2 N) + 8 + 2 + 2 + 4 rounds and ~0.43 kB per
    row. Measured over gRPC at 3 banks x 1e5 transfers (4.9e5 rows with the banks' asking
    rows): 265 rounds, 809 MB sent by party 0; with window_days 2, 293 rounds and 1.46 GB.
    With a window, ``distinct_in_window``
    (per group, ``members_at_one_bank``: a member is one bank's sender, so each bank cuts
    its senders' day intervals itself and there is no first sort) over N rows (transfer
    triples and asking rows): 1 round to agree on id types, 2 to share (3 words and 1
    value per row), one two-word sort of 2 N rows (a start and an end event per row), and
    outside it exactly 6 + 2 + 2 ceil(log2 2N) + 8 + 2 + 2 + 1 + 3 + 1 rounds and
    ~0.54 kB per row (docs/costs.md: "distinct in window, per group, members at one
    bank"). Measured in-process at 3 banks x 1e4 transfers (``synthetic_transfers(3,
    10000, seed=0)``, N = 49 042, window_days 2, one run): 255 rounds and 124 MB sent by
    party 0 (2.5 kB per row, the sort included); 270 rounds and 164 MB when the group's
    flag took ring64 totals and a sign test, 466 rounds and 211 MB with a first sort too.
    Error: none (exact counts; hash collisions, probability <= N^2 / 2^63, would merge
    accounts or senders).
    """
    _check_mule(min_senders, max_count, time, window_days, as_of)
    rank = ctx.rank
    party = ctx.name_of(rank)
    _agree_on_kinds(ctx, owners, table, [receiver, sender], (receiver, sender))
    if window_days is not None:
        return _mule_in_window(ctx, table, owners, receiver, receiver_bank, sender, victim, min_senders, time,
                               window_days, as_of, max_count, salt)
    own = own_rows = groups = members = predicate = None
    if table is not None and rank in owners:
        report_progress(ctx, 0.02, "checking, merging and hashing transfers")
        g, m, p, own = _transfers(table, party, receiver, receiver_bank, sender, victim, time, window_days, as_of)
        asking, own_rows = _own_account_rows(g, own, party)
        groups = hash_ids(g + [party + _SEP + a for a in asking], salt)
        members = hash_ids(m + [_ACCOUNT_ROW] * len(asking), salt)
        predicate = np.concatenate([p, np.zeros(len(asking), dtype=np.int64)])
    report_progress(ctx, 0.05, "sharing transfers")
    out = distinct_threshold(ctx, owners, groups, members, predicate, min_members=min_senders, cap=max_count,
                             recipients=[o for o in owners if o in ctx.result_ranks])
    if out.rows is None:
        return None
    report_progress(ctx, 1.0, "done")
    tail = out.rows[own_rows]
    accounts = {a: int(c) for a, (f, c) in zip(own, tail.tolist(), strict=True) if f == 1}
    part = {"flagged_accounts": sorted(accounts), "victim_senders": dict(sorted(accounts.items()))}
    return {"flagged_total": out.total, "by_bank": {party: part}}


def _mule_in_window(ctx, table, owners, receiver, receiver_bank, sender, victim, min_senders, time, window_days,
                    as_of, max_count, salt) -> dict | None:
    """``mule_fan_in`` with a sliding window, on ``distinct_in_window`` per group (the id
    types already agreed)."""
    rank = ctx.rank
    party = ctx.name_of(rank)
    own = own_rows = groups = members = days = predicate = None
    if table is not None and rank in owners:
        report_progress(ctx, 0.02, "checking, merging and hashing dated transfers")
        g, m, d, p, own = _dated_transfers(table, party, receiver, receiver_bank, sender, victim, time, as_of)
        asking, own_rows = _own_account_rows(g, own, party)
        groups = hash_ids(g + [party + _SEP + a for a in asking], salt)
        members = hash_ids(m + [_ACCOUNT_ROW] * len(asking), salt)
        # an own account's row only asks: any day does, its window holds no more than the peak
        days = np.concatenate([d, np.zeros(len(asking), dtype=np.int64)])
        predicate = np.concatenate([p, np.zeros(len(asking), dtype=np.int64)])
    report_progress(ctx, 0.05, "sharing dated transfers")
    # a member is (sending bank, sender): all its rows are that bank's, which cuts its intervals
    # in the clear, so the first sort (members across banks) is not needed (the asking rows'
    # shared member key carries no predicate, so it never counts)
    out = distinct_in_window(ctx, owners, groups, members, days, predicate, window_days=window_days,
                             min_members=min_senders, cap=max_count, per_group=True,
                             recipients=[o for o in owners if o in ctx.result_ranks], members_at_one_bank=True)
    if out.rows is None:
        return None
    report_progress(ctx, 1.0, "done")
    tail = out.rows[own_rows, 0]
    part = {"flagged_accounts": sorted(a for a, f in zip(own, tail.tolist(), strict=True) if f == 1)}
    return {"flagged_total": out.total, "by_bank": {party: part}}


__all__ = [
    "check_kinds",
    "id_kind",
    "mule_fan_in",
    "mule_fan_in_plain",
    "shared_attribute_links",
    "shared_attribute_links_plain",
    "table_days",
    "velocity",
    "velocity_plain",
]
