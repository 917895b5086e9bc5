"""Disclosure control decided on shares: min_contributors and max_dominance against pandas on
adversarial magnitudes, the n-1 disclosure of a zero-row bank or a two-bank cell, results
opened to the recipients only (from the recorded messages), and `smpc analyze` treating an
empty and a header-only file alike."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import recording

from smpc import analyses
from smpc.cli import main as cli_main

BANKS = ["bank_a", "bank_b", "bank_c"]


def adversarial_banks(seed: int) -> dict[str, pd.DataFrame]:
    """Balances up to 1e9 in cents, negatives, many ties; a group and a bin that only two
    banks hold, one bank dominating one group's balances, a column only one bank fills."""
    rng = np.random.default_rng(seed)
    tables = {}
    for i, bank in enumerate(BANKS):
        n = [40, 25, 12][i]
        balance = rng.choice([1e9, -1e9, 999_999_999.99, 0.01, -0.01, 0.0, 5e8], size=n)
        balance[: n // 3] = np.round(rng.uniform(-1e9, 1e9, size=n // 3), 2)
        group = rng.choice(["car", "home", "study"], size=n).astype(object)
        if bank != "bank_c":
            group[:3] = "boat"  # two contributors only
        rare = np.full(n, np.nan)
        if bank == "bank_a":
            rare[:7] = rng.uniform(0, 1e6, size=7).round(2)
        tables[bank] = pd.DataFrame({"balance": balance, "group": group, "default": rng.integers(0, 2, size=n),
                                     "rare": rare, "small": rng.integers(-5, 6, size=n).astype(float)})
    tables["bank_a"].loc[tables["bank_a"]["group"] == "home", "balance"] = 1e9  # bank_a dominates 'home'
    return tables


def _cents(series: pd.Series) -> list[int]:
    return [int(round(v * 100)) for v in series.dropna()]


def _released(per_bank_counts, per_bank_magnitudes, k, m, p) -> bool:
    """The rules, from their statement: k banks with >= max(1, m) records each (or, with k
    = 0, no 1..m-1 records in all), and no bank above p percent of the total magnitude."""
    if k:
        ok = sum(n >= max(1, m) for n in per_bank_counts) >= k
    else:
        ok = not 0 < sum(per_bank_counts) < m
    total = sum(per_bank_magnitudes)
    return ok and not any(Fraction(a) > Fraction(p) / 100 * total for a in per_bank_magnitudes)


RULES = [
    {},  # the defaults: min_contributors = 3 for three banks, dominance off
    {"min_cell_size": 5},
    {"min_contributors": 2, "max_dominance": 60},
    {"min_contributors": 0, "min_cell_size": 3, "max_dominance": 85.5},
]


@pytest.mark.parametrize("rules", RULES, ids=lambda r: ",".join(f"{k}={v}" for k, v in r.items()) or "defaults")
def test_describe_against_pandas_under_every_rule(rules):
    tables = adversarial_banks(7)
    cols = ["balance", "rare", "small"]
    got = analyses.get("describe").run_simulated(tables, columns=cols, bound=1e9, **rules)
    assert got == analyses.get("describe").run_plaintext(tables, columns=cols, bound=1e9, **rules)
    k, m, p = rules.get("min_contributors", 3), rules.get("min_cell_size", 1), rules.get("max_dominance", 100)
    pooled = pd.concat(tables.values(), ignore_index=True)
    for c in cols:
        counts = [int(t[c].count()) for t in tables.values()]
        magnitudes = [sum(abs(v) for v in _cents(t[c])) for t in tables.values()]
        if not _released(counts, magnitudes, k, m, p):
            assert got[c] == {"count": None, "suppressed": True}, c
            continue
        s = pooled[c]
        assert got[c]["count"] == s.count() and got[c]["sum"] == sum(_cents(s)) / 100
        assert got[c]["min"] == s.min() and got[c]["max"] == s.max()
        assert math.isclose(got[c]["var"], s.var(), rel_tol=1e-9)
    assert any(got[c].get("suppressed") for c in cols) or rules.get("min_contributors") == 0


@pytest.mark.parametrize("rules", RULES, ids=lambda r: ",".join(f"{k}={v}" for k, v in r.items()) or "defaults")
def test_default_rate_and_histogram_against_pandas_under_every_rule(rules):
    tables = adversarial_banks(11)
    k, m, p = rules.get("min_contributors", 3), rules.get("min_cell_size", 1), rules.get("max_dominance", 100)
    got = analyses.get("default_rate").run_simulated(tables, label="default", by="group", **rules)
    assert got == analyses.get("default_rate").run_plaintext(tables, label="default", by="group", **rules)
    pooled = pd.concat(tables.values(), ignore_index=True)
    for key, rows in pooled.groupby("group"):
        counts = [int((t["group"] == key).sum()) for t in tables.values()]
        if _released(counts, counts, k, m, p):
            assert got["groups"][key] == {"count": len(rows), "defaults": int(rows["default"].sum()),
                                          "rate": rows["default"].sum() / len(rows)}
        else:
            assert got["groups"][key] == {"suppressed": True}
    if rules.get("min_contributors", 3) == 3:
        assert got["groups"]["boat"] == {"suppressed": True}  # two banks only: never released
    edges = [-1e9, -1e6, 0, 1e6, 1e9]
    got = analyses.get("histogram").run_simulated(tables, column="balance", edges=edges, **rules)
    assert got == analyses.get("histogram").run_plaintext(tables, column="balance", edges=edges, **rules)
    per_bank = [np.histogram(t["balance"], bins=edges)[0] for t in tables.values()]
    for j, cell in enumerate(got["counts"]):
        counts = [int(h[j]) for h in per_bank]
        assert cell == (sum(counts) if _released(counts, counts, k, m, p) else {"suppressed": True}), j


def test_corr_quantiles_and_overall_rate_follow_the_rules():
    tables = adversarial_banks(3)
    corr = analyses.get("corr").run_simulated(tables, columns=["balance", "rare", "small"], bound=1e9)
    assert corr == analyses.get("corr").run_plaintext(tables, columns=["balance", "rare", "small"], bound=1e9)
    # 'rare' has values at bank_a only: every pair with it is suppressed, the others match pandas
    pooled = pd.concat(tables.values(), ignore_index=True)
    want = pooled[["balance", "small"]].corr().to_numpy()
    assert np.allclose([[corr["corr"][i][j] for j in (0, 2)] for i in (0, 2)], want, rtol=1e-9)
    assert all(math.isnan(corr["corr"][1][j]) and math.isnan(corr["cov"][j][1]) for j in range(3))
    dominated = analyses.get("corr").run_simulated(tables, columns=["balance", "small"], bound=1e9,
                                                   max_dominance=40)
    assert dominated == analyses.get("corr").run_plaintext(tables, columns=["balance", "small"], bound=1e9,
                                                           max_dominance=40)
    q = analyses.get("quantiles")
    assert q.run_simulated(tables, column="rare", q=[0.5], bound=1e9) == {
        "count": None, "suppressed": True, "min_contributors": 3, "max_dominance": 100.0}
    got = q.run_simulated(tables, column="balance", q=[0.0, 0.5, 1.0], bound=1e9)
    assert got["quantiles"]["1.0"] == 1e9 and got["count"] == 77
    overall = analyses.get("default_rate_overall")
    for params in ({"amount": "balance", "amount_bound": 1e9, "max_dominance": 50},
                   {"amount": "balance", "amount_bound": 1e9}, {"max_dominance": 45}):
        assert overall.run_simulated(tables, label="default", **params) == overall.run_plaintext(
            tables, label="default", **params), params
    # bank_a holds 40 of 77 loans: over 45 % of the count, suppressed
    assert overall.run_simulated(tables, label="default", max_dominance=45)["suppressed"] is True


def test_a_zero_row_bank_makes_every_cell_suppressed_and_nothing_but_sentinels_is_opened(opened):
    """The n-1 disclosure: with bank_b empty, bank_a would learn bank_c's exact aggregates by
    subtracting its own from the released totals. Every cell is suppressed instead, and the
    only vectors opened are the public sentinels."""
    tables = adversarial_banks(5)
    tables["bank_b"] = tables["bank_b"].iloc[0:0]
    got = analyses.get("describe").run_simulated(tables, columns=["balance", "small"], bound=1e9, min_cell_size=1)
    assert got == {c: {"count": None, "suppressed": True} for c in ("balance", "small")}
    assert opened == [[-1, 0, 0, 0, 0, 0] * 2]
    opened.clear()
    got = analyses.get("default_rate").run_simulated(tables, label="default", by="group",
                                                     groups=["boat", "car", "home", "study"])
    assert all(cell == {"suppressed": True} for cell in got["groups"].values())
    assert opened == [[-1, 0] * 4]
    opened.clear()
    got = analyses.get("default_rate_overall").run_simulated(tables, label="default", amount="balance",
                                                             amount_bound=1e9)
    assert got["suppressed"] is True and "rows" not in got and opened == [[-1, 0, 0]]


def test_a_cell_with_two_contributors_is_suppressed_and_three_release(opened):
    tables = {b: pd.DataFrame({"g": ["x"] * 4 + ([] if b == "bank_c" else ["y"] * 5), "d": [0, 1] * 2
                               + ([] if b == "bank_c" else [1] * 5)}) for b in BANKS}
    got = analyses.get("default_rate").run_simulated(tables, label="d", by="g", groups=["x", "y"])
    assert got["groups"] == {"x": {"count": 12, "defaults": 6, "rate": 0.5}, "y": {"suppressed": True}}
    assert got["min_contributors"] == 3 and opened == [[12, 6, -1, 0]]


@pytest.mark.parametrize("name,params", [
    ("describe", {"columns": ["x"]}),
    ("histogram", {"column": "x", "edges": [0, 50, 100]}),
    ("corr", {"columns": ["x", "y"]}),
    ("default_rate", {"label": "d", "by": "g", "groups": ["a", "b"]}),
    ("default_rate_overall", {"label": "d", "amount": "x"}),
])
def test_a_compute_party_that_is_no_recipient_receives_no_result_bytes(name, params):
    """The job's recipient is rank 0 only: from the recorded messages, ranks 1 and 2 receive
    no reveal at all (the disclosure flags are never opened either), return None, and rank 0
    receives the result."""
    tables = {b: pd.DataFrame({"x": [float(10 * i + r) for r in range(9)], "y": [float(r * r) for r in range(9)],
                               "d": [r % 2 for r in range(9)], "g": ["a", "b", "a"] * 3}) for i, b in enumerate(BANKS)}
    analysis = analyses.get(name)
    parsed = analysis.parse_params(params)

    def job(ctx, table=None):
        return analysis.fn(ctx, table, [0, 1, 2], **parsed)

    results, received = recording.run_recorded(job, 3, 128, party_names=BANKS,
                                               args=lambda r: {"table": tables[BANKS[r]]}, result_ranks=[0])
    expected = analysis.run_plaintext(tables, **params)
    assert json.dumps(results[0], sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert results[1] is None and results[2] is None
    reveals = [[tag for _, tag, _ in msgs if tag.startswith("reveal")] for msgs in received]
    assert reveals[0] and reveals[1] == [] and reveals[2] == []


def test_analyze_treats_an_empty_and_a_header_only_file_alike(tmp_path, capsys):
    german = pd.read_csv(Path(__file__).resolve().parents[1] / "examples" / "data" / "german_credit.csv")
    files = {}
    for i, bank in enumerate(BANKS):
        files[bank] = tmp_path / f"{bank}.csv"
        german.iloc[i::3].to_csv(files[bank], index=False)
    header_only = tmp_path / "header_only.csv"
    german.iloc[0:0].to_csv(header_only, index=False)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    outputs = []
    for bank_b in (header_only, empty):
        args = ["analyze", "default_rate", "--data", f"bank_a={files['bank_a']}", "--data", f"bank_b={bank_b}",
                "--data", f"bank_c={files['bank_c']}", "--param", "label=creditability", "--param", "positive=bad",
                "--param", "by=purpose", "--json", "--check"]
        assert cli_main(args) == 0, capsys.readouterr().err
        doc = json.loads(capsys.readouterr().out)
        assert doc["check"]["largest_difference"] == 0
        assert all(cell == {"suppressed": True} for cell in doc["result"]["groups"].values())
        outputs.append(doc["result"])
    assert outputs[0] == outputs[1]
    # with the contributor rule off, a zero-row bank simply contributes nothing
    args = ["analyze", "describe", "--data", f"bank_a={files['bank_a']}", "--data", f"bank_b={empty}",
            "--param", "columns=credit_amount", "--param", "min_contributors=0", "--json"]
    assert cli_main(args) == 0
    got = json.loads(capsys.readouterr().out)["result"]["credit_amount"]
    assert got["count"] == len(german.iloc[0::3]) and got["sum"] == german.iloc[0::3]["credit_amount"].sum()
