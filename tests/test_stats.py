"""smpc.stats on secret columns against pandas/numpy/statistics, on adversarial magnitudes:
balances up to 1e9, negative values, missing values, and a million rows."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest
import torch

import smpc
from smpc import stats

REL = 1e-9


def rel_err(got, want):
    return abs(got - want) / max(abs(want), 1e-300)


def run_columns(parts: list[np.ndarray], fn, *, bound, frac_bits=0, ring=128):
    """Share one column per bank (ranks 0..2) and run fn(columns) on the consortium column."""

    def job(ctx, data=None):
        pieces = [
            stats.share_column(ctx, data if ctx.rank == r else None, r, bound=bound, frac_bits=frac_bits, name="x")
            for r in range(len(parts))
        ]
        return fn(stats.concat(pieces))

    return smpc.simulate(job, ring=ring, inputs={r: {"data": p} for r, p in enumerate(parts)})


def test_bank_balances_with_missing_values_match_pandas():
    gen = np.random.default_rng(5)
    x = np.round(gen.uniform(-1e9, 1e9, 3000), 0)
    x[::17] = np.nan
    parts = np.array_split(x, 3)

    def fn(col):
        return [stats.count(col), stats.sum(col), stats.mean(col), stats.var(col), stats.std(col),
                stats.min(col), stats.max(col), stats.var(col, ddof=0)]

    got = run_columns(parts, fn, bound=1e9)[0]
    s = pd.Series(x)
    want = [s.count(), s.sum(), s.mean(), s.var(), s.std(), s.min(), s.max(), s.var(ddof=0)]
    assert got[0] == want[0]
    assert got[1] == want[1]  # exact integers, far below 2^53
    for g, w in zip(got[2:], want[2:], strict=True):
        assert rel_err(g, w) <= REL


def test_fixed_point_values_match_statistics_module_on_encoded_inputs():
    gen = np.random.default_rng(6)
    x = gen.normal(-250.0, 1e4, 2000)
    parts = np.array_split(x, 3)
    got = run_columns(parts, lambda c: (stats.mean(c), stats.variance(c), stats.stdev(c)), bound=1e6, frac_bits=20)[0]
    encoded = [float(v) for v in np.round(x * 2**20) / 2**20]
    assert rel_err(got[0], statistics.fmean(encoded)) <= REL
    assert rel_err(got[1], statistics.variance(encoded)) <= REL
    assert rel_err(got[2], statistics.stdev(encoded)) <= REL


def test_a_million_rows_of_1e9_sum_exactly():
    n = 1_000_000
    gen = np.random.default_rng(8)
    x = gen.integers(-(10**9), 10**9, n).astype(np.float64)
    parts = np.array_split(x, 3)
    got = run_columns(parts, lambda c: (stats.sum(c), stats.count(c), stats.mean(c)), bound=1e9)[0]
    exact = int(x.astype(np.int64).sum())
    assert got[0] == float(exact)
    assert got[1] == n
    assert rel_err(got[2], exact / n) <= 1e-15


def test_histogram_matches_numpy_including_edges_and_outside_values():
    x = np.array([-5.0, 0.0, 0.5, 1.0, 1.0, 2.0, 3.0, 3.0, 7.0, np.nan, -1e6])
    edges = [0.0, 1.0, 2.0, 3.0]
    got = run_columns([x[:4], x[4:8], x[8:]], lambda c: stats.histogram(c, edges), bound=1e7, frac_bits=16)[0]
    assert got == np.histogram(x[~np.isnan(x)], bins=edges)[0].tolist()


@pytest.mark.parametrize("ring, frac_bits", [(64, 0), (64, 16), (128, 20)])
def test_histogram_edges_beyond_the_bound_and_infinite_work_like_numpy(ring, frac_bits):
    """No value lies past the column's bound, so edges out there (and +-inf) need no ring
    room: they are answered like numpy instead of refused."""
    x = np.array([-9.0, -2.0, 0.0, 3.0, 9.0, 10.0, np.nan])
    present = x[~np.isnan(x)]
    for edges in ([0.0, 10.0, 1e15], [-np.inf, 0.0, np.inf], [-1e300, -5.0, 5.0, 1e300], [11.0, 12.0]):
        got = run_columns([x[:3], x[3:5], x[5:]], lambda c, e=edges: stats.histogram(c, e), bound=10, ring=ring,
                          frac_bits=frac_bits)[0]
        assert got == np.histogram(present, bins=edges)[0].tolist(), edges


def test_min_max_equal_to_an_off_grid_bound_are_not_mistaken_for_missing():
    """99.99 at 16 bits encodes as 99.990005, just past the bound 99.99: still a value."""
    x = np.array([99.99, -99.99, 5.0])
    got = run_columns([x[:1], x[1:2], x[2:]], lambda c: (stats.max(c), stats.min(c)), bound=99.99, frac_bits=16,
                      ring=64)[0]
    encoded = np.round(x * 2**16) / 2**16
    assert got == (encoded.max(), encoded.min())


def test_cov_and_corr_match_pandas_pairwise_complete():
    gen = np.random.default_rng(9)
    n = 900
    a = gen.uniform(-1e6, 1e6, n).round()
    b = 3 * a + gen.normal(0, 1e5, n).round()
    c = -a + gen.uniform(-5e5, 5e5, n).round()
    a[::11] = np.nan
    c[::7] = np.nan
    frame = pd.DataFrame({"a": a, "b": b, "c": c})

    def job(ctx, part=None):
        cols = []
        for name in "abc":
            pieces = [stats.share_column(ctx, part[name].to_numpy() if ctx.rank == r else None, r, bound=1e7,
                                         frac_bits=0, name=name) for r in range(3)]
            cols.append(stats.concat(pieces))
        return stats.cov(cols), stats.corr(cols)

    parts = [frame.iloc[i::3] for i in range(3)]
    cov, corr = smpc.simulate(job, inputs={i: {"part": parts[i]} for i in range(3)})[0]
    assert np.allclose(cov, frame.cov().to_numpy(), rtol=REL, atol=0)
    assert np.allclose(corr, frame.corr().to_numpy(), rtol=REL, atol=0)


def test_groupby_counts_sums_and_rates():
    keys = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 0])
    defaults = np.array([1, 0, 1, 1, 0, 0, 1, 0, 0, 1], dtype=np.float64)

    def job(ctx):
        onehot = torch.nn.functional.one_hot(torch.tensor(keys), 3)
        member = smpc.share(ctx, onehot if ctx.rank == 0 else None, owner=0, bound=1, frac_bits=0)
        col = stats.share_column(ctx, defaults if ctx.rank == 1 else None, 1, bound=1, frac_bits=0, name="default")
        return stats.groupby_mean(member, [col])

    got = smpc.simulate(job)[0]
    frame = pd.DataFrame({"k": keys, "d": defaults}).groupby("k")["d"]
    for g in range(3):
        n, total, rate = got[g][0]
        assert n == frame.count()[g] and total == frame.sum()[g] and rate == pytest.approx(frame.mean()[g], rel=1e-15)


def test_all_missing_gives_nan_like_pandas():
    x = np.array([np.nan, np.nan])
    got = run_columns([x, x, x], lambda c: (stats.count(c), stats.mean(c), stats.max(c)), bound=10)[0]
    assert got[0] == 0 and math.isnan(got[1]) and math.isnan(got[2])


def test_non_numeric_and_infinite_inputs_are_refused_naming_the_bank():
    with pytest.raises(smpc.InputError, match="party 1, column 'x'.*infinite"):
        run_columns([np.array([1.0]), np.array([np.inf]), np.array([2.0])], stats.count, bound=10)
    with pytest.raises(smpc.InputError, match="party 2, column 'x'"):
        run_columns([np.array([1.0]), np.array([2.0]), np.array(["a"], dtype=object)], stats.count, bound=10)
