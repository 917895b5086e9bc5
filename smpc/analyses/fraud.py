"""Fraud analyses over a private join on customer ids: multi-lending and blacklist hits.

Both run ``smpc.join.private_join``: ids are hashed to 64-bit keys inside each bank, all
banks' rows are shuffled and sorted by key on secret shares, customers' totals come from
segmented scans, and results travel back to the banks that hold the rows (see
``smpc.join``). Each analysis has a plaintext twin computing the same dict in the clear.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction

import numpy as np
import pandas as pd

from smpc import dp
from smpc.analyses.common import amount_units, check_dp
from smpc.analyses.registry import Param, register, report_progress
from smpc.buckets import BankBuckets, BucketedAnalysis, open_shared, split_rows, sum_shares
from smpc.errors import InputError, RangeError
from smpc.fixedpoint import MAX_DECIMALS
from smpc.join import DEFAULT_SALT, aggregate_by_id, factorize_ids, hash_ids, private_join, sums_by_code, table_ids


# ----- shared helpers ----------------------------------------------------------------------
def threshold_units(threshold: float, decimals: int) -> int:
    """floor(threshold * 10^decimals) exactly (from the decimal text of the float), so that
    total_units > threshold_units  <=>  total > threshold for totals in units of 10^-decimals."""
    return math.floor(Fraction(repr(float(threshold))) * 10**decimals)


def _check_threshold_params(balance_threshold: float, min_lenders: int, decimals: int) -> None:
    if not math.isfinite(balance_threshold):
        raise InputError("multi_lending: balance_threshold must be a finite number")
    if min_lenders < 1:
        raise InputError(f"multi_lending: min_lenders must be at least 1, got {min_lenders}")
    if not 0 <= decimals <= MAX_DECIMALS:
        raise InputError(f"multi_lending: balance_decimals must be in 0..{MAX_DECIMALS}, got {decimals}")


def _requester_rank(ctx, owners: Sequence[int], requester: str) -> int:
    names = [ctx.name_of(r) for r in owners]
    if requester in names:
        return owners[names.index(requester)]
    text = str(requester).strip()
    if text.lstrip("-").isdigit() and int(text) in owners:
        return int(text)
    raise InputError(f"blacklist_hits: requester '{requester}' is not one of the banks ({', '.join(names)})")


def _plain_ids(tables: Mapping[str, pd.DataFrame], column: str) -> dict[str, list[str]]:
    return {bank: table_ids(t, bank, column) for bank, t in tables.items()}


# ----- multi_lending -------------------------------------------------------------------------
def multi_lending_plain(
    tables: Mapping[str, pd.DataFrame], *, id: str, balance: str, balance_threshold: float, min_lenders: int,
    balance_decimals: int = 2, balance_bound: float = 1e10, salt: str = DEFAULT_SALT, dp_epsilon=None,
) -> dict:
    """Plaintext twin of ``multi_lending``: the same dict, with every bank's flagged ids."""
    _check_threshold_params(balance_threshold, min_lenders, balance_decimals)
    thr = threshold_units(balance_threshold, balance_decimals)
    frames = []
    for bank, table in tables.items():
        # each bank's loans merged per customer, with the secure run's refusals; the consortium
        # totals and lender counts below are pandas', not the join's
        ids, sums = _customer_balances(table, bank, id, balance, balance_decimals, balance_bound)
        frames.append(pd.DataFrame({"id": pd.Series(ids, dtype=object), "units": sums[:, 0], "bank": bank}))
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"id": [], "units": [], "bank": []})
    per_customer = rows.groupby("id", sort=False).agg(total=("units", "sum"), lenders=("bank", "nunique"))
    over = per_customer["total"].to_numpy(dtype=np.int64) > thr
    many = per_customer["lenders"].to_numpy(dtype=np.int64) >= min_lenders
    flagged = set(per_customer.index[over | many])
    out = {
        "flagged_count": len(flagged),
        "by_bank": {
            bank: {"flagged_ids": sorted(set(f["id"]) & flagged)} for bank, f in zip(tables, frames, strict=True)
        },
    }
    if dp_epsilon is not None:  # the exact count the noise is added to, with its scale
        check_dp("multi_lending", dp_epsilon, None, 1)
        stat = dp.statistic(len(flagged), dp.scales(dp_epsilon, [1])[0])
        out.update(interval95=stat["interval95"], noise={"scale": stat["noise_scale"], "std": stat["noise_std"]},
                   epsilon_spent=float(dp_epsilon), mechanism=dp.MECHANISM)
    return out


def multi_lending_check(table: pd.DataFrame, party: str, *, id: str, balance: str, balance_threshold: float,
                        min_lenders: int, balance_decimals: int = 2, balance_bound: float = 1e10,
                        salt: str = DEFAULT_SALT, dp_epsilon=None) -> None:
    """One bank's local input check: ids present and well formed, balances numeric and bounded."""
    _check_threshold_params(balance_threshold, min_lenders, balance_decimals)
    check_dp("multi_lending", dp_epsilon, None, 1)
    _customer_balances(table, party, id, balance, balance_decimals, balance_bound)


_ML_PARAMS = [
    Param("id", "column", required=True, description="customer id column (same meaning at every bank)"),
    Param("balance", "column", required=True, description="outstanding balance of each loan (row)"),
    Param("balance_threshold", "float", required=True,
          description="flag customers whose total balance across all banks exceeds this"),
    Param("min_lenders", "int", required=True,
          description="flag customers who borrow from at least this many banks"),
    Param("balance_decimals", "int", default=2, owner="decimals", owner_column="balance",
          description="decimal places of balances (shared as exact integers)"),
    Param("balance_bound", "float", default=1e10, owner="total_bound", owner_column="balance",
          description="public largest total balance of one customer at one bank (and of any single loan)"),
    Param("salt", "str", default=DEFAULT_SALT, secret=True, owner="join_salt",
          description="consortium-wide secret salt of the id hash (every bank must use the same)"),
    Param("dp_epsilon", "float",
          description="release the flagged count with epsilon-differential privacy (docs/dp.md); the flagged ids "
                      "of a bank's own customers stay exact"),
]


@register("multi_lending", params=_ML_PARAMS, plaintext=multi_lending_plain, check=multi_lending_check, ring=64,
          releases_cells=False)
def multi_lending(ctx, table, owners, *, id, balance, balance_threshold, min_lenders, balance_decimals=2,
                  balance_bound=1e10, salt=DEFAULT_SALT, dp_epsilon=None) -> dict | None:
    """Customers over-borrowing across the consortium: total balance above a threshold, or too many lenders.

    Per customer (rows with the same normalised id at any bank; a customer may have several
    loans, i.e. rows, at one bank) the total balance and the number of distinct lending
    banks are computed on secret shares, and the customer is flagged when
    total > balance_threshold or lenders >= min_lenders. Each bank first merges its own
    loans per customer in the clear (exact integers of 10^-balance_decimals), so it brings
    one row per customer; the rows are joined on hashed ids (``smpc.join``, unique mode), a
    customer's rows summed by segmented scans (balance and row count packed in one ring64
    column: total << c | lenders), and both thresholds tested on one bit decomposition.
    Every bank among the job's recipients (``ctx.result_ranks``) receives the number of
    flagged customers and, for its own customers only, whether each is flagged (a bank that
    is not a recipient receives nothing and returns None); it returns {"flagged_count": c, "by_bank": {its name:
    {"flagged_ids": [its flagged ids, normalised, sorted]}}} (``merge_bank_results`` of all
    banks' dicts equals the plaintext twin's). Ranks without data get None.
    Leakage: each bank's number of distinct customers (to the compute parties); to every
    recipient bank, the number of flagged customers and which of its own customers are
    flagged (so, for a flagged customer, that a threshold is crossed across the
    consortium; never other banks' balances, lender counts or customers). Nothing else: the
    join's comparisons are opened only after a secret shuffle on distinct keys, and hashed ids
    are never opened (the hash is keyed by the consortium's secret join salt, which in the
    party service comes from each bank's own configuration, never from a requester). Per run:
    repeated runs with other parameters add up (thresholds in a binary search give each
    customer's consortium total; min_lenders=2 with an unreachable threshold tells a bank
    which of its customers borrow elsewhere), so a policy should limit how often, and with
    which parameters, a bank may run it. In K > 1 bucket sessions (``smpc.workers.run_bucketed``,
    ``smpc analyze --workers``) every bank pads each of its buckets to a public size
    P(n, K) (``smpc.buckets.pad_rows``) with dummy rows that can never match nor be
    flagged, so the compute parties learn P per bank, a function of its number of distinct
    customers n and K, and nothing about how its customers spread over the buckets (the
    bucket hash is keyed by a key derived from the join salt); the flagged count is summed
    over the buckets on shares and opened once, so recipients learn the same as from one
    session; a bank whose bucket would exceed P refuses before anything is shared, which
    for distinct ids happens with probability at most 2^-40 per bank and job (a Chernoff
    bound computed by ``smpc.buckets.overflow_bound``), and the refusal tells the other
    parties only that it happened.
    Cost: for N customer rows in all (N = 2.2e5 for three banks of 1e5 loans, measured):
    ~225 rounds (the quicksort's depth varies with the secret shuffle) and ~1.05 kB per row
    and party (237 MB for party 0, in-process). That is 2 rounds to share (2 words per row);
    the sort (3 + ~170 rounds, ~435 bytes per row); 8 rounds for adjacent equalities and their
    conversion; ceil(log2 N) rounds of scans (24 bytes per row and round); 18 rounds for the
    thresholds (bit decomposition, two comparisons, OR, bit injection); 1 for the count; 4
    to bring flags back (inverse shuffle, then open). In K > 1 buckets: each bucket session
    costs the same at N = its padded rows (the count's 8 bytes stay out of the flag
    messages), plus one merge round (8 bytes per recipient message).
    Error: none: sums, counts and comparisons are exact (RangeError before the sort if a
    customer's total over all banks could exceed 2^62 units given balance_bound, which
    bounds one customer's total balance at one bank). In K > 1 buckets, real keys give
    their top bit to the dummies' reserved space: the collision bound doubles.
    Privacy: with ``dp_epsilon`` the flagged count gets discrete Laplace noise (``smpc.dp``)
    of scale 1/dp_epsilon per contribution: one customer's rows added at one bank change
    only that customer's flag, so the count moves by at most 1. One more round (the noise is
    shared before the count is brought back). The flagged ids of a bank's own customers stay
    exact and are not covered by epsilon (their leakage is the one stated above).
    """
    _check_threshold_params(balance_threshold, min_lenders, balance_decimals)
    check_dp("multi_lending", dp_epsilon, None, 1)
    min_lenders = min(min_lenders, len(owners) + 1)  # more than every bank: no one qualifies (fits a word)
    rank = ctx.rank
    party = ctx.name_of(rank)
    bound_units = round(balance_bound * 10**balance_decimals)
    # no customer's total lies outside +-(banks x bound): a threshold beyond that flags everyone
    # or no one, so it is clamped rather than refused for not fitting the join's arithmetic
    reach = len(owners) * bound_units
    thr = min(max(threshold_units(balance_threshold, balance_decimals), -reach - 1), reach)
    count_bits = len(owners).bit_length()  # a customer has at most one (merged) row per bank
    ids = keys = packed = None
    if table is not None and rank in owners:
        report_progress(ctx, 0.02, "checking, merging and hashing ids")
        ids, sums = _customer_balances(table, party, id, balance, balance_decimals, balance_bound)
        keys = hash_ids(ids, salt)
        packed = (sums << count_bits) + 1  # balance units and a row count in one column
    report_progress(ctx, 0.05, "sharing customers")
    join = private_join(ctx, owners, keys, packed, n_values=1, unique=True,
                        value_bound=(bound_units << count_bits) + 1, bound_extra=(abs(thr) + 1) << count_bits,
                        what="multi_lending: balance totals")
    flags = count = None
    if ctx.is_compute:
        n = join.total_rows
        report_progress(ctx, 0.6, "customer totals")
        totals = join.totals(join.values).reshape((n,))  # total balance << count_bits | lenders
        report_progress(ctx, 0.75, "threshold comparisons")
        flags = join.over_thresholds(totals, thr, min_lenders, count_bits, step="ml")
        count = join.count_customers(flags, step="ml-count")
        flags = flags.reshape((n, 1))
    scale = None
    if dp_epsilon is not None:  # every rank takes part in sharing the noise
        scale = dp.scales(dp_epsilon, [1])[0]
        noise = dp.shared_noise(ctx, [scale])
        if count is not None:
            count = count.add(noise.shares)
    report_progress(ctx, 0.9, "returning flags to the banks")
    # results reach only the banks among the job's recipients
    own, extra = join.to_owners(flags, 1, recipients=[o for o in owners if o in ctx.result_ranks],
                                shared_extra=count, n_extra=1)
    if own is None:
        return None
    flagged = sorted(i for i, f in zip(ids, own[:, 0].tolist(), strict=True) if f == 1)
    report_progress(ctx, 1.0, "done")
    out = {"flagged_count": int(extra[0]), "by_bank": {party: {"flagged_ids": flagged}}}
    if scale is not None:
        stat = dp.statistic(int(extra[0]), scale)
        out.update(interval95=stat["interval95"], noise={"scale": stat["noise_scale"], "std": stat["noise_std"]},
                   epsilon_spent=float(dp_epsilon), mechanism=dp.MECHANISM)
    return out


def _customer_balances(table, party: str, id_column: str, balance: str, decimals: int, bound: float):
    """(distinct ids, their total balance at this bank in units of 10^-decimals, (n, 1)):
    a bank's loans merged per customer in the clear, before anything is shared."""
    ids = table_ids(table, party, id_column)
    units = amount_units(table, party, balance, decimals, bound)
    distinct, inverse = factorize_ids(ids)
    sums = sums_by_code(inverse, len(distinct), units)
    limit = round(bound * 10**decimals)
    wrapped = False
    if len(ids) * limit >= 2**63:
        # the int64 sums may have wrapped (2049 loans of 9e15 units make -5.7e15): the same sums
        # in float64 (units < 2^53 are exact; relative error ~ rows x 2^-53) decide
        approx = sums_by_code(inverse, len(distinct), units, np.float64)
        wrapped = float(np.abs(approx).max()) > limit * (1 + 1e-9) + 1
    if sums.size and (wrapped or int(np.abs(sums).max()) > limit):
        raise RangeError(
            f"{party}, column '{balance}': a customer's loans total more than balance_bound {bound:g} at this bank; "
            "raise balance_bound (it bounds one customer's total balance at one bank)"
        )
    return distinct, sums


def merge_bank_results(results: Sequence[dict | None]) -> dict | None:
    """The consortium view of ``multi_lending``: the banks' own results (one dict per bank,
    None for ranks without data) merged into {"flagged_count", "by_bank": {every bank}},
    which is what the plaintext twin returns. Each bank only ever sees its own entry; this
    is for whoever legitimately collects all banks' results (a CLI run on one machine)."""
    present = [r for r in results if r is not None]
    if not present:
        return None
    merged = {"flagged_count": present[0]["flagged_count"], "by_bank": {}}
    for r in present:
        merged["by_bank"].update(r["by_bank"])
    return merged


# ----- multi_lending in buckets ------------------------------------------------------------
def _ml_public(n_banks: int, *, balance_threshold: float, min_lenders: int, balance_decimals: int = 2,
               balance_bound: float = 1e10, **_) -> dict:
    """The public settings of every bucket session, as ``multi_lending`` derives them."""
    bound_units = round(balance_bound * 10**balance_decimals)
    reach = n_banks * bound_units
    return {
        "count_bits": n_banks.bit_length(),
        "bound_units": bound_units,
        "threshold": min(max(threshold_units(balance_threshold, balance_decimals), -reach - 1), reach),
        "min_lenders": min(min_lenders, n_banks + 1),
    }


def multi_lending_buckets(table, party: str, bank_index: int, n_banks: int, buckets: int, *, id, balance,
                          balance_threshold, min_lenders, balance_decimals=2, balance_bound=1e10, salt=DEFAULT_SALT,
                          dp_epsilon=None) -> tuple[list[str], BankBuckets]:
    """One bank's side of a bucketed ``multi_lending``, in the clear before anything is
    shared: its loans merged per customer and checked (as ``multi_lending`` does), keys
    hashed, and the rows split into ``buckets`` padded buckets (``smpc.buckets.split_rows``).
    A dummy row carries balance -(banks x bound + 1) and no lender: alone in its group (its
    key is reserved), it is never over the threshold (clamped to at least that total) nor
    over min_lenders >= 1, so it changes no flag and no count. Returns (distinct ids, the
    buckets).

    >>> import pandas as pd
    >>> ids, b = multi_lending_buckets(pd.DataFrame({"c": ["x", "y", "x"], "b": [1.0, 2.0, 3.0]}), "bank_a", 0, 3, 2,
    ...                                id="c", balance="b", balance_threshold=5, min_lenders=2)
    >>> ids, b.pad, sorted(int(v) for k in b.values for v in k[:, 0] if v > 0)
    (['x', 'y'], 2, [801, 1601])
    """
    _check_threshold_params(balance_threshold, min_lenders, balance_decimals)
    check_dp("multi_lending", dp_epsilon, None, 1)
    public = _ml_public(n_banks, balance_threshold=balance_threshold, min_lenders=min_lenders,
                        balance_decimals=balance_decimals, balance_bound=balance_bound)
    c = public["count_bits"]
    ids, sums = _customer_balances(table, party, id, balance, balance_decimals, balance_bound)
    keys = hash_ids(ids, salt)
    packed = (sums << c) + 1
    dummy = np.array([-((n_banks * public["bound_units"] + 1) << c)], dtype=np.int64)
    return ids, split_rows(party, keys, packed, buckets, salt, bank_index, n_banks, dummy)


def multi_lending_bucket(ctx, owners, keys, values, *, count_bits, bound_units, threshold, min_lenders) -> dict:
    """One bucket's MPC session of a bucketed ``multi_lending``: the single session's join,
    totals, thresholds and count on this bucket's padded rows, with the flags opened to each
    recipient bank for its own rows and the flagged count left shared (it is summed over the
    buckets and opened once, by ``multi_lending_merge``). Returns {"own": this bank's flags
    (P,) or None, "shared": this compute party's (first, second) count components or None}.
    Cost: ``multi_lending``'s at N = the bucket's padded rows, less its DP round, with 8
    bytes less in every flag message (the count does not travel)."""
    join = private_join(ctx, owners, keys, values, n_values=1, unique=True,
                        value_bound=(bound_units << count_bits) + 1, bound_extra=(abs(threshold) + 1) << count_bits,
                        what="multi_lending: balance totals")
    flags = count = None
    if ctx.is_compute:
        n = join.total_rows
        totals = join.totals(join.values).reshape((n,))
        flags = join.over_thresholds(totals, threshold, min_lenders, count_bits, step="ml")
        count = join.count_customers(flags, step="ml-count")
        flags = flags.reshape((n, 1))
    own, _ = join.to_owners(flags, 1, recipients=[o for o in owners if o in ctx.result_ranks])
    return {"own": None if own is None else own[:, 0].copy(),
            "shared": None if count is None else (count.first.clone(), count.second.clone())}


def multi_lending_merge(ctx, owners, shared, *, dp_epsilon=None, **_) -> dict | None:
    """The merge session: every compute party adds its count components over the buckets
    (local), adds the DP noise if asked (one round), and the total is opened to the
    recipient banks only (one round). Returns {"count": c[, "scale": s]} on recipients."""
    total = sum_shares(shared) if ctx.is_compute else None
    scale = None
    if dp_epsilon is not None:
        scale = dp.scales(dp_epsilon, [1])[0]
        noise = dp.shared_noise(ctx, [scale])
        if total is not None:
            total = total.add(noise.shares)
    recipients = [o for o in owners if o in ctx.result_ranks]
    opened = open_shared(ctx, None if total is None else total.first, None if total is None else total.second,
                         recipients)
    return None if opened is None else {"count": int(opened[0]), "scale": scale}


def multi_lending_finish(ids: list[str], buckets: BankBuckets, own: list[np.ndarray], opened: dict, party: str,
                         *, dp_epsilon=None, **_) -> dict:
    """A recipient bank's result from its flags per bucket (real rows first in each) and the
    opened count: the dict ``multi_lending`` returns."""
    flagged = sorted(ids[int(i)] for rows, f in zip(buckets.rows, own, strict=True)
                     for i, bit in zip(rows, f[: len(rows)].tolist(), strict=True) if bit == 1)
    out = {"flagged_count": opened["count"], "by_bank": {party: {"flagged_ids": flagged}}}
    if opened["scale"] is not None:
        stat = dp.statistic(opened["count"], opened["scale"])
        out.update(interval95=stat["interval95"], noise={"scale": stat["noise_scale"], "std": stat["noise_std"]},
                   epsilon_spent=float(dp_epsilon), mechanism=dp.MECHANISM)
    return out


MULTI_LENDING_BUCKETED = BucketedAnalysis(
    prepare=multi_lending_buckets, public=_ml_public, session=multi_lending_bucket, merge=multi_lending_merge,
    finish=multi_lending_finish,
)
"""``multi_lending`` as bucket sessions (``smpc.workers.run_bucketed``)."""


# ----- blacklist_hits ------------------------------------------------------------------------
def blacklist_hits_plain(tables: Mapping[str, pd.DataFrame], *, requester: str, id: str,
                         salt: str = DEFAULT_SALT) -> dict:
    """Plaintext twin of ``blacklist_hits``."""
    if requester not in tables:
        raise InputError(f"blacklist_hits: requester '{requester}' is not one of the banks ({', '.join(tables)})")
    ids = _plain_ids(tables, id)
    listed = [set(v) for bank, v in ids.items() if bank != requester]
    return {"hits": {i: sum(i in s for s in listed) for i in sorted(set(ids[requester]))}}


def blacklist_hits_check(table: pd.DataFrame, party: str, *, requester: str, id: str,
                         salt: str = DEFAULT_SALT) -> None:
    """One bank's local input check: the id column present and every id well formed."""
    table_ids(table, party, id)


_BL_PARAMS = [
    Param("requester", "str", required=True, description="the bank asking: its file lists its applicants"),
    Param("id", "column", required=True, description="customer id column (applicants / blacklisted ids)"),
    Param("salt", "str", default=DEFAULT_SALT, secret=True, owner="join_salt",
          description="consortium-wide secret salt of the id hash (every bank must use the same)"),
]


@register("blacklist_hits", params=_BL_PARAMS, plaintext=blacklist_hits_plain, check=blacklist_hits_check, ring=64,
          releases_cells=False)
def blacklist_hits(ctx, table, owners, *, requester, id, salt=DEFAULT_SALT) -> dict | None:
    """For each of the requester's applicants, how many other banks list the id on their blacklist.

    The requester's file lists its applicants, every other bank's file its blacklisted ids
    (an id listed twice by one bank counts once). All ids are joined on secret shares
    (``smpc.join``); for every row the number of distinct banks holding its id is computed,
    and only the requester's rows are opened, to the requester only: it returns
    {"hits": {applicant id (normalised): number of other banks listing it}}; every other
    rank returns None and receives no message after sharing its input.
    Leakage: each bank's number of distinct ids (to the compute parties); to the
    requester, for each of its applicants, the number of other banks listing it (not
    which). The other banks and the compute parties learn nothing about the applicants:
    hashed ids are never opened (the hash is keyed by the consortium's secret join salt,
    which in the party service comes from each bank's own configuration, never from a
    requester).
    Cost: for N distinct ids in all (N = 3e5: three files of 1e5, measured in-process):
    214-217 rounds and ~0.93 kB per id and party. That is 2 rounds to share (1 word per
    id); the sort (3 + ~175 rounds, ~435 bytes per id); 7 rounds for adjacent equalities
    and their conversion; ceil(log2 N) rounds of scans (24 bytes per id and round); 4
    rounds to return the counts (inverse shuffle, then open to the requester).
    Error: none (exact counts).
    """
    rank = ctx.rank
    party = ctx.name_of(rank)
    asker = _requester_rank(ctx, owners, requester)
    ids = keys = None
    if table is not None and rank in owners:
        report_progress(ctx, 0.02, "checking and hashing ids")
        ids, _ = aggregate_by_id(table_ids(table, party, id))
        keys = hash_ids(ids, salt)
    report_progress(ctx, 0.05, "sharing ids")
    join = private_join(ctx, owners, keys, unique=True)
    hits = None
    if ctx.is_compute:
        report_progress(ctx, 0.7, "counting banks per id")
        banks = join.totals(join.ones())
        # the requester itself is one of the banks holding its applicants' ids
        hits = join.plus_public(banks, -1)
    report_progress(ctx, 0.9, "returning counts to the requester")
    own, _ = join.to_owners(hits, 1, recipients=[asker])
    if own is None:
        return None
    counts = {i: int(c) for i, c in zip(ids, own[:, 0].tolist(), strict=True)}
    report_progress(ctx, 1.0, "done")
    return {"hits": {i: counts[i] for i in sorted(counts)}}


__all__ = [
    "blacklist_hits",
    "blacklist_hits_plain",
    "merge_bank_results",
    "multi_lending",
    "multi_lending_plain",
    "threshold_units",
]
