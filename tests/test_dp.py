"""Differentially private releases (smpc.dp): the noise that is opened has the intended
discrete distribution, no single party's view depends on the true value beyond the noise it
does not know, and the analyses' options are refused where they cannot hold.

Statistical tests are seeded (each contribution's drawer gets a seeded ``random.Random``) and
each is designed to fail falsely with probability at most 1e-6 under its null hypothesis:
chi-square tests reject at p < 1e-7 (several per test, union bound), the variance check at
five standard deviations of the sample variance (normal approximation, ~6e-7)."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import recording
import torch

import smpc
from smpc import dp
from smpc.analyses import registry
from smpc.errors import InputError

P_MIN = 1e-7
RELEASES = 120_000


def _chi2_sf(stat: float, df: int) -> float:
    return float(torch.special.gammaincc(torch.tensor(df / 2.0, dtype=torch.float64),
                                         torch.tensor(stat / 2.0, dtype=torch.float64)))


def _bins(pmf, min_expected: float, n: int) -> int:
    """The largest K with n * P(Z = +-K) >= min_expected: cells -K..K and two tails."""
    k = 0
    while n * pmf(k + 1) >= min_expected:
        k += 1
    return k


def goodness_of_fit(diffs: list[int], pmf, n: int) -> float:
    """p-value of the chi-square test of ``diffs`` against ``pmf`` (cells -K..K plus both tails)."""
    k = _bins(pmf, 20.0, n)
    inner = [pmf(z) for z in range(-k, k + 1)]
    tail = (1.0 - sum(inner)) / 2
    expected = np.array([tail, *inner, tail]) * n
    observed = np.zeros(len(expected))
    for z in diffs:
        observed[0 if z < -k else len(expected) - 1 if z > k else z + k + 1] += 1
    stat = float(((observed - expected) ** 2 / expected).sum())
    return _chi2_sf(stat, len(expected) - 1)


def two_sample_p(a: list[int], b: list[int]) -> float:
    """Chi-square homogeneity test of two integer samples (cells with >= 20 expected each
    pooled into the outermost ones)."""
    lo, hi = np.percentile(a + b, [0.5, 99.5]).astype(int)
    edges = np.arange(lo, hi + 2)
    ca = np.histogram(np.clip(a, lo, hi), bins=edges)[0].astype(float)
    cb = np.histogram(np.clip(b, lo, hi), bins=edges)[0].astype(float)
    keep = (ca + cb) > 40
    ca, cb = ca[keep], cb[keep]
    total = ca + cb
    ea, eb = total * ca.sum() / total.sum(), total * cb.sum() / total.sum()
    stat = float(((ca - ea) ** 2 / ea).sum() + ((cb - eb) ** 2 / eb).sum())
    return _chi2_sf(stat, len(total) - 1)


# ----- the sampler ------------------------------------------------------------------------------
def test_bernoulli_exp_is_exact_in_distribution():
    rng = random.Random(7)
    n = 100_000
    for gamma in (Fraction(1, 3), Fraction(5, 2)):
        hits = sum(dp.bernoulli_exp(gamma, rng) for _ in range(n))
        p = math.exp(-float(gamma))
        # 5.3 standard deviations: two-sided p ~ 1e-7 each
        assert abs(hits - n * p) < 5.3 * math.sqrt(n * p * (1 - p)), gamma


def test_one_contribution_matches_the_discrete_laplace_pmf_at_a_fractional_scale():
    rng = random.Random(11)
    scale = Fraction(7, 3)
    n = 50_000
    draws = [dp.discrete_laplace(scale, rng) for _ in range(n)]
    p = math.exp(-1 / float(scale))
    pmf = lambda z: (1 - p) / (1 + p) * p ** abs(z)  # noqa: E731
    assert goodness_of_fit(draws, pmf, n) > P_MIN


def test_noise_closed_forms_agree_with_summing_the_pmf():
    for scale in (Fraction(1, 2), Fraction(3), Fraction(40, 3)):
        noise = dp.Noise(scale)
        zs = range(-4000, 4001)
        assert sum(noise.pmf(z) for z in zs) == pytest.approx(1.0, abs=1e-12)
        assert sum(z * z * noise.pmf(z) for z in zs) == pytest.approx(noise.variance, rel=1e-9)
        q = noise.half_width()
        inside = sum(noise.pmf(z) for z in range(-q, q + 1))
        assert inside >= 0.95 > inside - noise.pmf(q) - noise.pmf(-q)
        assert noise.tail(q) == pytest.approx(1 - inside, abs=1e-12)


# ----- the noise opened on shares ---------------------------------------------------------------
def _release_fixed_count(ctx, count, releases, scale, rng=None):
    """Bank 0 shares ``releases`` copies of ``count``; they are opened with noise."""
    value = [count] * releases if ctx.rank == 0 else None
    x = smpc.share_each(ctx, value, [0], shape=(releases,), bound=2.0**20, frac_bits=0)[0]
    out = dp.noisy_open(ctx, x, [scale] * releases, [0, 1, 2], rng=rng)
    return [int(v) for v in out]


def test_noisy_releases_of_a_fixed_count_have_the_sum_of_two_contributions_pmf_and_variance():
    count, scale = 1234, Fraction(1)
    seeded = {r: {"rng": random.Random(1000 + r)} for r in (1, 2)}
    results = smpc.simulate(_release_fixed_count, inputs=seeded, count=count, releases=RELEASES, scale=scale)
    assert results[0] == results[1] == results[2]
    diffs = [v - count for v in results[0]]
    noise = dp.Noise(scale)
    assert goodness_of_fit(diffs, noise.pmf, RELEASES) > P_MIN
    # variance within 3 %: first check 3 % is >= 5 standard deviations of the sample variance
    zs = range(-2000, 2001)
    fourth = sum(z**4 * noise.pmf(z) for z in zs)
    sd = math.sqrt((fourth - noise.variance**2) / RELEASES)
    assert 0.03 * noise.variance >= 5 * sd
    assert np.var(diffs) == pytest.approx(noise.variance, rel=0.03)


def test_each_party_view_does_not_depend_on_one_more_customer():
    """Party r's view: the messages it receives and, for a drawer, its own contribution. Added
    customer or not (count 500 vs 501), every message but the opening has the same byte
    distribution, and opened - true - (own contribution) has the same distribution: the
    noise the party does not know (one contribution for parties 1 and 2, both for party 0)."""
    m, scale = 20_000, Fraction(3, 2)
    views, residues = {}, {}
    for count in (500, 501):
        def args(rank, count=count):
            return {"count": count, "releases": m, "scale": scale,
                    "rng": random.Random(2000 + 10 * count + rank) if rank in (1, 2) else None}

        results, received = recording.run_recorded(_release_fixed_count, ring=128, args=args)
        for r in range(3):
            own = [0] * m
            if r in dp.NOISE_RANKS:  # the contribution the party drew (its rng replayed)
                replay = random.Random(2000 + 10 * count + r)
                own = [dp.discrete_laplace(scale, replay) for _ in range(m)]
            residues[(count, r)] = [v - count - o for v, o in zip(results[r], own, strict=True)]
            shares = [p for _, tag, p in received[r] if "open" not in tag.lower() and "reveal" not in tag.lower()]
            views[(count, r)] = torch.cat([p.reshape(-1).view(torch.uint8) for p in shares]) if shares else None
    for r in range(3):
        assert two_sample_p(residues[(500, r)], residues[(501, r)]) > P_MIN, r
        a, b = views[(500, r)], views[(501, r)]
        if a is not None:
            ca = torch.bincount(a.to(torch.int64), minlength=256).double()
            cb = torch.bincount(b.to(torch.int64), minlength=256).double()
            total = ca + cb
            ea, eb = total * ca.sum() / total.sum(), total * cb.sum() / total.sum()
            stat = float(((ca - ea) ** 2 / ea).sum() + ((cb - eb) ** 2 / eb).sum())
            assert _chi2_sf(stat, 255) > P_MIN, r
    # what a drawer does not know is one contribution, at its full scale
    one = dp.Noise(scale)
    p = one.p
    single = lambda z: (1 - p) / (1 + p) * p ** abs(z)  # noqa: E731
    assert goodness_of_fit(residues[(501, 1)], single, m) > P_MIN
    assert goodness_of_fit(residues[(501, 0)], one.pmf, m) > P_MIN


# ----- the analyses ------------------------------------------------------------------------------
def _banks(seed=3):
    rng = np.random.default_rng(seed)
    out = {}
    for b in ("bank_a", "bank_b", "bank_c"):
        n = 300
        out[b] = pd.DataFrame({"amount": np.round(rng.uniform(-1e9, 1e9, n), 2),
                               "grade": rng.choice(["A", "B", "C"], n), "default": rng.integers(0, 2, n),
                               "customer": rng.integers(0, 120, n)})
    return out


def test_dp_epsilon_on_an_analysis_without_it_is_refused_by_name():
    with pytest.raises(InputError, match="quantiles: no differentially private release.*describe"):
        registry.get("quantiles").run_simulated(_banks(), column="amount", q=[0.5], bound=1e9, dp_epsilon=1.0)


def test_dp_delta_is_refused_with_the_mechanism_on_offer():
    """No Gaussian mechanism: a job asking for (epsilon, delta) is told what is offered
    rather than only that the parameter is unknown."""
    with pytest.raises(InputError, match="describe: no approximate .* discrete Laplace"):
        registry.get("describe").run_simulated(_banks(), columns=["amount"], bound=1e9, dp_epsilon=1.0, dp_delta=1e-6)


def test_default_rate_by_group_needs_declared_groups_and_a_valid_epsilon():
    rate = registry.get("default_rate")
    with pytest.raises(InputError, match="dp_epsilon needs declared groups"):
        rate.run_simulated(_banks(), label="default", by="grade", dp_epsilon=1.0)
    with pytest.raises(InputError, match="dp_epsilon"):
        rate.run_simulated(_banks(), label="default", by="grade", groups=["A", "B", "C"], dp_epsilon=0.0)


def test_noisy_default_rate_by_group_is_the_exact_one_plus_noise_of_the_stated_scale():
    tables = _banks()
    rate = registry.get("default_rate")
    params = dict(label="default", by="grade", groups=["A", "B", "C"], dp_epsilon=0.5,
                  dp_customer="customer", dp_rows_per_customer=2)
    noisy = rate.run_simulated(tables, **params)
    exact = rate.run_plaintext(tables, **params)
    capped = sum(len(t[t.groupby("customer").cumcount() < 2]) for t in tables.values())
    assert sum(g["count"] for g in exact["groups"].values()) == capped
    assert noisy["epsilon_spent"] == 0.5 and noisy["rows_per_customer"] == 2
    scale = noisy["noise"]["count"]["scale"]
    assert scale == 2 * 2 / 0.5  # epsilon split over loans and defaults, two rows per customer
    for g in ("A", "B", "C"):
        # 70 scales: the contributions' public bound
        assert abs(noisy["groups"][g]["count"] - exact["groups"][g]["count"]) <= 2 * 70 * scale
        lo, hi = noisy["groups"][g]["interval95"]["rate"]
        assert 0.0 <= lo <= hi <= 1.0


def test_noisy_describe_and_histogram_keep_the_released_shape():
    tables = _banks()
    d = registry.get("describe").run_simulated(tables, columns=["amount"], bound=1e9, dp_epsilon=1.0)
    col = d["columns"]["amount"]
    assert set(col) == {"count", "sum", "mean", "interval95", "noise"} and d["epsilon_spent"] == 1.0
    assert col["noise"]["sum"]["scale"] == pytest.approx(2 * 1e9 / 1.0)
    h = registry.get("histogram").run_simulated(tables, column="amount", edges=[-1e9, 0, 1e9], dp_epsilon=2.0)
    assert len(h["counts"]) == 2 and h["noise"]["scale"] == 0.5
    assert all(lo <= c <= hi for c, (lo, hi) in zip(h["counts"], h["interval95"], strict=True))


@pytest.mark.parametrize("n_banks", [3, 5])
def test_noisy_multi_lending_count_keeps_the_exact_own_flags(n_banks):
    from smpc import datasets
    from smpc.analyses.fraud import multi_lending_plain

    ml = {"id": "customer_id", "balance": "balance", "balance_threshold": 500_000.0, "min_lenders": 3}
    tables = datasets.synthetic_consortium(n_banks, 120, seed=n_banks, balance_threshold=500_000.0, min_lenders=3)
    plain = multi_lending_plain(tables, **ml, dp_epsilon=1.0)
    noisy = registry.get("multi_lending").run_simulated(tables, **ml, dp_epsilon=1.0)
    assert noisy["by_bank"] == plain["by_bank"] and noisy["epsilon_spent"] == 1.0
    assert noisy["noise"]["scale"] == 1.0
    assert abs(noisy["flagged_count"] - plain["flagged_count"]) <= 2 * 70


# ----- woe_iv and psi: bin counts noised before any merge -----------------------------------------
def _seeded(fn, tables, seeds, **kwargs):
    """``fn(ctx, table, owners, to, rng=..., **kwargs)`` on every bank, parties 1 and 2 drawing
    their contributions from ``random.Random(seeds[rank])``; the result rank 0 received."""
    from smpc import simulation

    banks = list(tables)

    def job(ctx, table=None, rng=None):
        return fn(ctx, table, [0, 1, 2], [0, 1, 2], rng=rng, **kwargs)

    inputs = {r: {"table": tables[b], "rng": random.Random(seeds[r]) if r in dp.NOISE_RANKS else None}
              for r, b in enumerate(banks)}
    return simulation.simulate(job, inputs=inputs, party_names=banks, result_ranks=[0, 1, 2])[0]


def _binned_banks(columns: int, bins: int, rows: int, seed: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    out = {}
    for b in ("bank_a", "bank_b", "bank_c"):
        frame = {f"x{i}": rng.integers(0, bins, rows) for i in range(columns)}
        frame.update(default=rng.integers(0, 2, rows), period=rng.choice(["r", "c"], rows))
        out[b] = pd.DataFrame(frame)
    return out


@pytest.mark.parametrize("analysis", ["woe_iv", "psi"])
def test_noisy_bin_counts_of_woe_iv_and_psi_have_the_intended_distribution(analysis):
    """10 columns of 1000 bins, ~100 rows per cell: at epsilon 10 each of the 20,000 cells gets
    two contributions of scale 1 * 10 / 10 (one row per customer, epsilon split over the 10
    columns), which never empty a cell, so no bin merges and every released count is one
    cell's. noisy - exact must follow the pmf of Z_1 + Z_2 (chi-square, p > 1e-7) and its
    variance must lie within 5 standard deviations of the sample variance of the intended one."""
    from smpc.analyses import scorecards

    columns, bins = 10, 1000
    tables = _binned_banks(columns, bins, 67_000, seed=23)
    cols = [f"x{i}" for i in range(columns)]
    edges = {c: [k + 0.5 for k in range(bins - 1)] for c in cols}
    epsilon = 10.0
    if analysis == "woe_iv":
        params = dict(label="default", columns=cols, edges=edges, dp_epsilon=epsilon)
        noisy = _seeded(scorecards._woe_table, tables, {1: 31, 2: 32}, **params)
        cells = ("good", "bad")
    else:
        params = dict(columns=cols, period="period", reference="r", current="c", edges=edges, dp_epsilon=epsilon)
        specs = scorecards._specs("psi", cols, edges, None, None, None, None)
        noisy = _seeded(scorecards._psi_dp, tables, {1: 41, 2: 42}, names=("r", "c"), specs=specs, bank=None,
                        period="period", reference="r", current="c", min_cell_size=1, epsilon=epsilon, customer=None,
                        cap=1)
        cells = ("reference", "current")
    exact = registry.get(analysis).run_plaintext(tables, **params)
    assert noisy["epsilon_spent"] == epsilon and noisy["noise"]["scale"] == 1.0
    diffs = []
    for c in cols:
        assert noisy["features"][c]["merged"] == [] and exact["features"][c]["merged"] == []
        for got, want in zip(noisy["features"][c]["bins"], exact["features"][c]["bins"], strict=True):
            diffs += [got[k] - want[k] for k in cells]
    n = len(diffs)
    assert n == 2 * columns * bins
    noise = dp.Noise(Fraction(1))
    assert goodness_of_fit(diffs, noise.pmf, n) > P_MIN
    fourth = sum(z**4 * noise.pmf(z) for z in range(-2000, 2001))
    assert abs(np.var(diffs) - noise.variance) <= 5 * math.sqrt((fourth - noise.variance**2) / n)


def _replayed_noise(seeds, scale, m):
    """The sum of the contributions parties 1 and 2 drew from their seeded sources."""
    out = np.zeros(m, dtype=np.int64)
    for r in dp.NOISE_RANKS:
        replay = random.Random(seeds[r])
        out += np.array([dp.discrete_laplace(scale, replay) for _ in range(m)], dtype=np.int64)
    return out


def test_woe_iv_merges_follow_the_noisy_counts_only():
    """Small bins at epsilon 0.5 (contribution scale 2): the released bins are exactly the
    documented post-processing of the noisy initial counts (replayed from the seeded
    contributions), every final bin holds noisy goods and bads >= max(1, min_cell_size), and
    the merges differ from those the exact counts would give."""
    from smpc.analyses import scorecards

    rng = np.random.default_rng(8)
    tables = {b: pd.DataFrame({"age": rng.integers(18, 80, 40), "default": rng.integers(0, 2, 40)})
              for b in ("bank_a", "bank_b", "bank_c")}
    edges = {"age": [20.0 + 3 * k for k in range(20)]}
    params = dict(label="default", columns=["age"], edges=edges, dp_epsilon=0.5, min_cell_size=3)
    seeds = {1: 1701, 2: 1702}
    got = _seeded(scorecards._woe_table, tables, seeds, **params)
    pooled = pd.concat(list(tables.values()))
    codes = np.searchsorted(edges["age"], pooled["age"].to_numpy(dtype=float), side="right")
    exact = np.zeros((21, 2), dtype=np.int64)
    np.add.at(exact, (codes, pooled["default"].to_numpy()), 1)  # [good, bad] per initial bin
    noisy = exact.reshape(-1) + _replayed_noise(seeds, Fraction(2), exact.size)
    specs = scorecards._specs("woe_iv", ["age"], edges, None, None, None, None)
    assert got == scorecards._woe_dp_result("default", specs, [int(v) for v in noisy], 3, 0.5, 1)
    initial = noisy.reshape(21, 2)
    cuts = [-math.inf, *edges["age"], math.inf]
    for b in got["features"]["age"]["bins"]:
        lo = -math.inf if b["lower"] is None else b["lower"]
        hi = math.inf if b["upper"] is None else b["upper"]
        inside = [i for i in range(21) if lo <= cuts[i] and cuts[i + 1] <= hi]
        assert [b["good"], b["bad"]] == initial[inside].sum(axis=0).tolist()
        assert b["good"] >= 3 and b["bad"] >= 3
        merged = dp.Noise(Fraction(2), 2 * len(inside)).half_width()
        assert b["interval95"]["good"] == [b["good"] - merged, b["good"] + merged]
    from_exact = scorecards._woe_dp_result("default", specs, [int(v) for v in exact.reshape(-1)], 3, 0.5, 1)
    assert from_exact["features"]["age"]["merged"] != got["features"]["age"]["merged"]


@pytest.mark.parametrize("analysis", ["woe_iv", "psi"])
def test_noisy_woe_iv_and_psi_cost_a_noisy_histogram_of_their_cells(analysis):
    """On shares, in 3 rounds (the banks share, parties 1 and 2 share their draws, one
    opening: the noise adds one round to opening the counts), with exactly the bytes of a
    noisy histogram of as many cells at the same contribution scale; the exact release's
    merge verdicts take more rounds than that."""
    tables = _binned_banks(1, 6, 200, seed=4)
    edges = {"x0": [0.5, 1.5, 2.5, 3.5, 4.5]}
    job = (dict(label="default", columns=["x0"], edges=edges) if analysis == "woe_iv" else
           dict(columns=["x0"], period="period", reference="r", current="c", edges=edges))
    a = registry.get(analysis)
    _, noisy = a.run_local(tables, a.parse_params({**job, "dp_epsilon": 0.5}))
    _, exact = a.run_local(tables, a.parse_params(job))
    h = registry.get("histogram")
    _, hist = h.run_local(tables, h.parse_params(dict(column="x0", edges=list(range(13)), dp_epsilon=0.5)))
    assert noisy["rounds"] == hist["rounds"] == 3 and noisy["bytes"] == hist["bytes"]
    assert noisy["bytes_per_party"] == hist["bytes_per_party"]
    assert exact["rounds"] > 3


def test_noisy_woe_iv_and_psi_refuse_quantile_bins_and_scorecard_has_no_noisy_release():
    tables = _binned_banks(1, 6, 50, seed=2)
    for analysis, job in (("woe_iv", dict(label="default")),
                          ("psi", dict(period="period", reference="r", current="c"))):
        with pytest.raises(InputError, match=rf"{analysis}: with dp_epsilon, column 'x0' needs public bins"):
            registry.get(analysis).run_simulated(tables, columns=["x0"], bins={"x0": "quantile:4"}, bound={"x0": 10},
                                                 decimals={"x0": 0}, dp_epsilon=1.0, **job)
    with pytest.raises(InputError, match="scorecard: no differentially private release"):
        registry.get("scorecard").run_simulated(tables, label="default", columns=["x0"], edges={"x0": [2.5]},
                                                dp_epsilon=1.0)


def test_noisy_woe_iv_caps_each_customers_rows():
    """The twin's counts are over at most dp_rows_per_customer rows per customer at each bank,
    and the noise scale is cap * columns / epsilon."""
    tables = _banks()
    job = dict(label="default", columns=["grade", "amount"], categories={"grade": ["A", "B", "C"]},
               edges={"amount": [0.0]}, dp_epsilon=0.5, dp_customer="customer", dp_rows_per_customer=2)
    plain = registry.get("woe_iv").run_plaintext(tables, **job)
    capped = sum(len(t[t.groupby("customer").cumcount() < 2]) for t in tables.values())
    assert sum(b["count"] for b in plain["features"]["grade"]["bins"]) == capped < 900
    noisy = registry.get("woe_iv").run_simulated(tables, **job)
    assert noisy["noise"]["scale"] == plain["noise"]["scale"] == 2 * 2 / 0.5 and noisy["rows_per_customer"] == 2
