"""Statistics analyses: describe, histogram, quantiles, corr, default_rate by group.

Every bank first aggregates its own rows locally and exactly (counts, sums of exact integer
units, sums of squares and cross-products, per-group counts, per-bin counts); only those
aggregates are secret-shared, summed on shares and revealed. Leakage is therefore the
consortium-level outputs (plus the sufficient statistics they determine, named in each
``Leakage:``), never a bank's own row count or aggregates, and the cost does not grow with
the number of rows.

Amounts are shared as exact integers of 10^-decimals (``amount_units``): a value with more
decimals than declared is refused, never rounded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction

import numpy as np
import pandas as pd
import torch

import smpc
from smpc.analyses.credit import (
    MAX_DECIMALS,
    MAX_ROWS_PER_BANK,
    _column,
    amount_units,
    bounded_view,
    count_view,
    default_flags,
)
from smpc.analyses.registry import Param, register, report_progress
from smpc.errors import InputError, RangeError
from smpc.secret import SecretTensor, cat, where
from smpc.sharing import N_COMPUTE
from smpc.stats import var_from_moments

COMPUTE_RANKS = list(range(N_COMPUTE))


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
    """(present mask, exact integer units of the present values) of one column."""
    col = _column(table, party, column)
    present = col.notna().to_numpy()
    # missing entries become 0 only to keep row numbers in error messages; they are dropped
    filled = pd.DataFrame({column: col.where(col.notna(), 0)})
    values = amount_units(filled, party, column, decimals, bound)[present]
    if len(table) > MAX_ROWS_PER_BANK:
        raise InputError(f"{party}: {len(table)} rows exceed the {MAX_ROWS_PER_BANK} rows a bank may contribute")
    return present, values


def secure_total(ctx, owners, local, bound: float, name: str, length: int) -> SecretTensor:
    """Every owner shares its local vector of ``length`` exact integers; the sum over owners,
    on shares.

    Cost: 1 round (all owners at once, ``Context.share_each``; 1-2 ring elements per entry
    from each). Leakage: none (the length is public by the analysis' parameters)."""
    mine = [int(v) for v in local] if ctx.rank in owners else None
    parts = ctx.share_each(mine, owners, shape=(length,), bound=bound, frac_bits=0, name=name)
    return sum(parts[1:], parts[0])



def inputs_checked(ctx, owners) -> None:
    """Barrier: every bank tells every party that its own input passed its checks.

    A bank whose input fails raises before sending, which aborts the job on every party, so
    nothing that follows (a published value) leaves any bank while another bank's input is
    bad. Cost: 1 round; 1 byte from each bank to each other party. Leakage: none."""
    ok = torch.ones(1, dtype=torch.uint8)
    sends = {r: ok for r in range(ctx.world_size) if r != ctx.rank} if ctx.rank in owners else {}
    ctx.exchange("inputs_checked", sends=sends, recv_from=[o for o in owners if o != ctx.rank])


def suppression_flags(counts: SecretTensor, min_cell_size: int, to) -> list[bool] | None:
    """Which cells hold between 1 and min_cell_size - 1 records, revealed as flags only.

    [0 < n < m] = [n < m] - [n < 1] for counts n >= 0: both tests run as one batched
    comparison. Cost: 10 rounds and 1 reveal (1 byte per cell). Leakage: the flags (which
    cells are suppressed), not the counts."""
    if min_cell_size <= 1:
        return None
    flat = counts.reshape(-1)
    n = flat.shape[0]
    limits = torch.tensor([float(min_cell_size)] * n + [1.0] * n, dtype=torch.float64)
    below = cat([flat, flat]) < limits
    small = below[:n] - below[n:]
    opened = small.reveal_int(to)
    return None if opened is None else [bool(v) for v in opened.reshape(-1)]


def _reveal_unsuppressed(values: SecretTensor, suppressed: list[bool], to) -> dict[int, int]:
    """{index: value} of the entries whose flag is False; suppressed entries are never opened."""
    keep = [i for i, s in enumerate(suppressed) if not s]
    if not keep:
        return {}
    opened = values[keep].reveal_int(to)
    return {i: int(opened[j]) for j, i in enumerate(keep)}


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
]


def _describe_local(table, party, columns, decimals, bound):
    moments, flags, extremes = [], [], []
    for c in columns:
        _, units = _units(table, party, c, decimals, bound)
        moments += [len(units), sum(int(v) for v in units), sum(int(v) * int(v) for v in units)]
        flags.append(1 if len(units) else 0)
        extremes += [int(units.min()), int(units.max())] if len(units) else [0, 0]
    return moments, flags, extremes


def _describe_result(n: int, s1: Fraction, s2: Fraction, lo, hi, scale: int, min_cell_size: int) -> dict:
    if 0 < n < min_cell_size:
        return {"count": None, "suppressed": True}
    if n == 0:
        nan = math.nan
        return {"count": 0, "sum": 0.0, "mean": nan, "var": nan, "std": nan, "min": nan, "max": nan}
    var = var_from_moments(n, Fraction(s1, scale), Fraction(s2, scale * scale), ddof=1)
    return {
        "count": n,
        "sum": float(Fraction(s1, scale)),
        "mean": float(Fraction(s1, scale * n)),
        "var": var,
        "std": math.sqrt(var) if not math.isnan(var) else math.nan,
        "min": float(Fraction(lo, scale)),
        "max": float(Fraction(hi, scale)),
    }


def _describe_plain(tables: Mapping[str, pd.DataFrame], *, columns, decimals=2, bound=1e12, min_cell_size=1) -> dict:
    _check_scale("describe", decimals, bound)
    out = {}
    scale = 10**decimals
    for c in columns:
        units = []
        for bank, table in tables.items():
            units += [int(v) for v in _units(table, bank, c, decimals, bound)[1]]
        n = len(units)
        s1, s2 = sum(units), sum(v * v for v in units)
        lo, hi = (min(units), max(units)) if units else (0, 0)
        out[c] = _describe_result(n, s1, s2, lo, hi, scale, min_cell_size)
    return out


def _describe_check(table, party, *, columns, decimals=2, bound=1e12, min_cell_size=1) -> None:
    _check_scale("describe", decimals, bound)
    for c in columns:
        _units(table, party, c, decimals, bound)


@register("describe", params=[Param("columns", "columns", required=True, description="numeric columns to describe"),
                              *_AMOUNT_PARAMS], plaintext=_describe_plain, check=_describe_check)
def describe(ctx, table, owners, *, columns, decimals=2, bound=1e12, min_cell_size=1) -> dict | None:
    """Per column: count, sum, mean, var (ddof=1, as pandas), std, min and max over all banks' rows.

    Each bank computes, per column, its count, sum and sum of squares of the exact integer
    units and its own min and max; these are shared, summed on shares, the min and max found
    by a secure tournament over the banks. Missing values are skipped (pandas skipna). Which
    columns have fewer than ``min_cell_size`` (but some) values is decided on the shared
    counts and only those flags are opened; the count, sums, min and max of the other
    columns are then revealed to the compute parties in one batch.
    Leakage: per unsuppressed column the count, sum, sum of squares (determined by count,
    mean and var), min and max; for a suppressed column only that it has 1..min_cell_size-1
    values (its count is never opened).
    Cost: 3 + 11 ceil(log2 banks) rounds: one in which every bank shares 6 ring elements
    per column (moments, whether it has values, its min and max), one masking banks without
    values, ceil(log2 banks) tournament levels of 11 rounds finding min and max at once, one
    reveal; with min_cell_size > 1, 11 more (one batched comparison and a reveal of the
    flags). Independent of row counts.
    Error: none: exact rational arithmetic, one rounding to float64 per output.
    """
    _check_scale("describe", decimals, bound, squares=True, banks=len(owners))
    unit = 10**decimals
    bound_units = bound * unit
    moments = flags = extremes = None
    if table is not None and ctx.rank in owners:
        report_progress(ctx, 0.05, "aggregating this bank's rows")
        moments, flags, extremes = _describe_local(table, ctx.name_of(ctx.rank), columns, decimals, bound)
    report_progress(ctx, 0.2, "sharing the aggregates")
    big = float(MAX_ROWS_PER_BANK) * max(bound_units, 1.0) ** 2
    d = len(columns)
    # one round for everything every bank shares: moments (summed), and per bank which columns
    # have values and its own min and max (for a tournament over the banks)
    mine = [*moments, *flags, *extremes] if moments is not None else None
    parts = ctx.share_each(mine, owners, shape=(6 * d,), bound=big, frac_bits=0, name="aggregates")
    if not ctx.is_compute:
        return None
    totals = sum((p[: 3 * d] for p in parts[1:]), parts[0][: 3 * d])
    report_progress(ctx, 0.5, "finding min and max")
    present = bounded_view(smpc.stack([p[3 * d : 4 * d] for p in parts], dim=0), 1)  # banks x columns
    stacked = bounded_view(smpc.stack([p[4 * d :] for p in parts], dim=0), bound_units).reshape(len(owners), d, 2)
    # max = -min(-x): one masking and one tournament find both, in half the rounds of two
    candidates = cat([stacked[:, :, 0], -stacked[:, :, 1]], dim=1)  # banks x (mins, -maxes)
    extreme = where(cat([present, present], dim=1), candidates, bound_units + 1).min(dim=0)
    lo, hi = extreme[:d], -extreme[d:]
    report_progress(ctx, 0.8, "revealing")
    per_column = totals.reshape(d, 3)
    suppressed = suppression_flags(count_view(per_column[:, 0], owners), min_cell_size, COMPUTE_RANKS) or [False] * d
    keep = [j for j in range(d) if not suppressed[j]]
    revealed = {}
    if keep:
        # an empty column opens min/max as the public sentinels +-(bound + 1), nothing else
        batch = cat([per_column[keep], lo[keep].reshape(-1, 1), hi[keep].reshape(-1, 1)], dim=1)
        opened = batch.reveal_int(COMPUTE_RANKS)
        for i, j in enumerate(keep):
            revealed[j] = [int(v) for v in opened[i]]
    out = {}
    for j, c in enumerate(columns):
        if suppressed[j]:
            out[c] = {"count": None, "suppressed": True}
        else:
            out[c] = _describe_result(*revealed[j], unit, min_cell_size)
    report_progress(ctx, 1.0, "done")
    return out


# ----- histogram -------------------------------------------------------------------------
def _histogram_local(table, party, column, edges):
    col = _column(table, party, column)
    numeric = pd.to_numeric(col, errors="coerce")
    bad = numeric.isna() & col.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{party}, column '{column}': row {row + 1} is not numeric")
    values = numeric.dropna().to_numpy(dtype=np.float64)
    return np.histogram(values, bins=np.asarray(edges, dtype=np.float64))[0]


def _check_edges(edges):
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise InputError("histogram: parameter 'edges' needs at least two strictly increasing numbers")


def _cells(counts: list[int], min_cell_size: int) -> list:
    return [{"suppressed": True} if 0 < c < min_cell_size else c for c in counts]


def _histogram_plain(tables, *, column, edges, min_cell_size=1) -> dict:
    _check_edges(edges)
    total = sum(_histogram_local(t, bank, column, edges) for bank, t in tables.items())
    return {"edges": list(edges), "counts": _cells([int(v) for v in total], min_cell_size)}


def _histogram_check(table, party, *, column, edges, min_cell_size=1) -> None:
    _check_edges(edges)
    _histogram_local(table, party, column, edges)


@register("histogram", params=[
    Param("column", "column", required=True, description="numeric column"),
    Param("edges", "floats", required=True, description="public bin edges, increasing (numpy.histogram semantics)"),
    Param("min_cell_size", "int", default=1, description="suppress bins with fewer (but more than zero) records"),
], plaintext=_histogram_plain, check=_histogram_check)
def histogram(ctx, table, owners, *, column, edges, min_cell_size=1) -> dict | None:
    """Counts per public bin [e_k, e_k+1) (the last bin closed), as numpy.histogram, over all banks.

    Each bank bins its own rows; the per-bin counts are shared and summed on shares. Bins
    with 1..min_cell_size-1 records are reported as suppressed, decided on shares.
    Leakage: the unsuppressed bin counts and which bins are suppressed.
    Cost: 2 rounds: one in which every bank shares 1-2 ring elements per bin, one reveal;
    with min_cell_size > 1, 11 more (one batched comparison and a reveal of the flags).
    Independent of row counts.
    Error: none (counts are exact).
    """
    _check_edges(edges)
    local = None
    if table is not None and ctx.rank in owners:
        local = _histogram_local(table, ctx.name_of(ctx.rank), column, edges)
    counts = secure_total(ctx, owners, local, float(MAX_ROWS_PER_BANK), "bin counts", len(edges) - 1)
    if not ctx.is_compute:
        return None
    flags = suppression_flags(counts, min_cell_size, COMPUTE_RANKS) or [False] * (len(edges) - 1)
    opened = _reveal_unsuppressed(counts, flags, COMPUTE_RANKS)
    bins = [{"suppressed": True} if i not in opened else int(opened[i]) for i in range(len(edges) - 1)]
    return {"edges": list(edges), "counts": bins}


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


def _quantiles_plain(tables, *, column, q, decimals=2, bound=1e12) -> dict:
    _check_q(q)
    _check_scale("quantiles", decimals, bound)
    units = sorted(int(v) for bank, t in tables.items() for v in _units(t, bank, column, decimals, bound)[1])
    if not units:
        return {"count": 0, "quantiles": {str(p): math.nan for p in q}}
    n = len(units)
    scale = 10**decimals
    out = {}
    for p, (k, frac) in zip(q, _quantile_positions(n, q), strict=True):
        out[str(p)] = _interpolate(units[k], units[min(k + 1, n - 1)], frac, scale)
    return {"count": n, "quantiles": out}


def _check_q(q):
    if not q or any(not 0 <= p <= 1 for p in q):
        raise InputError("quantiles: parameter 'q' needs numbers in [0, 1]")


def _quantiles_check(table, party, *, column, q, decimals=2, bound=1e12) -> None:
    _check_q(q)
    _check_scale("quantiles", decimals, bound)
    _units(table, party, column, decimals, bound)


@register("quantiles", params=[
    Param("column", "column", required=True, description="numeric column"),
    Param("q", "floats", required=True, description="quantile levels in [0, 1]"),
    *_amount_params("column"),
], plaintext=_quantiles_plain, check=_quantiles_check)
def quantiles(ctx, table, owners, *, column, q, decimals=2, bound=1e12) -> dict | None:
    """Exact quantiles (numpy 'linear' interpolation) over all banks' rows, by secure selection.

    Definition: for n values and level p, h = (n-1) p, k = floor(h), and the quantile is
    x_(k) + (h-k) (x_(k+1) - x_(k)) over the sorted values, as numpy.quantile's default.
    Method: selection, not sorting. Each order statistic x_(k) is found by a 17-ary search
    over the exact integer value range: per step every bank counts its own values <= 16
    thresholds, the counts are shared and summed, and only the comparisons "total >= k+1" are
    revealed; every order statistic of every level is searched at once.
    Leakage: the total count n and, per level, the two order statistics x_(k) and x_(k+1)
    (the revealed search outcomes are determined by them), to the compute parties. With more
    than three banks the banks are input parties, and each of them also receives n and every
    search outcome (it counts its own values at the next thresholds, which follow from them),
    hence the same order statistics, although its call returns None.
    Cost: 2 rounds for the count, then ceil(log_17(2 bound 10^decimals + 1)) steps of 12: one
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
        units = np.sort(_units(table, ctx.name_of(ctx.rank), column, decimals, bound)[1])
    count = secure_total(ctx, owners, [len(units)] if units is not None else None, float(MAX_ROWS_PER_BANK), "count",
                         1)
    n_open = count.reveal_int(COMPUTE_RANKS)
    n = int(n_open.reshape(-1)[0]) if n_open is not None else None
    # input parties follow the search too (they count their own values): tell them n
    n = ctx.publish(n, owner=0) if ctx.world_size > N_COMPUTE else n
    if n == 0:
        return {"count": 0, "quantiles": {str(p): math.nan for p in q}} if ctx.is_compute else None
    positions = _quantile_positions(n, q)
    targets = sorted({k for k, _ in positions} | {min(k + 1, n - 1) for k, _ in positions})
    lo = {t: -bound_units - 1 for t in targets}  # count(<= lo) < t + 1
    hi = {t: bound_units for t in targets}  # count(<= hi) >= t + 1
    step = 0
    while any(hi[t] - lo[t] > 1 for t in targets):
        step += 1
        report_progress(ctx, min(0.95, step / 12), f"selection step {step}")
        thresholds = []
        for t in targets:
            width = hi[t] - lo[t]
            points = sorted({lo[t] + (width * (i + 1)) // (_FANOUT + 1) for i in range(_FANOUT)} - {lo[t]})
            points = [p for p in points if p < hi[t]] or [lo[t] + 1]
            thresholds.append(points)
        flat = [p for pts in thresholds for p in pts]
        local = None
        if units is not None:
            local = np.searchsorted(units, np.asarray(flat, dtype=np.int64), side="right")
        totals = secure_total(ctx, owners, local, float(MAX_ROWS_PER_BANK), "counts below thresholds", len(flat))
        ranks = [t + 1 for t, pts in zip(targets, thresholds, strict=True) for _ in pts]
        need = torch.tensor(ranks, dtype=torch.float64)
        reached = (1 - (totals < need)).reveal_int(COMPUTE_RANKS)
        bits = [int(v) for v in reached.reshape(-1)] if reached is not None else None
        bits = ctx.publish(bits, owner=0) if ctx.world_size > N_COMPUTE else bits
        offset = 0
        for t, pts in zip(targets, thresholds, strict=True):
            for p, bit in zip(pts, bits[offset : offset + len(pts)], strict=True):
                if bit:
                    hi[t] = min(hi[t], p)
                else:
                    lo[t] = max(lo[t], p)
            offset += len(pts)
    if not ctx.is_compute:
        return None
    values = {t: hi[t] for t in targets}
    out = {}
    for p, (k, frac) in zip(q, positions, strict=True):
        out[str(p)] = _interpolate(values[k], values[min(k + 1, n - 1)], frac, scale)
    report_progress(ctx, 1.0, "done")
    return {"count": n, "quantiles": out}


# ----- corr ------------------------------------------------------------------------------
def _corr_columns(table, party, columns, decimals, bound):
    """Per column (present mask, exact units with 0 where missing); refuses bad input."""
    if len(table) > MAX_ROWS_PER_BANK:
        raise InputError(f"{party}: {len(table)} rows exceed the {MAX_ROWS_PER_BANK} rows a bank may contribute")
    data = []
    for c in columns:
        present, values = _units(table, party, c, decimals, bound)  # errors name the file's rows
        units = np.zeros(len(present), dtype=object)
        units[present] = [int(v) for v in values]
        data.append((present, units))
    return data


def _corr_local(table, party, columns, decimals, bound):
    d = len(columns)
    data = _corr_columns(table, party, columns, decimals, bound)
    stats = []
    for i in range(d):
        for j in range(d):
            both = data[i][0] & data[j][0]
            xi, xj = data[i][1][both], data[j][1][both]
            products = sum(a * b for a, b in zip(xi, xj, strict=True))
            stats += [int(both.sum()), int(sum(xi)), int(sum(v * v for v in xi)), int(products)]
    return stats


def _corr_result(columns, totals, scale, min_cell_size):
    d = len(columns)
    corr = [[math.nan] * d for _ in range(d)]
    cov = [[math.nan] * d for _ in range(d)]
    for i in range(d):
        for j in range(d):
            n, s_i, q_i, p = totals[(i * d + j) * 4 : (i * d + j) * 4 + 4]
            _, s_j, q_j, _ = totals[(j * d + i) * 4 : (j * d + i) * 4 + 4]
            if n < max(2, min_cell_size):
                continue
            num = n * p - s_i * s_j
            cov[i][j] = float(Fraction(num, n * (n - 1) * scale * scale))
            vi, vj = n * q_i - s_i * s_i, n * q_j - s_j * s_j
            if vi > 0 and vj > 0:
                # r^2 = num^2 / (vi vj) exactly, then one square root
                r = math.sqrt(Fraction(num * num, vi * vj))
                corr[i][j] = 1.0 if i == j else math.copysign(r, num)
    return {"columns": list(columns), "corr": corr, "cov": cov}


def _corr_plain(tables, *, columns, decimals=2, bound=1e12, min_cell_size=1) -> dict:
    _check_scale("corr", decimals, bound)
    totals = None
    for bank, t in tables.items():
        local = _corr_local(t, bank, columns, decimals, bound)
        totals = local if totals is None else [a + b for a, b in zip(totals, local, strict=True)]
    return _corr_result(columns, totals, 10**decimals, min_cell_size)


def _corr_check(table, party, *, columns, decimals=2, bound=1e12, min_cell_size=1) -> None:
    _check_scale("corr", decimals, bound)
    _corr_columns(table, party, columns, decimals, bound)


@register("corr", params=[Param("columns", "columns", required=True, description="numeric columns"), *_AMOUNT_PARAMS],
          plaintext=_corr_plain, check=_corr_check)
def corr(ctx, table, owners, *, columns, decimals=2, bound=1e12, min_cell_size=1) -> dict | None:
    """Pearson correlation matrix (pairwise-complete rows, as pandas.DataFrame.corr) and the covariance matrix.

    Each bank computes for every pair of columns, over its rows where both are present, the
    count, sum, sum of squares and sum of products of the exact integer units; these are
    shared and summed on shares. Which pairs have fewer than max(2, min_cell_size) rows is
    decided on the shared pairwise counts and only those flags are opened; such pairs give
    NaN and nothing else of theirs is opened. The aggregates of the other pairs are revealed
    in one batch and the matrices are finished exactly.
    Leakage: which pairs of columns have fewer than max(2, min_cell_size) pairwise-complete
    rows; for every other pair the pairwise count, sums, sums of squares and sum of
    products, i.e. exactly the means, variances and covariance matrix (which this analysis
    returns beside the correlations).
    Cost: 13 rounds: one in which every bank shares 4 d^2 values (1-2 ring elements each),
    one batched comparison of the d(d+1)/2 pairwise counts (10 rounds), a reveal of the flags,
    one reveal of at most 4 d^2 values. Independent of row counts.
    Error: the ratio is exact; one float64 square root (relative error ~1e-16).
    """
    _check_scale("corr", decimals, bound, squares=True, banks=len(owners))
    local = None
    if table is not None and ctx.rank in owners:
        local = _corr_local(table, ctx.name_of(ctx.rank), columns, decimals, bound)
    big = float(MAX_ROWS_PER_BANK) * max(bound * 10**decimals, 1.0) ** 2
    totals = secure_total(ctx, owners, local, big, "cross moments", 4 * len(columns) ** 2)
    if not ctx.is_compute:
        return None
    d = len(columns)
    cells = totals.reshape(d * d, 4)
    # the count of pair (i, j) is the count of (j, i): one comparison per unordered pair
    pairs = [(i, j) for i in range(d) for j in range(i, d)]
    counts = count_view(cells[[i * d + j for i, j in pairs]][:, 0], owners)
    small = (counts < max(2, min_cell_size)).reveal_int(COMPUTE_RANKS)
    keep = sorted({e for (i, j), s in zip(pairs, small.reshape(-1), strict=True) if not s
                   for e in (i * d + j, j * d + i)})
    opened = [0] * (4 * d * d)
    if keep:
        values = cells[keep].reveal_int(COMPUTE_RANKS)
        for row, e in enumerate(keep):
            opened[4 * e : 4 * e + 4] = [int(v) for v in values[row]]
    return _corr_result(columns, opened, 10**decimals, min_cell_size)


# ----- default rate by group ------------------------------------------------------------
def _group_keys(table, party, by) -> pd.Series:
    col = _column(table, party, by)
    if col.isna().any():
        row = int(np.flatnonzero(col.isna().to_numpy())[0])
        raise InputError(f"{party}, column '{by}': row {row + 1} has no group key")
    return col.map(_key)


def _key(v) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def _rate_inputs(table, party, label, positive, by, groups):
    """(default flags, group keys) of one bank; refuses bad labels, missing keys and keys
    outside the declared ``groups`` (when declared)."""
    flags = default_flags(table, party, label, positive)
    keys = _group_keys(table, party, by).to_numpy()
    if groups is not None:
        rows = np.flatnonzero(~np.isin(keys, np.asarray(list(groups), dtype=object)))
        if len(rows):
            # the key itself may be a customer's identifier: name the row only
            raise InputError(f"{party}, column '{by}': row {rows[0] + 1} has a group key not in the declared groups")
    return flags, keys


def _rate_check(table, party, *, label, by, positive=None, groups=None, min_cell_size=1) -> None:
    _rate_inputs(table, party, label, positive, by, groups)


def _rate_local(table, party, label, positive, by, groups):
    flags, keys = _rate_inputs(table, party, label, positive, by, groups)
    index = {g: i for i, g in enumerate(groups)}
    counts = np.zeros(len(groups), dtype=np.int64)
    defaults = np.zeros(len(groups), dtype=np.int64)
    codes = np.array([index[k] for k in keys], dtype=np.int64)
    np.add.at(counts, codes, 1)
    np.add.at(defaults, codes, flags)
    return [int(v) for pair in zip(counts, defaults, strict=True) for v in pair]


def _rate_groups(groups, counts, defaults, suppressed) -> dict:
    out = {}
    for i, g in enumerate(groups):
        if suppressed[i]:
            out[g] = {"suppressed": True}
        else:
            c, d = counts[i], defaults[i]
            out[g] = {"count": c, "defaults": d, "rate": float(Fraction(d, c)) if c else math.nan}
    return out


def _rate_plain(tables, *, label, by, positive=None, groups=None, min_cell_size=1) -> dict:
    keys = groups or sorted({k for bank, t in tables.items() for k in _group_keys(t, bank, by)})
    totals = np.zeros(2 * len(keys), dtype=np.int64)
    for bank, t in tables.items():
        totals += np.asarray(_rate_local(t, bank, label, positive, by, keys), dtype=np.int64)
    counts, defaults = [int(v) for v in totals[0::2]], [int(v) for v in totals[1::2]]
    suppressed = [0 < c < min_cell_size for c in counts]
    return {"by": by, "groups": _rate_groups(keys, counts, defaults, suppressed), "min_cell_size": min_cell_size}


@register("default_rate", params=[
    Param("label", "column", required=True, description="loan outcome: 0/1 flags, or labels with `positive`"),
    Param("by", "column", required=True, description="categorical column to group by (e.g. purpose, EDUCATION)"),
    Param("positive", "str", description="the label value that marks a default (e.g. 'bad'); omit for 0/1 flags"),
    Param("groups", "strs", owner="categories", owner_column="by",
          description="declared list of group keys; if omitted each bank discloses its set of keys"),
    Param("min_cell_size", "int", default=1, description="suppress groups with fewer (but more than zero) loans"),
], plaintext=_rate_plain, check=_rate_check)
def default_rate(ctx, table, owners, *, label, by, positive=None, groups=None, min_cell_size=1) -> dict | None:
    """Per group: number of loans, number of defaults and default rate, small groups suppressed.

    Every bank checks its labels and group keys first; without declared ``groups`` all banks
    confirm that to each other before any bank publishes its keys, so a bad file stops the
    job before anything is disclosed. Each bank counts loans and defaults per group key
    locally; the per-group vectors are shared and summed on shares. Groups with
    1..min_cell_size-1 loans are found on shares and reported as {"suppressed": true}: their
    counts are never opened.
    Leakage: for each unsuppressed group its count and defaults (the rate follows); which
    groups are suppressed; the set of group keys: the declared ``groups`` list, or else every
    bank's own set of keys (each bank discloses which keys occur in its data).
    Cost: 2 rounds with declared groups (one in which every bank shares 2-4 ring elements
    per group, one reveal), 4 without (one round to confirm the checks and one in which every
    bank publishes its keys, first); with min_cell_size > 1, 11 more (one batched comparison
    and a reveal of the flags). Independent of row counts.
    Error: none (exact counts; rates are the nearest float64).
    """
    keys = groups
    mine_keys = None
    if table is not None and ctx.rank in owners:
        mine_keys = sorted(set(_rate_inputs(table, ctx.name_of(ctx.rank), label, positive, by, groups)[1]))
    if keys is None:
        inputs_checked(ctx, owners)
        keys = sorted(set().union(*ctx.publish_each(mine_keys, owners)))
    local = None
    if mine_keys is not None:
        local = _rate_local(table, ctx.name_of(ctx.rank), label, positive, by, keys)
    totals = secure_total(ctx, owners, local, float(MAX_ROWS_PER_BANK), "group counts", 2 * len(keys))
    if not ctx.is_compute:
        return None
    pairs = totals.reshape(len(keys), 2)
    counts = pairs[:, 0]
    flags = suppression_flags(counts, min_cell_size, COMPUTE_RANKS) or [False] * len(keys)
    keep = [i for i, s in enumerate(flags) if not s]
    counts_out, defaults_out = [0] * len(keys), [0] * len(keys)
    if keep:
        opened = pairs[keep].reveal_int(COMPUTE_RANKS)
        for j, i in enumerate(keep):
            counts_out[i], defaults_out[i] = int(opened[j, 0]), int(opened[j, 1])
    groups_out = _rate_groups(keys, counts_out, defaults_out, flags)
    return {"by": by, "groups": groups_out, "min_cell_size": min_cell_size}


__all__ = ["corr", "default_rate", "describe", "histogram", "inputs_checked", "quantiles", "secure_total",
           "suppression_flags"]
