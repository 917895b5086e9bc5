"""The statistics catalogue on the real credit data split across banks, against pandas and
numpy directly (not only against the plaintext twins), plus suppression and bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import smpc
from smpc import analyses

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
                "min": s.min(), "max": s.max()}
        for stat, value in want.items():
            assert close(got[c][stat], float(value)), (c, stat, got[c][stat], value)


def test_describe_german_credit_amounts_and_suppression():
    got = analyses.get("describe").run_simulated(
        split(GERMAN, 3), columns=["credit_amount", "age_in_years"], min_cell_size=5000
    )
    assert got["credit_amount"] == {"count": None, "suppressed": True}
    got = analyses.get("describe").run_simulated(split(GERMAN, 3), columns=["credit_amount"])
    assert got["credit_amount"]["sum"] == 3_271_258
    assert close(got["credit_amount"]["std"], GERMAN["credit_amount"].std())


def test_histogram_equals_numpy_with_small_bins_suppressed():
    edges = [-2e5, 0, 1e4, 1e5, 5e5, 7e5]
    got = analyses.get("histogram").run_simulated(split(TAIWAN, 3), column="BILL_AMT1", edges=edges, min_cell_size=10)
    want = np.histogram(TAIWAN["BILL_AMT1"], bins=edges)[0]
    for cell, count in zip(got["counts"], want, strict=True):
        if 0 < count < 10:
            assert cell == {"suppressed": True}
        else:
            assert cell == int(count)


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
    got = analyses.get("default_rate").run_simulated(
        split(GERMAN, 3), label="creditability", positive="bad", by="purpose", min_cell_size=13
    )
    groups = GERMAN.groupby("purpose")["creditability"]
    for key, series in groups:
        cell = got["groups"][key]
        if len(series) < 13:
            assert cell == {"suppressed": True}, key
        else:
            defaults = int((series == "bad").sum())
            assert cell == {"count": len(series), "defaults": defaults, "rate": defaults / len(series)}
    assert set(got["groups"]) == set(GERMAN["purpose"])


def test_default_rate_by_education_on_taiwan_with_declared_groups():
    declared = ["0", "1", "2", "3", "4", "5", "6", "7"]
    got = analyses.get("default_rate").run_simulated(
        split(TAIWAN, 3, "random"), label="default", by="EDUCATION", groups=declared, min_cell_size=20
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
