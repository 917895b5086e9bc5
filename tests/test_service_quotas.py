"""Per-identity quotas (``[limits]``): the quota arithmetic on a clock the test moves, the
config table, the request size cap, and on real party processes the submit rate, the
refusal rate limit and the size cap with nothing raw in any audit log."""

from __future__ import annotations

import re

import pytest
from service_harness import BANKS, LOAN_PARAMS, Cluster
from test_service_config import GOOD

from smpc.service.config import ConfigError, Limits, load_config
from smpc.service.jobs import received_params, request_size_problem
from smpc.service.quotas import QuotaExceeded, Quotas
from smpc.service.states import STATE_NAMES
from smpc.v1 import jobs_pb2


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ----- the arithmetic --------------------------------------------------------------------
def test_submits_per_minute_slide_with_the_window():
    clock = Clock()
    quotas = Quotas("bank_a", Limits(submits_per_minute=2), clock)
    quotas.admit_submit("analyst")
    clock.now += 30
    quotas.admit_submit("analyst")
    with pytest.raises(QuotaExceeded) as refused:
        quotas.admit_submit("analyst")
    assert refused.value.key == "limits.submits_per_minute" and refused.value.first
    assert str(refused.value).startswith("bank_a: rate limit: analyst submitted 2 jobs")
    assert "try again in 30 s" in str(refused.value)
    quotas.admit_submit("bank_b")  # another identity has its own window
    clock.now += 29.5
    with pytest.raises(QuotaExceeded) as again:
        quotas.admit_submit("analyst")
    assert not again.value.first  # the same refusal again: not audited twice
    clock.now += 0.5  # the first submission leaves the window
    quotas.admit_submit("analyst")
    with pytest.raises(QuotaExceeded) as later:
        quotas.admit_submit("analyst")
    assert later.value.first  # admitted in between, so a new episode


def test_refusals_per_hour_block_submits_until_the_window_passes():
    clock = Clock()
    quotas = Quotas("bank_a", Limits(refusals_per_hour=2, submits_per_minute=100), clock)
    for _ in range(2):
        quotas.admit_submit("analyst")
        quotas.record_refusal("analyst")
        clock.now += 600
    with pytest.raises(QuotaExceeded) as refused:
        quotas.admit_submit("analyst")
    assert refused.value.key == "limits.refusals_per_hour"
    assert str(refused.value) == ("bank_a: rate limit: 2 refusals within the last hour for analyst "
                                  "(limits.refusals_per_hour = 2); new jobs are refused for another 40 min")
    for _ in range(5):  # refused submissions neither count as submissions nor as refusals
        with pytest.raises(QuotaExceeded):
            quotas.admit_submit("analyst")
    assert quotas.refusals("analyst") == 2
    quotas.admit_submit("bank_b")
    clock.now += 2400  # the first refusal is an hour old
    quotas.admit_submit("analyst")
    assert quotas.refusals("analyst") == 1


def test_watch_streams_per_identity_are_held_and_given_back():
    quotas = Quotas("bank_c", Limits(watch_streams_per_identity=2))
    with quotas.watch_stream("analyst"), quotas.watch_stream("analyst"):
        with pytest.raises(QuotaExceeded) as refused, quotas.watch_stream("analyst"):
            pass
        assert refused.value.key == "limits.watch_streams_per_identity"
        assert "analyst has 2 Watch streams open here" in str(refused.value)
        with quotas.watch_stream("bank_a"):
            assert quotas.watch_streams("bank_a") == 1
        assert quotas.watch_streams("analyst") == 2
    assert quotas.watch_streams("analyst") == 0
    with pytest.raises(RuntimeError), quotas.watch_stream("analyst"):
        raise RuntimeError("a stream that breaks still gives its slot back")
    assert quotas.watch_streams("analyst") == 0


def test_watch_streams_of_everyone_leave_a_quarter_of_the_job_service_calls():
    quotas = Quotas("bank_c", Limits(watch_streams_per_identity=2, job_service_calls=8))
    with quotas.watch_stream("a"), quotas.watch_stream("a"), quotas.watch_stream("b"), quotas.watch_stream("b"):
        with quotas.watch_stream("c"), quotas.watch_stream("c"):
            assert quotas.watch_streams() == 6
            with pytest.raises(QuotaExceeded) as refused, quotas.watch_stream("d"):
                pass
            assert refused.value.key == "limits.job_service_calls"
            assert str(refused.value) == ("bank_c: 6 Watch streams are open here, the most that leaves room for "
                                          "other calls within limits.job_service_calls = 8; try again later")
        with quotas.watch_stream("d"):
            assert quotas.watch_streams("d") == 1


# ----- the config table ------------------------------------------------------------------
def _config(tmp_path, limits: str):
    (tmp_path / "loans.csv").write_text("creditability,credit_amount\ngood,1\n")
    path = tmp_path / "bank_a.toml"
    path.write_text(GOOD + "\n[limits]\n" + limits)
    return load_config(path, check_files=False)


def test_limits_default_and_can_be_set(tmp_path):
    assert _config(tmp_path, "").limits == Limits()
    limits = _config(tmp_path, "submits_per_minute = 5\nwatch_streams_per_identity = 2\n").limits
    assert (limits.submits_per_minute, limits.watch_streams_per_identity) == (5, 2)
    assert limits.refusals_per_hour == Limits().refusals_per_hour


@pytest.mark.parametrize("limits, message", [
    ("submits_per_minit = 5", "'limits.submits_per_minit' (a typo of 'submits_per_minute'?)"),
    ("refusals_per_hour = 0", "key 'limits.refusals_per_hour' must be an integer >= 1, got 0"),
    ("param_bytes = true", "key 'limits.param_bytes' must be an integer"),
    ("job_service_calls = 100000", "key 'limits.job_service_calls' must be at most 1024"),
    ("param_value_bytes = 100000", "key 'limits.param_value_bytes' (100000) may not exceed limits.param_bytes"),
])
def test_bad_limits_name_the_key(tmp_path, limits, message):
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, limits)
    assert message in str(err.value)


# ----- the size cap and what the audit keeps ----------------------------------------------
def _submit(params=None, **kw) -> jobs_pb2.SubmitRequest:
    return jobs_pb2.SubmitRequest(analysis=kw.pop("analysis", "default_rate_overall"), params=params or {}, **kw)


@pytest.mark.parametrize("request_, key, what", [
    (_submit({f"p{i}": "x" for i in range(17)}), "limits.param_count", "it has 17 parameters, more than 16"),
    (_submit({"label": "é" * 600}), "limits.param_value_bytes", "parameter 'label' has 1200 bytes, more than 1024"),
    (_submit({f"p{i}": "x" * 1000 for i in range(5)}), "limits.param_bytes",
     "its parameters have 5010 bytes, more than 4096"),
    (_submit({"n" * 129: "1"}), "request.size", "a parameter name has 129 characters, more than 128"),
    (_submit(analysis="a" * 200), "request.size", "the analysis name has 200 characters, more than 128"),
    (_submit(recipients=["bank_b"] * 65), "request.size", "it names 65 recipients, more than 64"),
])
def test_request_size_problems_name_the_limit_and_no_value(request_, key, what):
    limits = Limits(param_bytes=4096, param_value_bytes=1024, param_count=16)
    assert request_size_problem(request_, limits) == (key, what)
    assert request_size_problem(_submit(LOAN_PARAMS), limits) is None


def test_received_params_are_parsed_values_or_names_only():
    limits = Limits()
    parsed = received_params("default_rate_overall", {**LOAN_PARAMS, "min_cell_size": "12"}, limits)
    assert parsed == {"params": {**LOAN_PARAMS, "min_cell_size": 12}}
    assert received_params("default_rate_overall", {"min_cell_size": "RAW-VALUE", **LOAN_PARAMS}, limits) == {
        "params_unparsed": ["amount", "label", "min_cell_size", "positive"]}
    assert received_params("no_such_analysis", {"x" * 500: "RAW-VALUE"}, limits) == {"params_unparsed": ["x" * 128]}
    too_many = {f"p{i:03}": "RAW" for i in range(300)}
    assert received_params("default_rate_overall", too_many, limits) == {
        "params_unparsed": sorted(too_many)[:256]}


# ----- on real party processes ----------------------------------------------------------
MARKER = "RAW-REQUESTER-BYTES"
UNPARSED = "UNPARSED-REQUESTER-VALUE"
LIMITS = {"submits_per_minute": 3, "refusals_per_hour": 2, "param_bytes": 4096, "param_value_bytes": 1024,
          "param_count": 16}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    policies = {"bank_c": {"allowed_columns": {"default_rate_overall": ["creditability", "credit_amount",
                                                                       "duration_in_month", "purpose"]}}}
    c = Cluster(tmp_path_factory.mktemp("quotas"), limits=LIMITS, policies=policies)
    c.start()
    yield c
    codes = c.stop_all()
    assert all(code == 0 for code in codes.values()), codes


def submit(cluster, bank, identity, analysis="default_rate_overall", params=None, job_id=""):
    """The raw answer: (status, None) or (None, RpcError)."""
    with cluster.client(bank, identity) as client:
        request = _submit(params, analysis=analysis, job_id=job_id)
        client._sign(request)  # as JobClient.submit does: every party checks the requester's signature
        try:
            return client.stub.Submit(request, timeout=60, metadata=client.metadata), None
        except Exception as exc:  # noqa: BLE001 - the refusal is what the test looks at
            return None, exc


def test_refusals_are_rate_limited_per_requester(cluster):
    import grpc

    # two refusals: bank_c's policy refuses the column, then bank_a's the analysis
    status, _ = submit(cluster, "bank_a", "analyst", params={**LOAN_PARAMS, "amount": "age_in_years"})
    assert STATE_NAMES[status.state] == "refused" and status.error.party == "bank_c"
    status, _ = submit(cluster, "bank_a", "analyst", analysis="multi_lending")
    assert STATE_NAMES[status.state] == "refused" and status.error.party == "bank_a"
    # now every submission is refused alike, before any party looks at it or at its data:
    # one that would run and one that bank_c would refuse get the same answer
    answers = []
    for job_id, params in (("q-valid", LOAN_PARAMS), ("q-refusable", {**LOAN_PARAMS, "amount": "age_in_years"})):
        status, err = submit(cluster, "bank_a", "analyst", params=params, job_id=job_id)
        assert status is None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        answers.append(re.sub(r"another \d+ min", "another N min", err.details()))
    assert answers[0] == answers[1]
    assert answers[0] == ("bank_a: rate limit: 2 refusals within the last hour for analyst "
                          "(limits.refusals_per_hour = 2); new jobs are refused for another N min")
    for bank in BANKS:
        assert not [r for r in cluster.audit(bank) if r.get("job_id") in ("analyst/q-valid", "analyst/q-refusable")]
    quota = [r for r in cluster.audit("bank_a") if r["event"] == "quota_refused"]
    assert [(r["requester"], r["call"], r["limit"]) for r in quota] == [
        ("analyst", "Submit", "limits.refusals_per_hour")]
    # another requester is not limited by the analyst's refusals
    with cluster.client("bank_a", "bank_b") as client:  # bank_a's party holds the result as a recipient
        assert client.run("default_rate_overall", LOAN_PARAMS, recipients=["bank_a"])["rows"] == 1000


def test_submits_per_minute_and_oversize_parameters(cluster):
    import grpc

    size_cap = "RAW" + MARKER * 60  # over limits.param_value_bytes
    status, _ = submit(cluster, "bank_b", "bank_c", params={**LOAN_PARAMS, "label": size_cap}, job_id="big-1")
    assert STATE_NAMES[status.state] == "failed" and status.error.rule == "limits.param_value_bytes"
    assert status.error.message == ("bank_b refuses job bank_c/big-1: parameter 'label' has 1143 bytes, more than 1024 "
                                    "(rule limits.param_value_bytes)")
    many = {f"{MARKER}{i}": "x" for i in range(17)}
    status, _ = submit(cluster, "bank_b", "bank_c", params=many, job_id="big-2")
    assert status.error.rule == "limits.param_count" and MARKER not in status.error.message
    # the size refusals are no policy refusals (the refusal limit is 2) but are submissions:
    # this third one runs, the fourth is over limits.submits_per_minute = 3
    with cluster.client("bank_b", "bank_c") as client:  # bank_b's party holds the result as a recipient
        assert client.run("default_rate_overall", LOAN_PARAMS, recipients=["bank_b"])["rows"] == 1000
    status, err = submit(cluster, "bank_b", "bank_c", params=LOAN_PARAMS, job_id="rate-4")
    assert status is None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details().startswith("bank_b: rate limit: bank_c submitted 3 jobs within the last minute "
                                    "(limits.submits_per_minute = 3); try again in ")
    # nothing the requester wrote reached a log: the refusals name the limit and the job
    rejected = [r for r in cluster.audit("bank_b") if r["event"] == "job_rejected"]
    assert [(r["job_id"], r["rule"]) for r in rejected] == [("bank_c/big-1", "limits.param_value_bytes"),
                                                             ("bank_c/big-2", "limits.param_count")]
    for bank in BANKS:
        assert MARKER not in cluster.audit_path(bank).read_text()
        assert not [r for r in cluster.audit(bank) if r.get("job_id") == "bank_c/rate-4"]


def test_job_received_holds_parsed_parameters_only(cluster):
    with cluster.client("bank_c", "analyst") as client:
        job = client.submit("default_rate_overall", {**LOAN_PARAMS, "min_cell_size": "12"}, job_id="parsed")
        client.wait(job)
    for bank in BANKS:
        received = [r for r in cluster.audit(bank) if r["event"] == "job_received" and r["job_id"] == "analyst/parsed"]
        assert received[0]["params"] == {**LOAN_PARAMS, "min_cell_size": 12}
    # bank_c refuses parameters the analysis does not take before asking anyone: its log has
    # their names, as its refusal says, but never a value
    status, _ = submit(cluster, "bank_c", "analyst", params={**LOAN_PARAMS, "extra": UNPARSED}, job_id="unparsed")
    assert STATE_NAMES[status.state] == "failed" and status.error.rule == "params"
    received = [r for r in cluster.audit("bank_c")
                if r["event"] == "job_received" and r["job_id"] == "analyst/unparsed"]
    assert "params" not in received[0]
    assert received[0]["params_unparsed"] == ["amount", "extra", "label", "positive"]
    for bank in BANKS:
        assert UNPARSED not in cluster.audit_path(bank).read_text()
