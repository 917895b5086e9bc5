"""woe_iv, psi and scorecard as jobs of three real party services: per-column cut points from the
requester, categories and bounds from every bank's own declarations, columns allowed by
each bank's policy, results equal to the plaintext twins on the declared settings."""

from __future__ import annotations

import pytest
from service_harness import COLUMNS, Cluster

from smpc import analyses
from smpc.errors import PolicyError

USED = ["creditability", "credit_amount", "age_in_years", "purpose"]
# what the banks declare (service_harness.COLUMNS): the twin gets the same settings
DECLARED = {"categories.purpose": ",".join(COLUMNS["purpose"]["categories"]),
            "bound.credit_amount": COLUMNS["credit_amount"]["bound"], "decimals.credit_amount": 0}
WOE_JOB = {"label": "creditability", "positive": "bad", "columns": "age_in_years,purpose,credit_amount",
           "edges.age_in_years": "25,35,50", "bins.credit_amount": "quantile:5"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    policies = {b: {"allowed_columns": {"default_rate_overall": list(COLUMNS), "woe_iv": USED,
                                        "psi": USED if b != "bank_c" else ["credit_amount", "purpose"],
                                        "scorecard": USED}}
                for b in ("bank_a", "bank_b", "bank_c")}
    c = Cluster(tmp_path_factory.mktemp("scorecards"), policies=policies, extra_allowed=("woe_iv", "psi", "scorecard"))
    c.start()
    yield c
    assert all(code == 0 for code in c.stop_all().values())


def test_woe_iv_job_equals_its_twin_on_every_banks_declarations(cluster):
    with cluster.client("bank_b") as client:
        got = client.run("woe_iv", WOE_JOB, recipients=["bank_b"])
    plain = analyses.get("woe_iv").run_plaintext(cluster.tables, **WOE_JOB, **DECLARED,
                                                 **{"label_values.creditability": "bad,good"}, min_cell_size=10)
    assert got == plain
    assert got["min_cell_size"] == 10 and got["min_contributors"] == 3 and got["features"]["purpose"]["merged"]
    assert len(got["features"]["credit_amount"]["edges"]) == 4


def test_psi_job_and_a_column_one_bank_does_not_allow(cluster):
    job = {"columns": "credit_amount", "period": "purpose", "reference": "car (new)", "current": "radio/television",
           "bins.credit_amount": "quantile:4"}
    with cluster.client("bank_b") as client:
        got = client.run("psi", job, recipients=["bank_b"])
        assert got == analyses.get("psi").run_plaintext(
            cluster.tables, **job, **{k: v for k, v in DECLARED.items() if "credit_amount" in k}, min_cell_size=10)
        assert got["features"]["credit_amount"]["psi"] > 0
        # against the rest, contributors are counted among the two other banks: three cannot be met
        mine = client.run("psi", {"columns": "credit_amount", "bank": "bank_a", "bins.credit_amount": "quantile:4"},
                          recipients=["bank_b"])
        assert mine["features"]["credit_amount"] == {"suppressed": True}
        with pytest.raises(PolicyError, match=r"bank_c refuses .*column 'age_in_years' may not be used by psi"):
            client.run("psi", {"columns": "age_in_years", "bank": "bank_a", "edges.age_in_years": "30"})
        with pytest.raises(PolicyError, match="parameter 'categories' is set by each bank's data configuration"):
            client.run("woe_iv", {**WOE_JOB, "categories.purpose": "car (new)"})


def test_scorecard_job_equals_the_plaintext_scorecard(cluster):
    job = {**WOE_JOB, "features": "age_in_years,purpose,credit_amount"}
    with cluster.client("bank_c") as client:
        got = client.run("scorecard", job, recipients=["bank_c"])
    plain = analyses.get("scorecard").run_plaintext(cluster.tables, **job, **DECLARED,
                                                    **{"label_values.creditability": "bad,good"}, min_cell_size=10)
    for name, c in plain["coefficients"].items():
        assert abs(got["coefficients"][name]["estimate"] - c["estimate"]) < 1e-4
    assert got["points"] == plain["points"] and got["base_points"] == plain["base_points"]
    assert abs(got["auc"] - plain["auc"]) < 1e-9 and got["features"] == plain["features"]
