"""Per-column parameters in a party's decision: a requester's cut points per column, and the
settings each bank declares per column (categories, bounds, decimals), merged per column."""

from __future__ import annotations

import pytest
from test_service_config import DECLARED, _decide, party_dir, pki  # noqa: F401 - fixtures

from smpc.analyses import registry
from smpc.errors import SmpcError
from smpc.service.policy import decode_declared, encode_declared, merge_declared, uncovered

ALLOWED = DECLARED.replace('allowed_analyses = ["default_rate_overall"]',
                           'allowed_analyses = ["default_rate_overall", "woe_iv"]').replace(
    "[policy.allowed_columns]", '[policy.allowed_columns]\nwoe_iv = ["creditability", "credit_amount", "extra"]')
JOB = {"label": "creditability", "positive": "bad", "columns": "credit_amount,extra",
       "bins.credit_amount": "quantile:2", "edges.extra": "1.5"}


def test_each_column_gets_its_own_declared_settings(party_dir):  # noqa: F811
    decision = _decide(party_dir, ALLOWED, analysis="woe_iv", params=JOB)
    assert decision.accepted, decision.message
    assert decision.declared == {"bound": {"credit_amount": 1000.0, "extra": 10.0},
                                 "decimals": {"credit_amount": 0, "extra": 1},
                                 "label_values": {"creditability": ["bad", "good"]}}
    assert decision.params["edges"] == {"extra": [1.5]} and decision.params["bins"] == {"credit_amount": "quantile:2"}
    assert decision.columns == ["creditability", "credit_amount", "extra"]


@pytest.mark.parametrize("sent", ["categories.extra", "bound.credit_amount", "label_values.creditability",
                                  "decimals"])
def test_a_requester_cannot_send_a_per_column_owner_setting(party_dir, sent):  # noqa: F811
    decision = _decide(party_dir, ALLOWED, analysis="woe_iv", params={**JOB, sent: "1"})
    assert not decision.accepted and decision.rule == "params.owner" and not decision.detail


def test_a_column_outside_the_policy_is_refused_whatever_its_bins(party_dir):  # noqa: F811
    text = ALLOWED.replace('woe_iv = ["creditability", "credit_amount", "extra"]',
                           'woe_iv = ["creditability", "credit_amount"]')
    decision = _decide(party_dir, text, analysis="woe_iv", params=JOB)
    assert decision.rule == "policy.allowed_columns.woe_iv" and "'extra'" in decision.message


def test_per_column_declarations_merge_column_by_column():
    woe = registry.get("woe_iv")
    answers = [{"categories": {"purpose": ["car", "tv"]}, "bound": {"amount": 10.0}},
               {"categories": {"purpose": ["car", "boat"]}, "bound": {"amount": 1e6, "age": 200.0}},
               {}]
    merged = merge_declared(woe, answers)
    assert merged == {"categories": {"purpose": ["boat", "car", "tv"]}, "bound": {"age": 200.0, "amount": 1e6}}
    assert uncovered(woe, merged, answers[0]) is None and uncovered(woe, merged, answers[1]) is None
    assert uncovered(woe, merged, {"categories": {"purpose": ["plane"]}}) == "categories"
    assert uncovered(woe, merged, {"bound": {"other": 1.0}}) == "bound"
    assert decode_declared(woe, encode_declared(merged), "bank_b") == merged
    with pytest.raises(SmpcError, match="bank_b sent 'edges', which is no owner-set parameter"):
        decode_declared(woe, {"edges": '{"x": [1]}'}, "bank_b")


def test_per_column_parameters_parse_from_dotted_keys_and_name_their_column():
    woe = registry.get("woe_iv")
    parsed = woe.parse_params({"label": "y", "columns": "a,b", "edges.a": "1, 2.5", "bins.b": "quantile:4"})
    assert parsed["edges"] == {"a": [1.0, 2.5]} and parsed["bins"] == {"b": "quantile:4"}
    assert woe.parse_params({"label": "y", "columns": "a", "edges": {"a": [3]}})["edges"] == {"a": [3.0]}
    with pytest.raises(SmpcError, match=r"parameter 'edges.a': 'x' is not a finite|could not convert"):
        woe.parse_params({"label": "y", "columns": "a", "edges.a": "x"})
    with pytest.raises(SmpcError, match="'edges.c' names a column that is not in 'columns'"):
        woe.parse_params({"label": "y", "columns": "a", "edges.c": "1"})
    with pytest.raises(SmpcError, match=r"unknown parameter\(s\) colour.a"):
        woe.parse_params({"label": "y", "columns": "a", "colour.a": "1"})
    assert {p["name"]: p.get("per_column_of") for p in woe.describe()["params"]}["edges"] == "columns"
