"""The statistics catalogue on the real credit data split across banks, against pandas and
numpy directly (not only against the plaintext twins), plus suppression and bad input."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import smpc
from smpc import analyses
from smpc.context import Context

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
GERMAN = pd.read_csv(DATA / "german_credit.csv")
TAIWAN = pd.read_csv(DATA / "taiwan_default_sample.csv")
REL = 1e-9


def split(frame: pd.DataFrame, banks: int, how: str = "rows") -> dict[str, pd.DataFrame]:
    if how == "random":
        order = np.random.default_rng(banks).permutation(len(frame))
        frame = frame.iloc[order]
    parts = np.array_split(np.arange(len(frame)), banks)
    return {f"bank_{i}": frame.iloc[idx].reset_index(drop=True) for i, idx in enumerate(parts)}


class _Published(list):
    """(receiving party, owner, value) of every value received; ``sent``: (owner, value) of
    every value an owner sent, received or not (an abort can stop the receipt, not the send)."""

    def __init__(self):
        super().__init__()
        self.sent: list[tuple[str, object]] = []


@pytest.fixture
def published(monkeypatch):
    log = _Published()
    original = Context.publish_each  # Context.publish is its one-owner case

    def spy(self, value, owners):
        if self.rank in owners:
            log.sent.append((self.name_of(self.rank), value))
        out = original(self, value, owners)
        for owner, got in zip(owners, out, strict=True):
            if self.rank != owner:
                log.append((self.name_of(self.rank), self.name_of(owner), got))
        return out

    monkeypatch.setattr(Context, "publish_each", spy)
    return log


def close(a, b):
    if isinstance(b, float) and math.isnan(b):
        return math.isnan(a)
    return abs(a - b) <= REL * max(abs(b), 1e-300)


@pytest.mark.parametrize("banks,how", [(3, "rows"), (5, "random")])
def test_describe_equals_pandas_on_taiwan_balances(banks, how):
    cols = ["LIMIT_BAL", "BILL_AMT1"]
    got = analyses.get("describe").run_simulated(split(TAIWAN, banks, how), columns=cols)
    for c in cols:
        s = TAIWAN[c]
        want = {"count": s.count(), "sum": s.sum(), "mean": s.mean(), "var": s.var(), "std": s.std(),
                "min": s.min(), "max": s.max(), "missing": s.isna().sum()}
        for stat, value in want.items():
            assert close(got[c][stat], float(value)), (c, stat, got[c][stat], value)


def test_describe_counts_a_missing_entry_and_leaves_it_out_as_pandas_does():
    """9000 balances at the bound's edge (+-1e9, cents), one of them empty: count 8999 as
    pandas, and the one missing entry reported, never silently dropped."""
    rng = np.random.default_rng(14)
    cents = rng.integers(-10**11, 10**11, size=9000, endpoint=True)
    cents[:4] = [10**11, -10**11, 10**11 - 1, -10**11 + 1]
    balances = pd.Series(cents / 100.0)
    balances[4321] = np.nan
    frame = pd.DataFrame({"balance": balances, "small": rng.integers(-5, 5, size=9000) / 100.0})
    tables = split(frame, 3)
    got = analyses.get("describe").run_simulated(tables, columns=["balance", "small"], bound=1e9)
    assert got == analyses.get("describe").run_plaintext(tables, columns=["balance", "small"], bound=1e9)
    s = frame["balance"]
    assert got["balance"]["count"] == s.count() == 8999 and got["balance"]["missing"] == 1
    assert got["small"]["count"] == 9000 and got["small"]["missing"] == 0
    assert got["balance"]["sum"] == sum(int(c) for i, c in enumerate(cents) if i != 4321) / 100
    assert got["balance"]["min"] == -1e9 and got["balance"]["max"] == 1e9
    for stat in ("mean", "var", "std"):
        assert close(got["balance"][stat], float(getattr(s, stat)())), stat


def test_describe_german_credit_amounts_and_suppression():
    got = analyses.get("describe").run_simulated(
        split(GERMAN, 3), columns=["credit_amount", "age_in_years"], min_cell_size=5000
    )
    assert got["credit_amount"] == {"count": None, "suppressed": True}
    got = analyses.get("describe").run_simulated(split(GERMAN, 3), columns=["credit_amount"])
    assert got["credit_amount"]["sum"] == 3_271_258
    assert close(got["credit_amount"]["std"], GERMAN["credit_amount"].std())


def test_describe_opens_no_count_or_sum_of_a_suppressed_column(opened):
    """Column b has 3 values (< min_cell_size 5, contributor rule off): it opens as the
    sentinel row, never its count 3 nor its values; empty column c is reported (count 0),
    opening only sentinels; everything in one vector, to the recipients."""
    tables = {"bank_a": pd.DataFrame({"a": [1.0, 2, 3, 4], "b": [100.0, None, None, None], "c": [None] * 4}),
              "bank_b": pd.DataFrame({"a": [5.0, 6, 7], "b": [200.0, None, None], "c": [None] * 3}),
              "bank_c": pd.DataFrame({"a": [8.0, 9], "b": [300.0, None], "c": [None] * 2})}
    got = analyses.get("describe").run_simulated(tables, columns=["a", "b", "c"], min_cell_size=5, min_contributors=0)
    assert got["b"] == {"count": None, "suppressed": True}
    assert got["a"]["count"] == 9 and got["a"]["sum"] == 45 and got["a"]["max"] == 9
    assert got["a"]["missing"] == 0 and "missing" not in got["b"]
    assert got["c"]["count"] == 0 and math.isnan(got["c"]["mean"]) and got["c"]["missing"] == 9
    sentinel = 10**12 * 100 + 1
    assert opened == [[9, 4500, 2850000, 100, 900, 0, -1, 0, 0, 0, 0, 0, 0, 0, 0, sentinel, -sentinel, 9]]
    # by default (three banks: min_contributors 3) every column needs values at every bank
    opened.clear()
    got = analyses.get("describe").run_simulated(tables, columns=["a", "b", "c"], min_cell_size=2)
    assert got["a"]["count"] == 9 and got["b"] == got["c"] == {"count": None, "suppressed": True}
    assert opened == [[9, 4500, 2850000, 100, 900, 0] + [-1, 0, 0, 0, 0, 0] * 2]


def test_corr_opens_nothing_of_pairs_below_the_minimum(opened):
    """One customer's salary (a single row) never reaches the compute parties, whatever
    min_cell_size: pairs under max(2, min_cell_size) rows open only their flag."""
    salary_units = 9876543
    tables = {"bank_a": pd.DataFrame({"bal": [1.0, 2, 3, 4], "salary": [None] * 4}),
              "bank_b": pd.DataFrame({"bal": [5.0, 6, 7], "salary": [salary_units / 100, None, None]}),
              "bank_c": pd.DataFrame({"bal": [8.0, 9, 10], "salary": [None] * 3})}
    bal = pd.Series(np.arange(1.0, 11))
    for min_cell_size in (1, 10):
        opened.clear()
        got = analyses.get("corr").run_simulated(tables, columns=["bal", "salary"], min_cell_size=min_cell_size,
                                                 min_contributors=0)
        assert got["corr"][0][0] == 1.0 and close(got["cov"][0][0], bal.var())
        assert all(math.isnan(v) for v in (got["corr"][0][1], got["corr"][1][0], got["corr"][1][1], got["cov"][1][1]))
        # pairs (bal, bal), (bal, salary), (salary, salary): 8 values each, the last two zeros
        assert opened == [[10, 5500, 3850000, 3850000] * 2 + [0] * 16], min_cell_size
    # a pair at the threshold is opened and finished as pandas does
    got = analyses.get("corr").run_simulated(split(TAIWAN.head(40), 3), columns=["LIMIT_BAL", "BILL_AMT1"],
                                             min_cell_size=40, min_contributors=0)
    assert np.allclose(got["corr"], TAIWAN.head(40)[["LIMIT_BAL", "BILL_AMT1"]].corr().to_numpy(), rtol=REL)


def test_histogram_equals_numpy_with_small_bins_suppressed():
    edges = [-2e5, -1e5, 0, 1e4, 1e5, 4e5, 5e5, 6e5, 7e5, 8e5]
    banks = split(TAIWAN, 3)
    want = np.histogram(TAIWAN["BILL_AMT1"], bins=edges)[0]
    per_bank = [np.histogram(t["BILL_AMT1"], bins=edges)[0] for t in banks.values()]
    # the data must exercise every case: small bins, an empty bin and bins at or over the minimum
    assert sum(0 < c < 10 for c in want) >= 2 and 0 in want and sum(c >= 10 for c in want) >= 2
    got = analyses.get("histogram").run_simulated(banks, column="BILL_AMT1", edges=edges, min_cell_size=10,
                                                  min_contributors=0)
    for cell, count in zip(got["counts"], want, strict=True):
        if 0 < count < 10:
            assert cell == {"suppressed": True}
        else:
            assert cell == int(count)
    # by default every bin needs min_cell_size rows at each of the three banks
    got = analyses.get("histogram").run_simulated(banks, column="BILL_AMT1", edges=edges, min_cell_size=10)
    assert got["min_contributors"] == 3
    contributors = sum((c >= 10).astype(int) for c in per_bank)
    assert 0 < sum(contributors == 3) < len(want) and any(0 < k < 3 for k in contributors)
    for cell, count, k in zip(got["counts"], want, contributors, strict=True):
        assert cell == (int(count) if k == 3 else {"suppressed": True})


@pytest.mark.parametrize("banks", [3, 4])
def test_quantiles_equal_numpy_linear(banks):
    q = [0.0, 0.01, 0.25, 0.5, 0.75, 0.99, 1.0]
    got = analyses.get("quantiles").run_simulated(split(TAIWAN, banks, "random"), column="BILL_AMT1", q=q)
    want = np.quantile(TAIWAN["BILL_AMT1"].to_numpy(), q)
    assert got["count"] == len(TAIWAN)
    for p, w in zip(q, want, strict=True):
        assert close(got["quantiles"][str(p)], float(w))


def test_corr_equals_pandas():
    cols = ["LIMIT_BAL", "BILL_AMT1", "EDUCATION", "MARRIAGE"]
    got = analyses.get("corr").run_simulated(split(TAIWAN, 3), columns=cols)
    assert np.allclose(got["corr"], TAIWAN[cols].corr().to_numpy(), rtol=REL, atol=1e-15)
    assert np.allclose(got["cov"], TAIWAN[cols].cov().to_numpy(), rtol=REL, atol=0)


def test_default_rate_by_purpose_equals_pandas_with_suppression():
    banks = split(GERMAN, 3)
    got = analyses.get("default_rate").run_simulated(
        banks, label="creditability", positive="bad", by="purpose", min_cell_size=13
    )
    per_bank = [t.groupby("purpose").size() for t in banks.values()]
    groups = GERMAN.groupby("purpose")["creditability"]
    hidden = 0
    for key, series in groups:
        cell = got["groups"][key]
        # released only where each of the three banks holds at least 13 of the group's loans
        if any(int(sizes.get(key, 0)) < 13 for sizes in per_bank):
            hidden += len(series) >= 13  # suppressed although the total passes min_cell_size
            assert cell == {"suppressed": True}, key
        else:
            defaults = int((series == "bad").sum())
            assert cell == {"count": len(series), "defaults": defaults, "rate": defaults / len(series)}
    assert set(got["groups"]) == set(GERMAN["purpose"])
    assert hidden >= 1 and got["min_contributors"] == 3


def test_default_rate_by_education_on_taiwan_with_declared_groups():
    declared = ["0", "1", "2", "3", "4", "5", "6", "7"]
    got = analyses.get("default_rate").run_simulated(
        split(TAIWAN, 3, "random"), label="default", by="EDUCATION", groups=declared, min_cell_size=20,
        min_contributors=0,
    )
    rates = TAIWAN.groupby("EDUCATION")["default"].agg(["count", "sum"])
    for key in declared:
        cell = got["groups"][key]
        count = int(rates["count"].get(int(key), 0))
        if 0 < count < 20:
            assert cell == {"suppressed": True}
        elif count == 0:
            assert cell["count"] == 0 and math.isnan(cell["rate"])
        else:
            assert cell["count"] == count and cell["defaults"] == int(rates["sum"][int(key)])


def test_bad_inputs_name_the_bank_and_column():
    tables = split(TAIWAN.head(30), 3)
    broken = dict(tables)
    broken["bank_1"] = tables["bank_1"].drop(columns=["BILL_AMT1"])
    with pytest.raises(smpc.InputError, match="bank_1: column 'BILL_AMT1' is missing"):
        analyses.get("describe").run_simulated(broken, columns=["BILL_AMT1"])
    text = dict(tables)
    frame = tables["bank_2"].copy()
    frame["LIMIT_BAL"] = frame["LIMIT_BAL"].astype(object)
    frame.loc[3, "LIMIT_BAL"] = "lots"
    text["bank_2"] = frame
    with pytest.raises(smpc.InputError, match="bank_2, column 'LIMIT_BAL': row 4 is not numeric"):
        analyses.get("describe").run_simulated(text, columns=["LIMIT_BAL"])
    precise = dict(tables)
    frame = tables["bank_0"].copy()
    frame.loc[0, "LIMIT_BAL"] = 1.005
    precise["bank_0"] = frame
    with pytest.raises(smpc.InputError, match="bank_0, column 'LIMIT_BAL'.*decimal"):
        analyses.get("describe").run_simulated(precise, columns=["LIMIT_BAL"])
    with pytest.raises(smpc.InputError, match="unknown parameter"):
        analyses.get("describe").run_simulated(tables, columns=["LIMIT_BAL"], colour="red")
    with pytest.raises(smpc.InputError, match="unknown analysis"):
        analyses.get("no_such_analysis")


def test_default_rate_refuses_a_bad_label_before_any_key_is_published(published):
    tables = {"bank_a": pd.DataFrame({"g": ["vip-customer-7781"], "d": [1]}),
              "bank_b": pd.DataFrame({"g": ["car"], "d": [0]}),
              "bank_c": pd.DataFrame({"g": ["car"], "d": ["oops"]})}
    with pytest.raises(smpc.InputError, match="bank_c, column 'd': row 1 is not numeric"):
        analyses.get("default_rate").run_simulated(tables, label="d", by="g", min_cell_size=5)
    assert published == [] and published.sent == []
    tables["bank_c"] = pd.DataFrame({"g": ["boat"], "d": [1]})
    with pytest.raises(smpc.InputError, match="bank_c, column 'g': row 1 has a group key not in the declared"):
        analyses.get("default_rate").run_simulated(tables, label="d", by="g", groups=["car", "vip-customer-7781"])
    assert published == [] and published.sent == []


STATISTICS = ["describe", "histogram", "quantiles", "corr", "default_rate"]


@pytest.mark.parametrize("name,params,column", [
    ("describe", {"columns": ["x"]}, "x"),
    ("histogram", {"column": "x", "edges": [0, 10, 100]}, "x"),
    ("quantiles", {"column": "x", "q": [0.5]}, "x"),
    ("corr", {"columns": ["y", "x"]}, "x"),
    ("default_rate", {"label": "d", "by": "g"}, "d"),
])
def test_every_statistic_checks_a_bank_table_before_the_job_is_accepted(name, params, column):
    """The party service runs ``check`` while deciding whether to accept a job, before any
    share moves; an analysis without one lets a bad file in until it fails mid-job."""
    analysis = analyses.get(name)
    assert analysis.check is not None
    good = pd.DataFrame({"x": [1.5, 20.0], "y": [1.0, 2.0], "d": [0, 1], "g": ["a", "b"]})
    analysis.check_input(good, "bank_z", analysis.parse_params(params))
    bad = good.astype(object)
    bad.loc[1, column] = "oops"
    with pytest.raises(smpc.InputError, match=f"bank_z, column '{column}': row 2 is not numeric"):
        analysis.check_input(bad, "bank_z", analysis.parse_params(params))


@pytest.mark.parametrize("name,params", [
    ("describe", {"columns": ["x"]}), ("quantiles", {"column": "x", "q": [0.5]}), ("corr", {"columns": ["x"]}),
])
@pytest.mark.parametrize("decimals", [-2, -1, 7, 40])
def test_decimals_outside_0_to_6_are_refused_by_name(name, params, decimals):
    tables = {b: pd.DataFrame({"x": [100.0, 250.0]}) for b in ("bank_a", "bank_b", "bank_c")}
    analysis = analyses.get(name)
    message = f"{name}: parameter 'decimals' must be in 0..6, got {decimals}"
    with pytest.raises(smpc.InputError, match=re.escape(message)):
        analysis.run_simulated(tables, **params, decimals=decimals)
    with pytest.raises(smpc.InputError, match=re.escape(message)):
        analysis.run_plaintext(tables, **params, decimals=decimals)
    with pytest.raises(smpc.InputError, match=re.escape(message)):
        analysis.check_input(tables["bank_a"], "bank_a", analysis.parse_params({**params, "decimals": decimals}))


def test_quantiles_leakage_names_what_input_party_banks_receive(published):
    """With four banks the banks are input parties: each receives n and every search
    outcome (so the order statistics), and the Leakage section must say so."""
    tables = {b: pd.DataFrame({"x": v}) for b, v in
              {"bank_a": [1.0, 2.0], "bank_b": [1000.0], "bank_c": [55.5, 7.0], "bank_d": [3.0]}.items()}
    got = analyses.get("quantiles").run_simulated(tables, column="x", q=[1.0], bound=1e4)
    assert got == {"count": 6, "quantiles": {"1.0": 1000.0}, "min_contributors": 3, "max_dominance": 100.0}
    to_banks = [(who, value) for who, owner, value in published if who in tables]
    assert {who for who, _ in to_banks} == set(tables)
    assert all(owner == "compute_0" for _, owner, _ in published)
    assert [v for who, v in to_banks if who == "bank_a"][0] == 6
    leakage = analyses.get("quantiles").leakage
    assert "input parties" in leakage and "receives n and every search outcome" in leakage


def _german_banks(k: int) -> dict:
    german = pd.read_csv(DATA / "german_credit.csv")
    return {f"bank_{i}": german.iloc[i::k].reset_index(drop=True) for i in range(k)}


@pytest.mark.parametrize("banks", [1, 3, 5])
def test_rounds_are_the_ones_the_cost_sections_state(banks):
    """Every bank shares its aggregates in the same round (one round, not one per bank), and
    the rounds equal the Cost formulas: 1 to 3 banks are compute parties, 5 are input parties.
    The disclosure rules (on by default: min_contributors = min(3, banks)) add one batched
    comparison and one selection (11 rounds) and a product tree of ceil(log2 L) rounds over
    L leaves: one per bank, and one more per bank with max_dominance (one more round where
    sums of amounts are split for 64-bit comparisons)."""
    levels = math.ceil(math.log2(banks)) if banks > 1 else 0
    rules = 11 + levels
    dominance = 11 + math.ceil(math.log2(2 * banks))
    cases = [
        ("describe", {"columns": "credit_amount,age_in_years"}, 3 + 11 * levels + rules),
        ("describe", {"columns": "credit_amount,age_in_years", "min_cell_size": "10"}, 3 + 11 * levels + rules),
        ("describe", {"columns": "credit_amount,age_in_years", "min_contributors": "0"}, 3 + 11 * levels),
        ("describe", {"columns": "credit_amount", "max_dominance": "60"}, 3 + 11 * levels + dominance + 1),
        ("histogram", {"column": "credit_amount", "edges": "0,1000,5000,20000", "min_contributors": "0"}, 2),
        ("histogram", {"column": "credit_amount", "edges": "0,1000,5000,20000", "min_cell_size": "10"}, 2 + rules),
        ("histogram", {"column": "credit_amount", "edges": "0,1000,5000,20000", "max_dominance": "50"},
         2 + dominance),
        ("default_rate", {"label": "creditability", "positive": "bad", "by": "purpose", "min_contributors": "0"}, 4),
        ("default_rate", {"label": "creditability", "positive": "bad", "by": "purpose", "min_cell_size": "20"},
         4 + rules),
        ("corr", {"columns": "credit_amount,age_in_years"}, 13 + levels),
        ("corr", {"columns": "credit_amount,age_in_years", "min_contributors": "0"}, 13),
        ("default_rate_overall", {"label": "creditability", "positive": "bad", "amount": "credit_amount"},
         2 + rules),
        ("default_rate_overall", {"label": "creditability", "positive": "bad", "amount": "credit_amount",
                                  "min_contributors": "0"}, 2),
        ("quantiles", {"column": "credit_amount", "q": "0.5", "bound": "1e5", "decimals": "0"},
         2 + rules + 12 * 5 if banks <= 3 else 3 + rules + 13 * 5),
    ]
    tables = _german_banks(banks)
    for name, params, rounds in cases:
        analysis = analyses.get(name)
        _, cost = analysis.run_local(tables, analysis.parse_params(params))
        assert cost["rounds"] == rounds, (name, params, cost["rounds"], rounds)


def test_corr_errors_name_the_row_of_the_file_not_of_the_present_values():
    table = pd.DataFrame({"X": [None, None, 1.0, 2.555, 3.0], "Y": [1.0, 2.0, 3.0, 4.0, 5.0]})
    with pytest.raises(smpc.InputError, match=r"bank_a, column 'X': row 4 has more than 2 decimal places"):
        analyses.get("corr").run_plaintext({"bank_a": table}, columns=["X", "Y"])


@pytest.mark.parametrize("name", ["describe", "corr"])
def test_a_bound_whose_squares_pass_the_ring_is_refused_by_parameter_name(name):
    tables = {"bank_a": pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]})}
    with pytest.raises(smpc.RangeError, match=rf"{name}: parameters 'bound' = 1e\+17 and 'decimals' = 2"):
        analyses.get(name).run_simulated(tables, columns=["x", "y"], bound=1e17)
