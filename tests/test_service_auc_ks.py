"""auc_ks as a job of three real party services: a bank's policy allows it column by column,
the score's scale comes from each bank's own column declarations, and the result equals the
plaintext twin."""

from __future__ import annotations

import pytest
from service_harness import BANKS, Cluster

from smpc import analyses
from smpc.errors import PolicyError
from smpc.service.audit import verify

PARAMS = {"score": "duration_in_month", "label": "creditability", "positive": "bad", "negative": "good"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("auc_ks_cluster")
    allowed = {"auc_ks": ["duration_in_month", "creditability", "purpose"]}
    policies = {bank: {"allowed_columns": {"default_rate_overall": ["creditability"], **allowed}} for bank in BANKS}
    policies["bank_c"]["allowed_columns"]["auc_ks"] = ["duration_in_month", "creditability"]  # not by purpose
    c = Cluster(root, policies=policies, analysis_modules=(), extra_allowed=("auc_ks",), certs_by_cli=False)
    c.start()
    yield c
    codes = c.stop_all()
    assert all(code == 0 for code in codes.values()), codes
    for bank in BANKS:
        assert verify(c.audit_path(bank)).ok, bank


def test_auc_ks_job_equals_the_twin_with_each_banks_declared_scale(cluster):
    with cluster.client("bank_a") as client:
        got = client.run("auc_ks", PARAMS, job_id="auc-overall")
    # duration_in_month is declared an int (0 decimals) with bound 1000; the policies' min_cell_size is 10
    want = analyses.get("auc_ks").run_plaintext(cluster.tables, **PARAMS, score_decimals=0, score_bound=1000,
                                                min_cell_size=10)
    assert got == want
    assert got["rows"] == 1000 and 0.6 < got["auc"] < 0.7


def test_a_column_a_bank_does_not_allow_refuses_the_job_naming_bank_and_rule(cluster):
    with cluster.client("bank_a") as client:
        with pytest.raises(PolicyError) as info:
            client.submit("auc_ks", {**PARAMS, "by": "purpose"}, job_id="auc-by-purpose")
    assert info.value.party == "bank_c" and info.value.rule == "policy.allowed_columns.auc_ks"
