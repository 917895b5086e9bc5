"""The analysis registry (typed parameters, documented leakage and cost, plaintext twins)
and its first analysis, default_rate_overall, against its twin and pandas."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from smpc import analyses
from smpc.analyses.registry import Param, register
from smpc.errors import InputError, RangeError, SmpcError

ROOT = Path(__file__).resolve().parents[1]
GERMAN = pd.read_csv(ROOT / "examples" / "data" / "german_credit.csv")
TAIWAN = pd.read_csv(ROOT / "examples" / "data" / "taiwan_default_sample.csv")
RATE = analyses.get("default_rate_overall")


def split(frame, n):
    return {f"bank_{chr(97 + i)}": frame.iloc[i::n].reset_index(drop=True) for i in range(n)}


def test_every_analysis_documents_leakage_cost_and_typed_parameters():
    assert "default_rate_overall" in analyses.names()
    for a in analyses.analyses():
        assert a.summary and a.leakage and a.cost, a.name
        assert callable(a.plaintext)
        for p in a.params:
            assert p.type in ("int", "float", "str", "bool", "column", "columns", "floats", "strs")
    described = RATE.describe()
    assert [p["name"] for p in described["params"]][:3] == ["label", "positive", "amount"]
    assert described["params"][0]["required"] is True


def test_parameters_are_parsed_and_validated_by_their_schema():
    parsed = RATE.parse_params({"label": "creditability", "amount_decimals": "3", "amount_bound": "1e9"})
    assert parsed["amount_decimals"] == 3 and parsed["amount_bound"] == 1e9 and parsed["positive"] is None
    assert parsed["min_cell_size"] == 1
    with pytest.raises(InputError, match="parameter 'label' is required"):
        RATE.parse_params({})
    with pytest.raises(InputError, match="unknown parameter.*colour"):
        RATE.parse_params({"label": "x", "colour": "red"})
    with pytest.raises(InputError, match="'amount_decimals'.*not an integer"):
        RATE.parse_params({"label": "x", "amount_decimals": "2.5"})
    with pytest.raises(InputError, match="'amount_bound'.*finite"):
        RATE.parse_params({"label": "x", "amount_bound": "inf"})
    assert RATE.columns(RATE.parse_params({"label": "a", "amount": "b"})) == ["a", "b"]
    assert Param("flag", "bool").parse("yes") is True and Param("xs", "floats").parse("1, 2.5") == [1.0, 2.5]
    with pytest.raises(InputError, match="unknown analysis 'nope'"):
        analyses.get("nope")


def test_registration_refuses_undocumented_or_mismatched_analyses():
    def undocumented(ctx, table, owners):
        """No sections."""

    with pytest.raises(SmpcError, match="Leakage: and Cost:"):
        register("undocumented", plaintext=lambda t: {})(undocumented)

    def wrong_params(ctx, table, owners, *, a):
        """Something.

        Leakage: nothing.
        Cost: nothing.
        """

    with pytest.raises(SmpcError, match="does not accept parameter 'b'"):
        register("wrong_params", params=[Param("b", "int")], plaintext=lambda t: {})(wrong_params)
    with pytest.raises(SmpcError, match="already registered"):
        register("default_rate_overall", plaintext=lambda t: {})(wrong_params)
    assert "undocumented" not in analyses.names() and "wrong_params" not in analyses.names()


@pytest.mark.parametrize("banks", [1, 3, 5])
def test_default_rate_overall_equals_its_twin_and_pandas(banks):
    tables = split(GERMAN, banks)
    params = {"label": "creditability", "positive": "bad", "amount": "credit_amount"}
    got = RATE.run_simulated(tables, **params)
    assert got == RATE.run_plaintext(tables, **params)
    bad = GERMAN["creditability"] == "bad"
    assert got["rows"] == len(GERMAN) and got["defaults"] == int(bad.sum())
    assert got["default_rate"] == bad.mean() and got["amount_sum"] == GERMAN["credit_amount"].sum()
    assert got["mean_amount"] == pytest.approx(GERMAN["credit_amount"].mean(), rel=1e-15)


def test_default_rate_overall_on_flags_and_negative_amounts():
    tables = split(TAIWAN, 3)
    got = RATE.run_simulated(tables, label="default", amount="BILL_AMT1", amount_decimals=0)
    assert got == RATE.run_plaintext(tables, label="default", amount="BILL_AMT1", amount_decimals=0)
    assert got["defaults"] == 1345 and got["amount_sum"] == TAIWAN["BILL_AMT1"].sum()


def test_small_totals_are_suppressed_without_revealing_the_count():
    tables = split(GERMAN.head(12), 3)
    # the total-count rule alone (contributor rule off): 12 loans pass a minimum of 12, not 13
    rule = {"label": "creditability", "positive": "bad", "min_contributors": 0}
    got = RATE.run_simulated(tables, **rule, min_cell_size=13)
    assert got == {"suppressed": True, "min_cell_size": 13, "min_contributors": 0, "max_dominance": 100.0}
    assert got == RATE.run_plaintext(tables, **rule, min_cell_size=13)
    assert RATE.run_simulated(tables, **rule, min_cell_size=12)["rows"] == 12
    # by default three banks must each hold min_cell_size loans: 4 each is too few for 12
    assert RATE.run_simulated(tables, label="creditability", positive="bad", min_cell_size=12)["suppressed"]


def test_bad_inputs_name_the_party_column_and_problem():
    tables = split(GERMAN, 3)
    with pytest.raises(InputError, match=r"bank_[abc]: column 'nope' is missing"):
        RATE.run_simulated(tables, label="nope")
    with pytest.raises(InputError, match=r"bank_[abc], column 'creditability': row 1 is not numeric"):
        RATE.run_simulated(tables, label="creditability")
    broken = {k: v.copy() for k, v in tables.items()}
    broken["bank_b"]["credit_amount"] = broken["bank_b"]["credit_amount"].astype(object)
    broken["bank_b"].loc[4, "credit_amount"] = "n/a"
    with pytest.raises(InputError, match=r"bank_b, column 'credit_amount': row 5 is not numeric$"):
        RATE.run_simulated(broken, label="creditability", positive="bad", amount="credit_amount")
    with pytest.raises(InputError, match="more than 0 decimal places"):
        RATE.run_plaintext({"x": pd.DataFrame({"d": [0, 1], "a": [1.5, 2]})}, label="d", amount="a",
                           amount_decimals=0)
    with pytest.raises(RangeError, match=r"x, column 'a': row 2 exceeds the declared bound 1e\+06$"):
        RATE.run_simulated({"x": pd.DataFrame({"d": [0, 1], "a": [10, 2e6]})}, label="d", amount="a",
                           amount_bound=1e6)
    with pytest.raises(InputError, match=r"bank_z, column 'd': row 2 is not 0 or 1$"):
        RATE.check_input(pd.DataFrame({"d": [0, 2]}), "bank_z", RATE.parse_params({"label": "d"}))


def test_refusals_never_quote_the_cell():
    """A refusal reaches the other banks and the requester: it names bank, column, row and
    problem, never the value (a balance, or whatever landed in the wrong column)."""
    secret_cells = {"d": ["0", "ACME-4711"], "a": [1.0, 2.0]}
    with pytest.raises(InputError) as refused:
        RATE.check_input(pd.DataFrame(secret_cells), "bank_z", RATE.parse_params({"label": "d"}))
    assert "ACME" not in str(refused.value)
    for column, values, params in (
        ("a", [1.0, 123456.789], {"amount_decimals": 2}),
        ("a", [1.0, 98765432.5], {"amount_bound": 1e6}),
        ("a", [1.0, "ACME-4711"], {}),
    ):
        table = pd.DataFrame({"d": [0, 1], column: values})
        with pytest.raises((InputError, RangeError)) as refused:
            RATE.check_input(table, "bank_z", RATE.parse_params({"label": "d", "amount": "a", **params}))
        text = str(refused.value)
        assert "bank_z, column 'a': row 2" in text
        assert all(str(v) not in text for v in ("123456", "98765432", "ACME")), text


def test_amount_precision_is_exact_at_bank_scale_and_the_scale_is_checked():
    """Over-precise amounts are refused at any magnitude (a relative tolerance let
    1234567.891 through as .89); a bound whose units pass 2^53 is refused before any data
    is read (int64 wrapped, and float64 drops cents, beyond it)."""
    ok = pd.DataFrame({"d": [0, 1, 1], "a": [1234567.89, -999999999999.99, 0.01]})
    params = {"label": "d", "amount": "a", "amount_decimals": 2}
    assert RATE.run_plaintext({"x": ok}, **params)["amount_sum"] == pytest.approx(1234567.89 - 999999999999.99 + 0.01)
    for value in (1234567.891, 15000.499, 2500000.4, 1e11 + 0.001):
        over = pd.DataFrame({"d": [0, 1], "a": [1.0, value]})
        decimals = 0 if value == 2500000.4 else 2
        with pytest.raises(InputError, match=f"row 2 has more than {decimals} decimal places"):
            RATE.run_plaintext({"x": over}, **{**params, "amount_decimals": decimals})
    with pytest.raises(RangeError, match="below 2\\^53"):
        RATE.run_plaintext({"x": ok}, **params, amount_bound=1e17)
    with pytest.raises(InputError, match="decimals must be in 0..6, got -1"):
        RATE.run_plaintext({"x": ok}, **{**params, "amount_decimals": -1})


def test_per_bank_results_are_released_to_their_bank_only():
    from smpc.service.jobs import addressed_to

    result = {"flagged_count": 3, "by_bank": {"bank_a": {"flagged_ids": ["x"]}, "bank_b": {"flagged_ids": ["y"]}}}
    assert addressed_to(result, "bank_a") == {"flagged_count": 3, "by_bank": {"bank_a": {"flagged_ids": ["x"]}}}
    assert addressed_to(result, "auditor") == {"flagged_count": 3, "by_bank": {}}
    assert addressed_to({"rate": 0.3}, "bank_a") == {"rate": 0.3}
