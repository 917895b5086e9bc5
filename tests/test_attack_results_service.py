"""Against real party services: the n-1 disclosure (a bank with a header-only source, so
that the other two could subtract their own aggregates from the totals) releases nothing but
suppression, a compute party that is not a recipient receives no result, and a value opened
under a bound it exceeds is refused at every recipient instead of arriving wrapped."""

from __future__ import annotations

import pytest
from service_harness import BANKS, COLUMNS, LOAN_PARAMS, Cluster

from smpc import analyses
from smpc.v1.jobs_pb2 import JOB_STATE_SUCCEEDED

STATISTICS = ["describe", "default_rate", "default_rate_overall"]
RATE_PARAMS = {"label": "creditability", "positive": "bad", "by": "purpose"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("n_minus_one")
    header_only = root / "bank_b_header_only.csv"
    header_only.write_text(",".join(COLUMNS) + "\n")
    policy = {"allowed_analyses": [*STATISTICS, "test_out_of_bound"],
              "allowed_columns": {a: list(COLUMNS) for a in [*STATISTICS, "test_out_of_bound"]}}
    c = Cluster(root, policies={b: policy for b in BANKS}, extra_allowed=(),
                analysis_modules=("service_test_analyses", "out_of_bound_analysis"),
                extra_sources={b: {"thin": (str(header_only) if b == "bank_b" else f"data/{b}_loans.csv", COLUMNS)}
                               for b in BANKS})
    c.start()
    yield c
    codes = c.stop_all()
    assert all(code == 0 for code in codes.values()), codes


def _finished(cluster, bank, job_id):
    job_id = f"bank_a/{job_id}"  # every job here is bank_a's: the service namespaces ids by requester
    # the requester's run ends when its own party is done; another party may still be finishing:
    # its event stream ends with the job's final state, after its job_finished record
    with cluster.client(bank, identity="bank_a") as client:
        for _ in client.events(job_id, timeout=120):
            pass
    return next(r for r in cluster.audit(bank) if r.get("job_id") == job_id and r["event"] == "job_finished")


def test_a_header_only_bank_makes_every_statistic_release_nothing_but_suppression(cluster):
    with cluster.client("bank_a", identity="bank_a") as client:
        described = client.run("describe", {"columns": "credit_amount,age_in_years"}, source="thin",
                               job_id="nm1-describe")
        rates = client.run("default_rate", RATE_PARAMS, source="thin", job_id="nm1-rate")
        overall = client.run("default_rate_overall", LOAN_PARAMS, source="thin", job_id="nm1-overall")
        # the same jobs over three populated sources release numbers: the test can tell
        full = client.run("default_rate_overall", LOAN_PARAMS, source="loans", job_id="nm1-full")
    assert described == {c: {"count": None, "suppressed": True} for c in ("credit_amount", "age_in_years")}
    assert rates["groups"] and all(cell == {"suppressed": True} for cell in rates["groups"].values())
    assert rates["min_contributors"] == 3 and rates["min_cell_size"] == 10  # the policy's minimum applied
    assert overall == {"suppressed": True, "min_cell_size": 10, "min_contributors": 3, "max_dominance": 100.0}
    assert full["rows"] == 1000 and full["amount_sum"] == 3271258.0
    # bank_a's own share of the totals is all it could subtract: nothing of bank_c's appears
    plain = analyses.get("default_rate_overall").run_plaintext(
        {b: cluster.tables[b] if b != "bank_b" else cluster.tables[b].iloc[0:0] for b in BANKS}, **LOAN_PARAMS,
        min_cell_size=10)
    assert plain == overall


def test_a_compute_party_that_is_no_recipient_receives_no_result(cluster):
    with cluster.client("bank_a", identity="bank_a") as client:
        result = client.run("default_rate_overall", LOAN_PARAMS, source="loans", job_id="rcpt-a")
    assert result["rows"] == 1000
    assert _finished(cluster, "bank_a", "rcpt-a")["result_keys"] == sorted(result)
    for bank in ("bank_b", "bank_c"):  # compute parties, not recipients
        finished = _finished(cluster, bank, "rcpt-a")
        assert finished["state"] == "succeeded" and finished["result_keys"] == []
        with cluster.client(bank, identity="bank_a") as client:
            status = client.get("rcpt-a")
            assert status.state == JOB_STATE_SUCCEEDED and client.result("rcpt-a") == {}
    # naming bank_c a recipient opens the result to bank_c's party too, and still not to bank_b's
    with cluster.client("bank_a", identity="bank_a") as client:
        client.run("default_rate_overall", LOAN_PARAMS, source="loans", job_id="rcpt-ac", recipients=["bank_c"])
    assert _finished(cluster, "bank_c", "rcpt-ac")["result_keys"] == sorted(result)
    assert _finished(cluster, "bank_b", "rcpt-ac")["result_keys"] == []
    with cluster.client("bank_c", identity="bank_c") as client:
        assert client.result("bank_a/rcpt-ac") == result


def test_a_value_beyond_its_declared_bound_is_refused_everywhere_never_opened_wrapped(cluster):
    """1000 rows opened under a declared bound of 100: one byte and the spare byte hold
    1000, and 1000 mod 256 would have opened as -24. Every party refuses the job with
    RangeError naming the value; nobody receives a number."""
    from smpc.errors import SmpcError

    with cluster.client("bank_a", identity="bank_a") as client:
        job_id = client.submit("test_out_of_bound", {"column": "credit_amount"}, source="loans", job_id="oob",
                               recipients=["bank_b", "bank_c"])
        with pytest.raises(SmpcError, match="the row total under a wrong bound.*beyond its declared bound 100"):
            client.wait(job_id)
    for bank in BANKS:
        finished = _finished(cluster, bank, "oob")
        assert finished["state"] == "failed" and "result_keys" not in finished, (bank, finished)
    # under a bound that holds, the same job opens the total
    with cluster.client("bank_a", identity="bank_a") as client:
        assert client.run("test_out_of_bound", {"column": "credit_amount", "wrong_bound": 1000}, source="loans",
                          job_id="oob-ok") == {"rows": 1000}
