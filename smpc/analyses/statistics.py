"""Statistics analyses: describe, histogram, quantiles, corr, default_rate by group.

Every bank first aggregates its own rows locally and exactly (counts, sums of exact integer
units, sums of squares and cross-products, per-group counts, per-bin counts); only those
aggregates are secret-shared, summed on shares and revealed. Leakage is therefore the
consortium-level outputs (plus the sufficient statistics they determine, named in each
``Leakage:``), never a bank's own row count or aggregates, and the cost does not grow with
the number of rows.

A bank's table is a DataFrame or a ``smpc.sources.TableSource``; describe, histogram,
default_rate and corr read it in batches (``common.table_batches``) and keep per batch only
running aggregates (exact Python ints, ``common.exact_sum``/``exact_dot``), so a bank's peak
memory does not grow with its rows; quantiles keeps one int64 per row of its one column for
the selection, and a ``dp_customer`` cap reads the columns it needs whole (it counts rows
per customer in file order).

Amounts are shared as exact integers of 10^-decimals (``amount_units``): a value with more
decimals than declared is refused, never rounded. No analysis here truncates a fixed-point
value, so the rounding of probabilistic truncation, which correlates with party 0's share
(``protocols.arithmetic.reshare_truncated``), reveals nothing in them.

Released cells pass the disclosure rules of ``smpc.analyses.disclosure`` (min_cell_size,
min_contributors, max_dominance), decided on shares; results are opened to the job's
recipients (``ctx.result_ranks``) only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction

import numpy as np
import pandas as pd
import torch

from smpc import dp
from smpc.analyses import disclosure
from smpc.analyses.common import (
    MAX_ROWS_PER_BANK,
    amount_units,
    bounded_view,
    cap_customer_rows,
    check_dp,
    check_row_count,
    check_rows,
    count_view,
    default_flags,
    dp_metadata,
    dp_params,
    exact_dot,
    exact_sum,
    inputs_checked,
    rows_from,
    suppressed,
    table_batches,
    table_column,
    whole_table,
)
from smpc.analyses.disclosure import RULE_PARAMS
from smpc.analyses.registry import Param, register, report_progress
from smpc.errors import InputError, RangeError
from smpc.fixedpoint import MAX_DECIMALS
from smpc.secret import SecretTensor, cat, share_each, stack, where
from smpc.sharing import COMPUTE_RANKS, N_COMPUTE
from smpc.sources import as_frame
from smpc.stats import var_from_moments


def _check_scale(analysis: str, decimals: int, bound: float, squares: bool = False, banks: int = 1) -> None:
    """The public scale parameters, refused by name before any data is read. ``squares``: the
    analysis sums squares and products of the units over every bank's rows, which must fit
    ring128 (otherwise the refusal would come later, naming an internal aggregate)."""
    if not 0 <= decimals <= MAX_DECIMALS:
        raise InputError(f"{analysis}: parameter 'decimals' must be in 0..{MAX_DECIMALS}, got {decimals}")
    if not bound > 0:
        raise InputError(f"{analysis}: parameter 'bound' must be positive, got {bound:g}")
    worst = banks * float(MAX_ROWS_PER_BANK) * (bound * 10.0**decimals) ** 2
    if squares and not worst < 2.0**127:
        raise RangeError(
            f"{analysis}: parameters 'bound' = {bound:g} and 'decimals' = {decimals}: sums of squares over up to "
            f"{MAX_ROWS_PER_BANK} rows per bank could reach {worst:.3g}, beyond the 128-bit ring (1.7e38); "
            "declare a tighter bound or fewer decimals"
        )


# ----- shared machinery ----------------------------------------------------------------
def _units(table: pd.DataFrame, party: str, column: str, decimals: int, bound: float) -> tuple[np.ndarray, np.ndarray]:
    """(present mask, exact integer units of the present values) of one column of a
    DataFrame (a whole table or one batch of it)."""
    col = table_column(table, party, column)
    present = col.notna().to_numpy()
    # missing entries become 0 only to keep row numbers in error messages; they are dropped
    filled = pd.DataFrame({column: col.where(col.notna(), 0)})
    values = amount_units(filled, party, column, decimals, bound)[present]
    check_row_count(party, len(table))
    return present, values


def _column_sums(table, party, columns, decimals, bound) -> list[dict]:
    """Per column, over one bank's rows read in batches: count, sum, sum of squares and sum
    of |units| of the present values (exact Python ints), their min and max (None without
    values) and the number of missing entries. Refuses bad values naming the table's row."""
    acc = [{"n": 0, "s1": 0, "s2": 0, "abs": 0, "lo": None, "hi": None, "missing": 0} for _ in columns]
    rows = 0
    for start, frame in table_batches(table, party, columns):
        rows += len(frame)
        with rows_from(start):
            for a, c in zip(acc, columns, strict=True):
                present, units = _units(frame, party, c, decimals, bound)
                a["missing"] += int(len(present) - present.sum())
                if not len(units):
                    continue
                a["n"] += len(units)
                a["s1"] += exact_sum(units)
                a["s2"] += exact_dot(units, units)
                a["abs"] += exact_sum(np.abs(units))
                lo, hi = int(units.min()), int(units.max())
                a["lo"] = lo if a["lo"] is None else min(a["lo"], lo)
                a["hi"] = hi if a["hi"] is None else max(a["hi"], hi)
    check_row_count(party, rows)
    return acc


def _column_units(table, party, column, decimals, bound, keep: bool = True) -> np.ndarray | None:
    """The exact units of one column's present values over one bank's rows (int64, file
    order), read in batches; with ``keep=False`` only checked (None)."""
    parts, rows = [], 0
    for start, frame in table_batches(table, party, [column]):
        rows += len(frame)
        with rows_from(start):
            units = _units(frame, party, column, decimals, bound)[1]
        if keep:
            parts.append(units)
    check_row_count(party, rows)
    return np.concatenate(parts) if keep else None


def secure_total(ctx, owners, local, bound: float, name: str, length: int) -> SecretTensor:
    """Every owner shares its local vector of ``length`` exact integers; the sum over owners,
    on shares.

    Cost: 1 round (all owners at once, ``smpc.share_each``; 1-2 ring elements per entry
    from each). Leakage: none (the length is public by the analysis' parameters)."""
    mine = [int(v) for v in local] if ctx.rank in owners else None
    parts = share_each(ctx, mine, owners, shape=(length,), bound=bound, frac_bits=0, name=name)
    return sum(parts[1:], parts[0])



# ----- describe --------------------------------------------------------------------------
def _amount_params(of: str) -> list[Param]:
    """The scale of the values in the column(s) named by parameter ``of``: set by each bank."""
    return [
        Param("decimals", "int", default=2, owner="decimals", owner_column=of,
              description="decimal places of the values; shared exactly as integers of 10^-decimals"),
        Param("bound", "float", default=1e12, owner="bound", owner_column=of,
              description="public largest |value| of any single entry"),
    ]


_AMOUNT_PARAMS = [
    *_amount_params("columns"),
    Param("min_cell_size", "int", default=1, description="suppress statistics over fewer (but more than zero) records"),
    *RULE_PARAMS,
]


def _describe_local(table, party, columns, decimals, bound, shift=None):
    """(moments, has-values flags, extremes, magnitudes, missing): per column count, sum and
    sum of squares of the units; whether it has values; its min and max; with a ``shift``
    (dominance), sum |units| (and that sum >> shift where shift > 0); and how many of its
    entries are missing (left out of everything else)."""
    moments, flags, extremes, magnitudes, highs, missing = [], [], [], [], [], []
    for a in _column_sums(table, party, columns, decimals, bound):
        missing.append(a["missing"])
        moments += [a["n"], a["s1"], a["s2"]]
        flags.append(1 if a["n"] else 0)
        extremes += [a["lo"], a["hi"]] if a["n"] else [0, 0]
        magnitude = a["abs"]
        magnitudes.append(magnitude)
        highs.append(magnitude >> shift if shift else 0)
    if shift is None:
        magnitudes = []
    return moments, flags, extremes, magnitudes + (highs if shift else []), missing


def _describe_result(n: int, s1: Fraction, s2: Fraction, lo, hi, missing: int, scale: int) -> dict:
    if n == 0:
        nan = math.nan
        return {"count": 0, "sum": 0.0, "mean": nan, "var": nan, "std": nan, "min": nan, "max": nan,
                "missing": missing}
    var = var_from_moments(n, Fraction(s1, scale), Fraction(s2, scale * scale), ddof=1)
    return {
        "count": n,
        "sum": float(Fraction(s1, scale)),
        "mean": float(Fraction(s1, scale * n)),
        "var": var,
        "std": math.sqrt(var) if not math.isnan(var) else math.nan,
        "min": float(Fraction(lo, scale)),
        "max": float(Fraction(hi, scale)),
        "missing": missing,
    }


def _describe_plain(tables: Mapping[str, pd.DataFrame], *, columns, decimals=2, bound=1e12, min_cell_size=1,
                    min_contributors=None, max_dominance=100.0, dp_epsilon=None, dp_customer=None,
                    dp_rows_per_customer=1) -> dict:
    _check_scale("describe", decimals, bound)
    check_dp("describe", dp_epsilon, dp_customer, dp_rows_per_customer)
    if dp_epsilon is not None:  # the exact values the noise is added to, with its scales
        totals = [sum(v) for v in zip(*(_describe_dp_local(t, bank, columns, decimals, bound, dp_customer,
                                                            dp_rows_per_customer)
                                         for bank, t in tables.items()), strict=True)]
        return _describe_dp_result(columns, totals, decimals, bound, min_cell_size, dp_epsilon, dp_rows_per_customer)
    rules = disclosure.resolve("describe", len(tables), min_cell_size, min_contributors, max_dominance)
    tables = {bank: as_frame(t) for bank, t in tables.items()}
    out = {}
    scale = 10**decimals
    per_bank = {c: [[int(v) for v in _units(t, bank, c, decimals, bound)[1]] for bank, t in tables.items()]
                for c in columns}
    counts = [[len(per_bank[c][b]) for c in columns] for b in range(len(tables))]
    magnitudes = [[[sum(abs(v) for v in per_bank[c][b])] for c in columns] for b in range(len(tables))]
    hidden = disclosure.suppressed_plain(rules, counts, magnitudes)
    for j, c in enumerate(columns):
        units = [v for part in per_bank[c] for v in part]
        if hidden[j]:
            out[c] = suppressed(count=None)
            continue
        s1, s2 = sum(units), sum(v * v for v in units)
        lo, hi = (min(units), max(units)) if units else (0, 0)
        missing = sum(len(t) - len(part) for t, part in zip(tables.values(), per_bank[c], strict=True))
        out[c] = _describe_result(len(units), s1, s2, lo, hi, missing, scale)
    return out


def _describe_check(table, party, *, columns, decimals=2, bound=1e12, min_cell_size=1, min_contributors=None,
                    max_dominance=100.0, dp_epsilon=None, dp_customer=None, dp_rows_per_customer=1) -> None:
    _check_scale("describe", decimals, bound)
    check_dp("describe", dp_epsilon, dp_customer, dp_rows_per_customer)
    if dp_customer is not None:
        cap_customer_rows(whole_table(table, [dp_customer]), party, dp_customer, dp_rows_per_customer)
    disclosure.resolve("describe", 1, min_cell_size, min_contributors, max_dominance)
    _column_sums(table, party, columns, decimals, bound)


@register("describe", params=[Param("columns", "columns", required=True, description="numeric columns to describe"),
                              *_AMOUNT_PARAMS, *dp_params()], plaintext=_describe_plain, check=_describe_check,
          streams=True)
def describe(ctx, table, owners, *, columns, decimals=2, bound=1e12, min_cell_size=1, min_contributors=None,
             max_dominance=100.0, dp_epsilon=None, dp_customer=None, dp_rows_per_customer=1) -> dict | None:
    """Per column: count, sum, mean, var (ddof=1, as pandas), std, min and max over all banks' rows,
    and how many entries were missing.

    Each bank computes, per column, its count, sum and sum of squares of the exact integer
    units and its own min and max; these are shared, summed on shares, the min and max found
    by a secure tournament over the banks. Missing (empty, NaN) entries are skipped (pandas
    skipna) and counted: each bank shares its own number of them with its moments, and their
    sum over the banks is opened as ``missing`` with the column's statistics. Which
    columns are released is decided on shares by the disclosure rules
    (``smpc.analyses.disclosure``: min_cell_size, min_contributors on the banks' counts,
    max_dominance on the banks' sums of |value|); a suppressed column is opened as a public
    sentinel, {"count": null, "suppressed": true}. The count, sums, min, max and missing of the
    columns are opened in one batch, to the job's recipients (``ctx.result_ranks``) only.
    Leakage: to the recipients, per released column the count, sum, sum of squares
    (determined by count, mean and var), min, max and the total number of missing entries
    over the banks (never a bank's own); for a suppressed column only that it is suppressed.
    Nothing to any other party (the rules' flags are never opened). Duplicate rows are
    separate records: counted, summed and compared like any others.
    Cost: 3 + 11 ceil(log2 banks) rounds: one in which every bank shares 7 ring elements
    per column (moments, missing entries, whether it has values, its min and max; 1-2 more with
    max_dominance < 100), one masking banks without values, ceil(log2 banks) tournament
    levels of 11 rounds finding min and max at once, one reveal; with any disclosure rule
    (by default min_contributors = min(3, banks) >= 1) 11 + ceil(log2 L) more: one batched
    comparison, a product tree over L leaves (banks with min_contributors, plus banks with
    max_dominance, one more round if sums of |value| exceed 64-bit comparisons), and one
    selection. Independent of row counts.
    Error: none: exact rational arithmetic, one rounding to float64 per output.
    Privacy: with ``dp_epsilon`` only count, sum and mean per column are released, with
    noise (``smpc.dp``): see ``_describe_dp``.
    """
    _check_scale("describe", decimals, bound, squares=True, banks=len(owners))
    check_dp("describe", dp_epsilon, dp_customer, dp_rows_per_customer)
    if dp_epsilon is not None:
        return _describe_dp(ctx, table, owners, columns=columns, decimals=decimals, bound=bound,
                            min_cell_size=min_cell_size, epsilon=dp_epsilon, customer=dp_customer,
                            cap=dp_rows_per_customer)
    rules = disclosure.resolve("describe", len(owners), min_cell_size, min_contributors, max_dominance)
    unit = 10**decimals
    bound_units = bound * unit
    magnitude_bound = float(MAX_ROWS_PER_BANK) * max(bound_units, 1.0)
    shift = disclosure.dominance_shift(rules, magnitude_bound) if rules.dominance_bp is not None else None
    d = len(columns)
    extra = 0 if shift is None else (2 * d if shift else d)
    mine = None
    if table is not None and ctx.rank in owners:
        report_progress(ctx, 0.05, "aggregating this bank's rows")
        moments, flags, extremes, magnitudes, missing = _describe_local(table, ctx.name_of(ctx.rank), columns,
                                                                        decimals, bound, shift)
        mine = [*moments, *flags, *extremes, *magnitudes, *missing]
    report_progress(ctx, 0.2, "sharing the aggregates")
    big = float(MAX_ROWS_PER_BANK) * max(bound_units, 1.0) ** 2
    # one round for everything every bank shares: moments (summed), and per bank which columns
    # have values and its own min and max (for a tournament over the banks)
    parts = share_each(ctx, mine, owners, shape=(7 * d + extra,), bound=big, frac_bits=0, name="aggregates")
    if not ctx.is_compute and ctx.rank not in ctx.result_ranks:
        return None
    totals = sum((p[: 3 * d] for p in parts[1:]), parts[0][: 3 * d])
    missing = sum((p[6 * d + extra :] for p in parts[1:]), parts[0][6 * d + extra :])
    report_progress(ctx, 0.5, "finding min and max")
    present = bounded_view(stack([p[3 * d : 4 * d] for p in parts], dim=0), 1)  # banks x columns
    stacked = bounded_view(stack([p[4 * d : 6 * d] for p in parts], dim=0), bound_units).reshape(len(owners), d, 2)
    # max = -min(-x): one masking and one tournament find both, in half the rounds of two
    candidates = cat([stacked[:, :, 0], -stacked[:, :, 1]], dim=1)  # banks x (mins, -maxes)
    extreme = where(cat([present, present], dim=1), candidates, bound_units + 1).min(dim=0)
    lo, hi = extreme[:d], -extreme[d:]
    report_progress(ctx, 0.8, "deciding which columns are released")
    per_column = totals.reshape(d, 3)
    measure = None
    if shift is not None:
        measure = disclosure.Measure(
            [bounded_view(p[6 * d : 7 * d], magnitude_bound) for p in parts], magnitude_bound,
            high_parts=[bounded_view(p[7 * d : 8 * d], magnitude_bound / 2.0**shift) for p in parts] if shift else None,
            shift=shift)
    released = disclosure.released_on_shares(
        rules, [p[: 3 * d].reshape(d, 3)[:, 0] for p in parts], MAX_ROWS_PER_BANK,
        total=count_view(per_column[:, 0], owners), measure=measure)
    # an empty column opens min/max as the public sentinels +-(bound + 1), nothing else
    batch = cat([per_column, lo.reshape(-1, 1), hi.reshape(-1, 1), missing.reshape(-1, 1)], dim=1)
    report_progress(ctx, 0.9, "revealing")
    opened = disclosure.open_cells(batch, released, d, [-1, 0, 0, 0, 0, 0], ctx.result_ranks)
    if opened is None:
        return None
    out = {}
    for j, c in enumerate(columns):
        row = [int(v) for v in opened[j]]
        out[c] = suppressed(count=None) if row[0] < 0 else _describe_result(*row, unit)
    report_progress(ctx, 1.0, "done")
    return out


def _describe_dp_local(table, party, columns, decimals, bound, customer, cap) -> list[int]:
    """[count, sum of units] per column of one bank's rows, at most ``cap`` per customer."""
    if customer is not None:
        table = cap_customer_rows(whole_table(table, [*columns, customer]), party, customer, cap)
    out = []
    for a in _column_sums(table, party, columns, decimals, bound):
        out += [a["n"], a["s1"]]
    return out


def _describe_dp_scales(columns, decimals, bound, epsilon, cap) -> list:
    """Per column, the contribution scales of its count (sensitivity ``cap`` rows) and its
    sum (``cap`` rows of at most ``bound``, in units): epsilon split over the 2 d statistics."""
    unit_bound = math.ceil(Fraction(repr(float(bound))) * 10**decimals)
    return dp.scales(epsilon, [cap, cap * unit_bound] * len(columns))


def _describe_dp_result(columns, values, decimals, bound, min_cell_size, epsilon, cap) -> dict:
    unit = 10**decimals
    scales = _describe_dp_scales(columns, decimals, bound, epsilon, cap)
    out = {}
    for j, c in enumerate(columns):
        n, total = int(values[2 * j]), int(values[2 * j + 1])
        s_n, s_sum = scales[2 * j], scales[2 * j + 1]
        if min_cell_size > 1 and n < min_cell_size:
            out[c] = suppressed(count=None)
            continue
        count, amount = dp.statistic(n, s_n), dp.statistic(total, s_sum, unit)
        out[c] = {
            "count": count["value"], "sum": amount["value"],
            "mean": float(Fraction(total, unit * n)) if n > 0 else math.nan,
            "interval95": {"count": count["interval95"], "sum": amount["interval95"],
                           "mean": dp.ratio_interval(total, s_sum, n, s_n, -bound, bound, unit)},
            "noise": {k: {"scale": v["noise_scale"], "std": v["noise_std"]} for k, v in (("count", count),
                                                                                          ("sum", amount))},
        }
    return {"columns": out, **dp_metadata(epsilon, cap, min_cell_size)}


def _describe_dp(ctx, table, owners, *, columns, decimals, bound, min_cell_size, epsilon, customer, cap):
    """describe's release with epsilon-differential privacy (``smpc.dp``).

    Each bank shares, per column, its count and sum of exact units over at most ``cap`` rows
    per customer; the totals get discrete Laplace noise from two compute parties on shares
    and are opened to the recipients. Sensitivity: one customer added at one bank changes a
    column's count by at most ``cap`` and its sum by at most ``cap`` * bound (each bank
    refuses a value above the bound its own configuration declares); epsilon is split evenly
    over the 2 d statistics (sequential composition). The mean (sum / count) and the small
    cell rule (noisy count < min_cell_size: suppressed) are post-processing of the noisy
    values; min_contributors and max_dominance, which read exact per-bank values, are not
    evaluated. Leakage: the noisy counts and sums. Cost: 3 rounds (share, noise, open).
    """
    mine = None
    if table is not None and ctx.rank in owners:
        mine = _describe_dp_local(table, ctx.name_of(ctx.rank), columns, decimals, bound, customer, cap)
    bound_units = max(bound * 10**decimals, 1.0)
    parts = share_each(ctx, mine, owners, shape=(2 * len(columns),), bound=float(MAX_ROWS_PER_BANK) * bound_units,
                       frac_bits=0, name="counts and sums")
    if not ctx.is_compute and ctx.rank not in ctx.result_ranks:
        return None
    totals = sum(parts[1:], parts[0])
    opened = dp.noisy_open(ctx, totals, _describe_dp_scales(columns, decimals, bound, epsilon, cap),
                           ctx.result_ranks)
    if opened is None:
        return None
    return _describe_dp_result(columns, [int(v) for v in opened], decimals, bound, min_cell_size, epsilon, cap)


# ----- histogram -------------------------------------------------------------------------
def _histogram_local(table, party, column, edges):
    """Per-bin counts (int64) of one bank's rows, read in batches."""
    bins = np.asarray(edges, dtype=np.float64)
    counts = np.zeros(len(edges) - 1, dtype=np.int64)
    for start, frame in table_batches(table, party, [column]):
        with rows_from(start):
            col = table_column(frame, party, column)
            numeric = pd.to_numeric(col, errors="coerce")
            check_rows(numeric.isna() & col.notna(), party, column, "is not numeric")
        values = numeric.dropna().to_numpy(dtype=np.float64)
        counts += np.histogram(values, bins=bins)[0]
    return counts


def _check_edges(edges):
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise InputError("histogram: parameter 'edges' needs at least two strictly increasing numbers")


def _cells(counts: list[int], hidden: list[bool]) -> list:
    return [suppressed() if h else c for c, h in zip(counts, hidden, strict=True)]


def _histogram_plain(tables, *, column, edges, min_cell_size=1, min_contributors=None, max_dominance=100.0,
                     dp_epsilon=None, dp_customer=None, dp_rows_per_customer=1) -> dict:
    _check_edges(edges)
    check_dp("histogram", dp_epsilon, dp_customer, dp_rows_per_customer)
    if dp_epsilon is not None:
        per_bank = [_histogram_local(cap_customer_rows(as_frame(t), bank, dp_customer, dp_rows_per_customer), bank,
                                     column, edges) for bank, t in tables.items()]
        return _histogram_dp_result(edges, [int(v) for v in np.sum(per_bank, axis=0)], min_cell_size, dp_epsilon,
                                    dp_rows_per_customer)
    rules = disclosure.resolve("histogram", len(tables), min_cell_size, min_contributors, max_dominance)
    per_bank = [[int(v) for v in _histogram_local(t, bank, column, edges)] for bank, t in tables.items()]
    total = [sum(col) for col in zip(*per_bank, strict=True)]
    hidden = disclosure.suppressed_plain(rules, per_bank)
    return {"edges": list(edges), "counts": _cells(total, hidden), "min_cell_size": min_cell_size, **rules.metadata()}


def _histogram_check(table, party, *, column, edges, min_cell_size=1, min_contributors=None,
                     max_dominance=100.0, dp_epsilon=None, dp_customer=None, dp_rows_per_customer=1) -> None:
    _check_edges(edges)
    check_dp("histogram", dp_epsilon, dp_customer, dp_rows_per_customer)
    if dp_customer is not None:
        cap_customer_rows(whole_table(table, [dp_customer]), party, dp_customer, dp_rows_per_customer)
    disclosure.resolve("histogram", 1, min_cell_size, min_contributors, max_dominance)
    _histogram_local(table, party, column, edges)


@register("histogram", params=[
    Param("column", "column", required=True, description="numeric column"),
    Param("edges", "floats", required=True, description="public bin edges, increasing (numpy.histogram semantics)"),
    Param("min_cell_size", "int", default=1, description="suppress bins with fewer (but more than zero) records"),
    *RULE_PARAMS,
    *dp_params(),
], plaintext=_histogram_plain, check=_histogram_check, streams=True)
def histogram(ctx, table, owners, *, column, edges, min_cell_size=1, min_contributors=None,
              max_dominance=100.0, dp_epsilon=None, dp_customer=None, dp_rows_per_customer=1) -> dict | None:
    """Counts per public bin [e_k, e_k+1) (the last bin closed), as numpy.histogram, over all banks.

    Each bank bins its own rows; the per-bin counts are shared and summed on shares. Which
    bins are released is decided on shares by the disclosure rules
    (``smpc.analyses.disclosure``: min_cell_size, min_contributors and max_dominance on the
    banks' per-bin counts); a suppressed bin opens as a public sentinel and is reported as
    {"suppressed": true}. The counts are opened to the job's recipients
    (``ctx.result_ranks``) only.
    Leakage: to the recipients, the released bin counts and which bins are suppressed;
    nothing to any other party (the rules' flags are never opened).
    Cost: 2 rounds: one in which every bank shares 1-2 ring elements per bin, one reveal;
    with any disclosure rule (by default min_contributors = min(3, banks) >= 1)
    11 + ceil(log2 L) more: one batched comparison, a product tree over L leaves (banks with
    min_contributors, plus banks with max_dominance) and one selection. Independent of row
    counts.
    Error: none (counts are exact).
    Privacy: with ``dp_epsilon`` every bin count gets discrete Laplace noise (``smpc.dp``) of
    scale 2 dp_rows_per_customer / dp_epsilon per contribution (one customer's capped rows
    change the bin vector by at most dp_rows_per_customer in L1); bins whose noisy count is
    below min_cell_size are reported suppressed (post-processing), min_contributors and
    max_dominance are not evaluated. Cost then: 3 rounds (share, noise, open).
    """
    _check_edges(edges)
    check_dp("histogram", dp_epsilon, dp_customer, dp_rows_per_customer)
    rules = disclosure.resolve("histogram", len(owners), min_cell_size, min_contributors, max_dominance)
    bins = len(edges) - 1
    local = None
    if table is not None and ctx.rank in owners:
        party = ctx.name_of(ctx.rank)
        rows = table
        if dp_epsilon is not None and dp_customer is not None:
            rows = cap_customer_rows(whole_table(table, [column, dp_customer]), party, dp_customer,
                                     dp_rows_per_customer)
        local = [int(v) for v in _histogram_local(rows, party, column, edges)]
    parts = share_each(ctx, local, owners, shape=(bins,), bound=float(MAX_ROWS_PER_BANK), frac_bits=0,
                           name="bin counts")
    if not ctx.is_compute and ctx.rank not in ctx.result_ranks:
        return None
    counts = sum(parts[1:], parts[0])
    if dp_epsilon is not None:
        noisy = dp.noisy_open(ctx, counts, dp.scales(dp_epsilon, [dp_rows_per_customer]) * bins, ctx.result_ranks)
        return None if noisy is None else _histogram_dp_result(edges, [int(v) for v in noisy], min_cell_size,
                                                               dp_epsilon, dp_rows_per_customer)
    released = disclosure.released_on_shares(rules, parts, MAX_ROWS_PER_BANK, total=count_view(counts, owners))
    opened = disclosure.open_cells(counts, released, bins, [-1], ctx.result_ranks)
    if opened is None:
        return None
    values = [int(v) for v in opened[:, 0]]
    return {"edges": list(edges), "counts": _cells(values, [v < 0 for v in values]), "min_cell_size": min_cell_size,
            **rules.metadata()}


def _histogram_dp_result(edges, counts, min_cell_size, epsilon, cap) -> dict:
    scale = dp.scales(epsilon, [cap])[0]
    stats = [dp.statistic(c, scale) for c in counts]
    cells = [suppressed() if min_cell_size > 1 and c < min_cell_size else c for c in counts]
    intervals = [None if isinstance(cell, dict) else st["interval95"] for cell, st in zip(cells, stats, strict=True)]
    return {"edges": list(edges), "counts": cells, "interval95": intervals,
            "noise": {"scale": stats[0]["noise_scale"], "std": stats[0]["noise_std"]} if stats else None,
            **dp_metadata(epsilon, cap, min_cell_size)}


# ----- quantiles -------------------------------------------------------------------------
_FANOUT = 16  # thresholds per search step: log_17 of the value range steps


def _quantile_positions(n: int, q: list[float]) -> list[tuple[int, Fraction]]:
    """numpy's 'linear' method: position h = (n - 1) q, lower order statistic k = floor(h)."""
    out = []
    for p in q:
        h = (n - 1) * Fraction(p)
        k = math.floor(h)
        out.append((k, h - k))
    return out


def _interpolate(lo: int, hi: int, frac: Fraction, scale: int) -> float:
    return float((Fraction(lo) + frac * (hi - lo)) / scale)


def _quantiles_plain(tables, *, column, q, decimals=2, bound=1e12, min_contributors=None, max_dominance=100.0) -> dict:
    _check_q(q)
    _check_scale("quantiles", decimals, bound)
    rules = disclosure.resolve("quantiles", len(tables), 1, min_contributors, max_dominance)
    per_bank = [[int(v) for v in _column_units(t, bank, column, decimals, bound)] for bank, t in tables.items()]
    if disclosure.suppressed_plain(rules, [[len(v)] for v in per_bank])[0]:
        return suppressed(rules, count=None)
    units = sorted(v for part in per_bank for v in part)
    if not units:
        return {"count": 0, "quantiles": {str(p): math.nan for p in q}, **rules.metadata()}
    n = len(units)
    scale = 10**decimals
    out = {}
    for p, (k, frac) in zip(q, _quantile_positions(n, q), strict=True):
        out[str(p)] = _interpolate(units[k], units[min(k + 1, n - 1)], frac, scale)
    return {"count": n, "quantiles": out, **rules.metadata()}


def _check_q(q):
    if not q or any(not 0 <= p <= 1 for p in q):
        raise InputError("quantiles: parameter 'q' needs numbers in [0, 1]")


def _quantiles_check(table, party, *, column, q, decimals=2, bound=1e12, min_contributors=None,
                     max_dominance=100.0) -> None:
    _check_q(q)
    _check_scale("quantiles", decimals, bound)
    disclosure.resolve("quantiles", 1, 1, min_contributors, max_dominance)
    _column_units(table, party, column, decimals, bound, keep=False)


def order_statistics(ctx, owners, searches) -> list[dict[int, int]]:
    """Order statistics of exact integer values held by the banks, by secure selection.

    ``searches``: per search (this bank's sorted integer units or None on a rank without
    data, the 0-based ranks t wanted, the public bound of |unit|). Returns per search
    {t: x_(t)} on every rank. All searches step together: per step every bank counts its
    own values <= 16 thresholds per target, the counts of every search are shared in one
    round and summed, and only the comparisons "total >= t+1" are revealed, to the compute
    parties (and published to input-party banks, which count at the next thresholds).
    Leakage: to every compute party and bank, the search outcomes, i.e. the order statistics.
    Cost: max over searches of ceil(log_17(2 bound + 1)) steps of 12 rounds (one share, one
    batched comparison of 10, one reveal; one more publish with input-party banks).
    """
    lo = [{t: -b - 1 for t in targets} for _, targets, b in searches]  # count(<= lo) < t + 1
    hi = [{t: b for t in targets} for _, targets, b in searches]  # count(<= hi) >= t + 1
    step = 0
    while any(h[t] - low[t] > 1 for low, h in zip(lo, hi, strict=True) for t in h):
        step += 1
        report_progress(ctx, min(0.95, step / 12), f"selection step {step}")
        plan = []  # (search, target, thresholds)
        for s, (_, targets, _) in enumerate(searches):
            for t in targets:
                width = hi[s][t] - lo[s][t]
                points = sorted({lo[s][t] + (width * (i + 1)) // (_FANOUT + 1) for i in range(_FANOUT)} - {lo[s][t]})
                plan.append((s, t, [p for p in points if p < hi[s][t]] or [lo[s][t] + 1]))
        flat = [p for _, _, pts in plan for p in pts]
        local = None
        if any(units is not None for units, _, _ in searches):
            local = np.concatenate([np.searchsorted(searches[s][0], np.asarray(pts, dtype=np.int64), side="right")
                                    for s, _, pts in plan])
        totals = secure_total(ctx, owners, local, float(MAX_ROWS_PER_BANK), "counts below thresholds", len(flat))
        need = torch.tensor([t + 1 for _, t, pts in plan for _ in pts], dtype=torch.float64)
        reached = (1 - (totals < need)).reveal_int(COMPUTE_RANKS)  # the search needs them
        bits = [int(v) for v in reached.reshape(-1)] if reached is not None else None
        bits = ctx.publish(bits, owner=0) if ctx.world_size > N_COMPUTE else bits
        offset = 0
        for s, t, pts in plan:
            for p, bit in zip(pts, bits[offset : offset + len(pts)], strict=True):
                if bit:
                    hi[s][t] = min(hi[s][t], p)
                else:
                    lo[s][t] = max(lo[s][t], p)
            offset += len(pts)
    return [dict(h) for h in hi]


@register("quantiles", params=[
    Param("column", "column", required=True, description="numeric column"),
    Param("q", "floats", required=True, description="quantile levels in [0, 1]"),
    *_amount_params("column"),
    *RULE_PARAMS,
], plaintext=_quantiles_plain, check=_quantiles_check, streams=True)
def quantiles(ctx, table, owners, *, column, q, decimals=2, bound=1e12, min_contributors=None,
              max_dominance=100.0) -> dict | None:
    """Exact quantiles (numpy 'linear' interpolation) over all banks' rows, by secure selection.

    Definition: for n values and level p, h = (n-1) p, k = floor(h), and the quantile is
    x_(k) + (h-k) (x_(k+1) - x_(k)) over the sorted values, as numpy.quantile's default.
    Method: selection, not sorting. Each order statistic x_(k) is found by a 17-ary search
    over the exact integer value range: per step every bank counts its own values <= 16
    thresholds, the counts are shared and summed, and only the comparisons "total >= k+1" are
    revealed; every order statistic of every level is searched at once. The column is one
    cell for the disclosure rules (``smpc.analyses.disclosure``: min_contributors and
    max_dominance on the banks' counts), decided on shares before anything is opened; a
    suppressed column gives {"count": null, "suppressed": true} and no search.
    Leakage: whether the column is suppressed and, if not, the total count n and, per
    level, the two order statistics x_(k) and x_(k+1) (the revealed search outcomes are
    determined by them), to every compute party: the search's thresholds follow from the
    outcomes, so each compute party learns them whether or not it is one of the job's
    recipients (``ctx.result_ranks``; only recipients return the result). With more than
    three banks the banks are input parties, and each of them also receives n and every
    search outcome (it counts its own values at the next thresholds, which follow from them),
    hence the same order statistics, although its call returns None unless it is a recipient.
    Cost: 2 rounds for the count (with any disclosure rule, by default min_contributors =
    min(3, banks) >= 1, 11 + ceil(log2 L) more: one batched comparison, a product tree over
    L leaves and one selection), then ceil(log_17(2 bound 10^decimals + 1)) steps of 12: one
    round in which every bank shares its counts, one batched comparison (10 rounds), one
    reveal (with input-party banks one more round each to publish n and the outcomes);
    bytes independent of row counts.
    Error: none: exact order statistics, one rounding to float64.
    """
    _check_q(q)
    _check_scale("quantiles", decimals, bound)
    scale = 10**decimals
    bound_units = int(round(bound * scale))
    units = None
    if table is not None and ctx.rank in owners:
        # the selection counts values below thresholds at every step: one int64 per row
        units = np.sort(_column_units(table, ctx.name_of(ctx.rank), column, decimals, bound))
    rules = disclosure.resolve("quantiles", len(owners), 1, min_contributors, max_dominance)
    parts = share_each(ctx, [len(units)] if units is not None else None, owners, shape=(1,),
                           bound=float(MAX_ROWS_PER_BANK), frac_bits=0, name="count")
    count = sum(parts[1:], parts[0])
    released = disclosure.released_on_shares(rules, parts, MAX_ROWS_PER_BANK, total=count_view(count, owners))
    # the compute parties run the search: they learn n (-1: suppressed)
    n_open = disclosure.open_cells(count, released, 1, [-1], COMPUTE_RANKS)
    n = int(n_open[0, 0]) if n_open is not None else None
    # input parties follow the search too (they count their own values): tell them n
    n = ctx.publish(n, owner=0) if ctx.world_size > N_COMPUTE else n
    mine = ctx.rank in ctx.result_ranks
    if n < 0:
        return suppressed(rules, count=None) if mine else None
    if n == 0:
        return {"count": 0, "quantiles": {str(p): math.nan for p in q}, **rules.metadata()} if mine else None
    positions = _quantile_positions(n, q)
    targets = sorted({k for k, _ in positions} | {min(k + 1, n - 1) for k, _ in positions})
    values = order_statistics(ctx, owners, [(units, targets, bound_units)])[0]
    if not mine:
        return None
    out = {}
    for p, (k, frac) in zip(q, positions, strict=True):
        out[str(p)] = _interpolate(values[k], values[min(k + 1, n - 1)], frac, scale)
    report_progress(ctx, 1.0, "done")
    return {"count": n, "quantiles": out, **rules.metadata()}


# ----- corr ------------------------------------------------------------------------------
def _corr_local(table, party, columns, decimals, bound, shift=None):
    """Per ordered pair (i, j), over this bank's rows where both are present: count, sum,
    sum of squares of x_i and sum of x_i x_j; with a ``shift`` (dominance) then per pair
    sum |x_i| (and that sum >> shift where shift > 0). Read in batches, summed exactly."""
    d = len(columns)
    stats = [0] * (4 * d * d)
    magnitudes = [0] * (d * d)
    rows = 0
    for start, frame in table_batches(table, party, columns):
        rows += len(frame)
        data = []
        with rows_from(start):
            for c in columns:
                present, values = _units(frame, party, c, decimals, bound)  # errors name the file's rows
                units = np.zeros(len(present), dtype=np.int64)
                units[present] = values
                data.append((present, units))
        for i in range(d):
            for j in range(d):
                both = data[i][0] & data[j][0]
                xi, xj = data[i][1][both], data[j][1][both]
                e = i * d + j
                stats[4 * e] += int(both.sum())
                stats[4 * e + 1] += exact_sum(xi)
                stats[4 * e + 2] += exact_dot(xi, xi)
                stats[4 * e + 3] += exact_dot(xi, xj)
                magnitudes[e] += exact_sum(np.abs(xi))
    check_row_count(party, rows)
    if shift is None:
        return stats
    return stats + magnitudes + ([m >> shift for m in magnitudes] if shift else [])


def _corr_pairs(d: int) -> list[tuple[int, int]]:
    """The unordered pairs (i <= j): the cells of corr's disclosure rules."""
    return [(i, j) for i in range(d) for j in range(i, d)]


def _corr_result(columns, totals, scale):
    d = len(columns)
    corr = [[math.nan] * d for _ in range(d)]
    cov = [[math.nan] * d for _ in range(d)]
    for i in range(d):
        for j in range(d):
            n, s_i, q_i, p = totals[(i * d + j) * 4 : (i * d + j) * 4 + 4]
            _, s_j, q_j, _ = totals[(j * d + i) * 4 : (j * d + i) * 4 + 4]
            if n < 2:  # suppressed pairs arrive as zeros
                continue
            num = n * p - s_i * s_j
            cov[i][j] = float(Fraction(num, n * (n - 1) * scale * scale))
            vi, vj = n * q_i - s_i * s_i, n * q_j - s_j * s_j
            if vi > 0 and vj > 0:
                # r^2 = num^2 / (vi vj) exactly, then one square root
                r = math.sqrt(Fraction(num * num, vi * vj))
                corr[i][j] = 1.0 if i == j else math.copysign(r, num)
    return {"columns": list(columns), "corr": corr, "cov": cov}


def _corr_rules(owners_or_banks: int, min_cell_size, min_contributors, max_dominance) -> disclosure.Rules:
    # a covariance needs two rows: pairs count their contributors at max(2, min_cell_size)
    return disclosure.resolve("corr", owners_or_banks, max(2, min_cell_size), min_contributors, max_dominance)


def _corr_plain(tables, *, columns, decimals=2, bound=1e12, min_cell_size=1, min_contributors=None,
                max_dominance=100.0) -> dict:
    _check_scale("corr", decimals, bound)
    rules = _corr_rules(len(tables), min_cell_size, min_contributors, max_dominance)
    d = len(columns)
    locals_ = [_corr_local(t, bank, columns, decimals, bound, shift=0) for bank, t in tables.items()]
    totals = [sum(v) for v in zip(*(loc[: 4 * d * d] for loc in locals_), strict=True)]
    pairs = _corr_pairs(d)
    counts = [[loc[4 * (i * d + j)] for i, j in pairs] for loc in locals_]
    magnitudes = [[[loc[4 * d * d + i * d + j], loc[4 * d * d + j * d + i]] for i, j in pairs] for loc in locals_]
    hidden = disclosure.suppressed_plain(rules, counts, magnitudes)
    for (i, j), h in zip(pairs, hidden, strict=True):
        if h:
            for e in (i * d + j, j * d + i):
                totals[4 * e : 4 * e + 4] = [0, 0, 0, 0]
    return {**_corr_result(columns, totals, 10**decimals), "min_cell_size": min_cell_size, **rules.metadata()}


def _corr_check(table, party, *, columns, decimals=2, bound=1e12, min_cell_size=1, min_contributors=None,
                max_dominance=100.0) -> None:
    _check_scale("corr", decimals, bound)
    _corr_rules(1, min_cell_size, min_contributors, max_dominance)
    _corr_local(table, party, columns, decimals, bound)


@register("corr", params=[Param("columns", "columns", required=True, description="numeric columns"), *_AMOUNT_PARAMS],
          plaintext=_corr_plain, check=_corr_check, streams=True)
def corr(ctx, table, owners, *, columns, decimals=2, bound=1e12, min_cell_size=1, min_contributors=None,
         max_dominance=100.0) -> dict | None:
    """Pearson correlation matrix (pairwise-complete rows, as pandas.DataFrame.corr) and the covariance matrix.

    Each bank computes for every pair of columns, over its rows where both are present, the
    count, sum, sum of squares and sum of products of the exact integer units; these are
    shared and summed on shares. Every unordered pair of columns is a cell for the
    disclosure rules (``smpc.analyses.disclosure``, decided on shares): with
    min_contributors k >= 1 (default min(3, banks)) at least k banks must each hold
    max(2, min_cell_size) pairwise-complete rows, otherwise (k = 0) the pair needs 0 or at
    least max(2, min_cell_size) rows; max_dominance weighs the banks' sums of |x_i| and
    |x_j| over those rows. A suppressed pair opens as zeros and gives NaN; the aggregates
    of every pair are opened in one batch to the job's recipients (``ctx.result_ranks``)
    only, and the matrices are finished exactly.
    Leakage: to the recipients, which pairs of columns are suppressed (NaN; a pair with
    fewer than 2 rows is NaN too); for every other pair the pairwise count, sums, sums of
    squares and sum of products, i.e. exactly the means, variances and covariance matrix
    (which this analysis returns beside the correlations). Nothing to any other party.
    Cost: 13 + ceil(log2 L) rounds: one in which every bank shares 4 d^2 values (1-2 ring
    elements each; d^2 or 2 d^2 more with max_dominance < 100), one batched comparison of
    the banks' counts of the d(d+1)/2 pairs (10 rounds), a product tree over L leaves (1
    without min_contributors, else one per bank, plus two per bank with max_dominance;
    one more round where sums of |x| exceed 64-bit comparisons), one selection and one
    reveal of 8 values per pair. Independent of row counts.
    Error: the ratio is exact; one float64 square root (relative error ~1e-16).
    """
    _check_scale("corr", decimals, bound, squares=True, banks=len(owners))
    rules = _corr_rules(len(owners), min_cell_size, min_contributors, max_dominance)
    d = len(columns)
    bound_units = max(bound * 10**decimals, 1.0)
    magnitude_bound = float(MAX_ROWS_PER_BANK) * bound_units
    shift = disclosure.dominance_shift(rules, magnitude_bound) if rules.dominance_bp is not None else None
    extra = 0 if shift is None else (2 * d * d if shift else d * d)
    local = None
    if table is not None and ctx.rank in owners:
        local = _corr_local(table, ctx.name_of(ctx.rank), columns, decimals, bound, shift)
    big = float(MAX_ROWS_PER_BANK) * bound_units**2
    parts = share_each(ctx, local, owners, shape=(4 * d * d + extra,), bound=big, frac_bits=0, name="cross moments")
    if not ctx.is_compute and ctx.rank not in ctx.result_ranks:
        return None
    totals = sum((p[: 4 * d * d] for p in parts[1:]), parts[0][: 4 * d * d])
    cells = totals.reshape(d * d, 4)
    pairs = _corr_pairs(d)
    forward = [i * d + j for i, j in pairs]
    backward = [j * d + i for i, j in pairs]
    per_bank = [p[: 4 * d * d].reshape(d * d, 4)[forward][:, 0] for p in parts]
    measure = None
    if shift is not None:
        both = [e for f, b in zip(forward, backward, strict=True) for e in (f, b)]
        offset = 4 * d * d
        measure = disclosure.Measure(
            [bounded_view(p[offset : offset + d * d][both], magnitude_bound) for p in parts], magnitude_bound,
            per_cell=2,
            high_parts=[bounded_view(p[offset + d * d :][both], magnitude_bound / 2.0**shift) for p in parts]
            if shift else None,
            shift=shift)
    released = disclosure.released_on_shares(rules, per_bank, MAX_ROWS_PER_BANK,
                                             total=count_view(cells[forward][:, 0], owners), measure=measure)
    batch = cat([cells[forward], cells[backward]], dim=1)  # pairs x 8
    opened = disclosure.open_cells(batch, released, len(pairs), [0] * 8, ctx.result_ranks)
    if opened is None:
        return None
    values = [0] * (4 * d * d)
    for row, (f, b) in enumerate(zip(forward, backward, strict=True)):
        values[4 * f : 4 * f + 4] = [int(v) for v in opened[row, :4]]
        values[4 * b : 4 * b + 4] = [int(v) for v in opened[row, 4:]]
    return {**_corr_result(columns, values, 10**decimals), "min_cell_size": min_cell_size, **rules.metadata()}


# ----- default rate by group ------------------------------------------------------------
def _key(v) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def _rate_counts(table, party, label, positive, by, groups) -> dict[str, list[int]]:
    """{group key: [loans, defaults]} of one bank's rows, read in batches; refuses bad labels,
    missing keys and keys outside the declared ``groups`` (when declared)."""
    declared = None if groups is None else {str(g) for g in groups}
    out: dict[str, list[int]] = {}
    for start, frame in table_batches(table, party, [label, by]):
        with rows_from(start):
            flags = default_flags(frame, party, label, positive)
            col = table_column(frame, party, by)
            check_rows(col.isna(), party, by, "has no group key")
            # the key of each distinct value once, not of every row
            codes, uniques = pd.factorize(col, use_na_sentinel=False)
            keys = [_key(u) for u in uniques]
            if declared is not None:
                # the key itself may be a customer's identifier: name the row only
                outside = np.asarray([k not in declared for k in keys], dtype=bool)
                check_rows(outside[codes], party, by, "has a group key not in the declared groups")
        counts = np.bincount(codes, minlength=len(keys))
        defaults = np.bincount(codes, weights=flags, minlength=len(keys))  # < 2^53 per batch: exact
        for k, n, d in zip(keys, counts, defaults, strict=True):
            acc = out.setdefault(k, [0, 0])
            acc[0] += int(n)
            acc[1] += int(d)
    return out


def _rate_check(table, party, *, label, by, positive=None, groups=None, min_cell_size=1, min_contributors=None,
                max_dominance=100.0, dp_epsilon=None, dp_customer=None, dp_rows_per_customer=1) -> None:
    disclosure.resolve("default_rate", 1, min_cell_size, min_contributors, max_dominance)
    _rate_dp_check(groups, dp_epsilon, dp_customer, dp_rows_per_customer)
    if dp_customer is not None:
        cap_customer_rows(whole_table(table, [dp_customer]), party, dp_customer, dp_rows_per_customer)
    _rate_counts(table, party, label, positive, by, groups)


def _rate_local(table, party, label, positive, by, groups):
    """[loans, defaults] per key of ``groups``, flattened."""
    return _rate_vector(_rate_counts(table, party, label, positive, by, groups), groups)


def _rate_vector(counts: dict, keys) -> list[int]:
    return [v for k in keys for v in counts.get(k, (0, 0))]


def _rate_groups(groups, counts, defaults, hidden) -> dict:
    out = {}
    for i, g in enumerate(groups):
        if hidden[i]:
            out[g] = suppressed()
        else:
            c, d = counts[i], defaults[i]
            out[g] = {"count": c, "defaults": d, "rate": float(Fraction(d, c)) if c else math.nan}
    return out


def _rate_dp_check(groups, dp_epsilon, dp_customer, dp_rows_per_customer) -> None:
    check_dp("default_rate", dp_epsilon, dp_customer, dp_rows_per_customer)
    if dp_epsilon is not None and groups is None:
        raise InputError("default_rate: dp_epsilon needs declared groups: without them every bank discloses its "
                         "set of group keys, which no noise covers")


def _rate_dp_result(by, keys, values, min_cell_size, epsilon, cap) -> dict:
    """Noisy loans and defaults per group; a customer's capped rows change the loan counts
    and the default counts by at most ``cap`` each in L1: epsilon split over the two."""
    s_count, s_defaults = dp.scales(epsilon, [cap, cap])
    out = {}
    for i, g in enumerate(keys):
        n, d = int(values[2 * i]), int(values[2 * i + 1])
        if min_cell_size > 1 and n < min_cell_size:
            out[g] = suppressed()
            continue
        count, defaults = dp.statistic(n, s_count), dp.statistic(d, s_defaults)
        out[g] = {"count": n, "defaults": d, "rate": min(1.0, max(0.0, d / n)) if n > 0 else math.nan,
                  "interval95": {"count": count["interval95"], "defaults": defaults["interval95"],
                                 "rate": dp.ratio_interval(d, s_defaults, n, s_count, 0.0, 1.0)}}
    noise = {"scale": float(s_count), "std": dp.Noise(s_count).std}
    return {"by": by, "groups": out, "noise": {"count": noise, "defaults": noise},
            **dp_metadata(epsilon, cap, min_cell_size)}


def _rate_plain(tables, *, label, by, positive=None, groups=None, min_cell_size=1, min_contributors=None,
                max_dominance=100.0, dp_epsilon=None, dp_customer=None, dp_rows_per_customer=1) -> dict:
    rules = disclosure.resolve("default_rate", len(tables), min_cell_size, min_contributors, max_dominance)
    _rate_dp_check(groups, dp_epsilon, dp_customer, dp_rows_per_customer)
    if dp_epsilon is not None:
        capped = {bank: cap_customer_rows(as_frame(t), bank, dp_customer, dp_rows_per_customer)
                  for bank, t in tables.items()}
        totals = sum(np.asarray(_rate_local(t, bank, label, positive, by, groups), dtype=np.int64)
                     for bank, t in capped.items())
        return _rate_dp_result(by, groups, [int(v) for v in totals], min_cell_size, dp_epsilon,
                               dp_rows_per_customer)
    keys = groups or sorted({k for bank, t in tables.items() for k in _rate_counts(t, bank, label, positive, by, None)})
    totals = np.zeros(2 * len(keys), dtype=np.int64)
    per_bank = []
    for bank, t in tables.items():
        local = np.asarray(_rate_local(t, bank, label, positive, by, keys), dtype=np.int64)
        per_bank.append([int(v) for v in local[0::2]])
        totals += local
    counts, defaults = [int(v) for v in totals[0::2]], [int(v) for v in totals[1::2]]
    hidden = disclosure.suppressed_plain(rules, per_bank)
    return {"by": by, "groups": _rate_groups(keys, counts, defaults, hidden), "min_cell_size": min_cell_size,
            **rules.metadata()}


@register("default_rate", params=[
    Param("label", "column", required=True, description="loan outcome: 0/1 flags, or labels with `positive`"),
    Param("by", "column", required=True, description="categorical column to group by (e.g. purpose, EDUCATION)"),
    Param("positive", "str", description="the label value that marks a default (e.g. 'bad'); omit for 0/1 flags"),
    Param("groups", "strs", owner="categories", owner_column="by",
          description="declared list of group keys; if omitted each bank discloses its set of keys"),
    Param("min_cell_size", "int", default=1, description="suppress groups with fewer (but more than zero) loans"),
    *RULE_PARAMS,
    *dp_params(),
], plaintext=_rate_plain, check=_rate_check, streams=True)
def default_rate(ctx, table, owners, *, label, by, positive=None, groups=None, min_cell_size=1, min_contributors=None,
                 max_dominance=100.0, dp_epsilon=None, dp_customer=None, dp_rows_per_customer=1) -> dict | None:
    """Per group: number of loans, number of defaults and default rate, small groups suppressed.

    Every bank checks its labels and group keys first; without declared ``groups`` all banks
    confirm that to each other before any bank publishes its keys, so a bad file stops the
    job before anything is disclosed. Each bank counts loans and defaults per group key
    locally; the per-group vectors are shared and summed on shares. Which groups are
    released is decided on shares by the disclosure rules (``smpc.analyses.disclosure``:
    min_cell_size, min_contributors and max_dominance on the banks' loan counts); a
    suppressed group opens as a public sentinel and is reported as {"suppressed": true}:
    its counts are never opened. Counts and defaults are opened to the job's recipients
    (``ctx.result_ranks``) only.
    Leakage: to the recipients, for each released group its count and defaults (the rate
    follows) and which groups are suppressed; nothing else to any other party. The set of
    group keys: the declared ``groups`` list, or else every bank's own set of keys (each bank
    discloses which keys occur in its data, to every party).
    Cost: 2 rounds with declared groups (one in which every bank shares 2-4 ring elements
    per group, one reveal), 4 without (one round to confirm the checks and one in which every
    bank publishes its keys, first); with any disclosure rule (by default min_contributors =
    min(3, banks) >= 1) 11 + ceil(log2 L) more: one batched comparison, a product tree over
    L leaves (banks with min_contributors, plus banks with max_dominance) and one
    selection. Independent of row counts.
    Error: none (exact counts; rates are the nearest float64).
    Privacy: with ``dp_epsilon`` (declared ``groups`` needed) every group's loans and defaults
    get discrete Laplace noise (``smpc.dp``), each of scale 2 dp_rows_per_customer /
    dp_epsilon per contribution (one customer's capped rows change either vector by at most
    dp_rows_per_customer in L1); rates and their intervals are post-processed from the
    noisy counts, groups with a noisy count below min_cell_size are reported suppressed,
    min_contributors and max_dominance are not evaluated. Cost then: 3 rounds (share, noise,
    open).
    """
    rules = disclosure.resolve("default_rate", len(owners), min_cell_size, min_contributors, max_dominance)
    _rate_dp_check(groups, dp_epsilon, dp_customer, dp_rows_per_customer)
    keys = groups
    mine_keys = None
    if table is not None and ctx.rank in owners:
        party = ctx.name_of(ctx.rank)
        if dp_epsilon is not None and dp_customer is not None:
            table = cap_customer_rows(whole_table(table, [label, by, dp_customer]), party, dp_customer,
                                      dp_rows_per_customer)
        # one pass over the rows: the keys it has and the counts per key
        counts = _rate_counts(table, party, label, positive, by, groups)
        mine_keys = sorted(counts)
    if keys is None:
        inputs_checked(ctx, owners)
        keys = sorted(set().union(*ctx.publish_each(mine_keys, owners)))
    local = None
    if mine_keys is not None:
        local = _rate_vector(counts, keys)
    parts = share_each(ctx, local, owners, shape=(2 * len(keys),), bound=float(MAX_ROWS_PER_BANK), frac_bits=0,
                           name="group counts")
    if not ctx.is_compute and ctx.rank not in ctx.result_ranks:
        return None
    if dp_epsilon is not None:
        s_count, s_defaults = dp.scales(dp_epsilon, [dp_rows_per_customer, dp_rows_per_customer])
        noisy = dp.noisy_open(ctx, sum(parts[1:], parts[0]), [s_count, s_defaults] * len(keys), ctx.result_ranks)
        return None if noisy is None else _rate_dp_result(by, keys, [int(v) for v in noisy], min_cell_size,
                                                          dp_epsilon, dp_rows_per_customer)
    pairs = sum(parts[1:], parts[0]).reshape(len(keys), 2)
    per_bank = [p.reshape(len(keys), 2)[:, 0] for p in parts]
    released = disclosure.released_on_shares(rules, per_bank, MAX_ROWS_PER_BANK,
                                             total=count_view(pairs[:, 0], owners))
    opened = disclosure.open_cells(pairs, released, len(keys), [-1, 0], ctx.result_ranks)
    if opened is None:
        return None
    counts_out = [int(v) for v in opened[:, 0]]
    defaults_out = [int(v) for v in opened[:, 1]]
    groups_out = _rate_groups(keys, counts_out, defaults_out, [c < 0 for c in counts_out])
    return {"by": by, "groups": groups_out, "min_cell_size": min_cell_size, **rules.metadata()}


__all__ = ["corr", "default_rate", "describe", "histogram", "order_statistics", "quantiles", "secure_total"]
