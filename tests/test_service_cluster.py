"""Three real party processes on 127.0.0.1 with mutual TLS: jobs, policy, certificates,
malformed frames, cancellation and a party killed mid-job.

One cluster serves the whole module; the kill test runs last because it restarts a party.
"""

from __future__ import annotations

import grpc
import pytest
from service_harness import BANKS, COLUMNS, LOAN_PARAMS, Cluster, wait_for

from smpc import analyses
from smpc.errors import InputError, PartyUnavailable, PolicyError, SmpcError
from smpc.service.client import JobCancelled
from smpc.service.states import STATE_NAMES
from smpc.transport.grpc import MAX_FRAME_BYTES, channel_options
from smpc.v1 import peer_pb2, peer_pb2_grpc


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    broken = root / "bank_b_broken.csv"
    # the join analyses treat 'purpose' as a customer id: enough to see where results are held
    joins = {"multi_lending": ["purpose", "credit_amount"], "blacklist_hits": ["purpose"]}
    policies = {
        "bank_a": {"allowed_columns": {"default_rate_overall": list(COLUMNS), **joins}},
        "bank_b": {"allowed_columns": {"default_rate_overall": list(COLUMNS), **joins}},
        # bank_c never lets age_in_years into this analysis
        "bank_c": {"allowed_columns": {"default_rate_overall": ["creditability", "credit_amount", "duration_in_month",
                                                               "purpose"], **joins}},
    }
    c = Cluster(root, policies=policies, extra_allowed=("test_endless_rounds", *joins),
                extra_sources={b: {"broken": (str(broken) if b == "bank_b" else f"data/{b}_loans.csv",
                                              {"creditability": "str", "purpose": "str"})} for b in BANKS})
    frame = c.tables["bank_b"].copy()
    frame.loc[7, "creditability"] = ""  # an empty label in bank_b's 8th row
    frame.to_csv(broken, index=False)
    c.start()
    yield c
    codes = c.stop_all()
    assert all(code == 0 for code in codes.values()), codes


def job_state(cluster, bank, job_id, identity="bank_a"):
    with cluster.client(bank, identity) as client:
        return STATE_NAMES[client.get(job_id).state]


def follow(cluster, bank, job_id, identity="bank_a"):
    """Block on the party's event stream until the job ends; return its final status."""
    with cluster.client(bank, identity) as client:
        for _ in client.events(job_id, timeout=120):
            pass
        return client.get(job_id)



def job_threads(cluster, bank):
    with cluster.client(bank) as client:
        return client.info().job_threads


# ----- a real job -----------------------------------------------------------------------
def test_job_across_three_processes_matches_simulate_and_plaintext(cluster):
    analysis = analyses.get("default_rate_overall")
    params = dict(LOAN_PARAMS)
    expected_sim = analysis.run_simulated(cluster.tables, **params, min_cell_size=10)
    expected_plain = analysis.run_plaintext(cluster.tables, **params, min_cell_size=10)
    events = []
    with cluster.client("bank_b", identity="bank_a") as client:  # submit to rank 1, not the first party
        result = client.run("default_rate_overall", params, on_event=events.append, job_id="job-first",
                            recipients=["bank_b"])  # bank_b's party receives the result, to hand it out
    job_id = "bank_a/job-first"  # ids are namespaced by the requester
    assert result == expected_sim == expected_plain
    assert result["rows"] == 1000 and result["defaults"] == 300 and result["amount_sum"] == 3271258.0
    states = [STATE_NAMES[e.state] for e in events]
    assert states[0] == "prepared" and "running" in states and states[-1] == "succeeded"
    seen = [(STATE_NAMES[e.state], e.progress, e.stage, e.party) for e in events]
    assert any(0 < e.progress < 1 for e in events), seen
    for bank in BANKS:
        assert STATE_NAMES[follow(cluster, bank, job_id).state] == "succeeded"  # every party is done
        recs = cluster.records(bank, job_id)
        kinds = [r["event"] for r in recs]
        assert kinds[:2] == ["job_received", "policy_decision"], kinds
        received = recs[0]  # every party checked bank_a's own signature, and says so
        assert received["requester"] == received["signer"] == "bank_a" and received["signer_role"] == "party"
        assert len(received["signature_sha256"]) == 64
        used = next(r for r in recs if r["event"] == "inputs_used")
        assert used["source"] == "loans" and used["columns"] == ["creditability", "credit_amount"]
        assert used["rows"] == len(cluster.tables[bank])
        # told to this bank's own log only: the two columns repeat often in German credit
        expected = int(cluster.tables[bank][["creditability", "credit_amount"]].duplicated().sum())
        assert used["duplicate_rows"] == expected and expected > 0
        finished = next(r for r in recs if r["event"] == "job_finished")
        assert finished["state"] == "succeeded" and finished["bytes_sent"] > 0 and finished["rounds"] > 0
        # the policy's minimum cell size was enforced at every party
        assert next(r for r in recs if r["event"] == "job_started")["params"]["min_cell_size"] == 10
    assert len({cluster.records(b, job_id)[0]["signature_sha256"] for b in BANKS}) == 1
    released = [r for r in cluster.records("bank_b", job_id) if r["event"] == "outputs_released"]
    assert [r["to"] for r in released] == ["bank_a"]
    # the result was opened to the requester's party only: the others hold nothing to hand out
    with cluster.client("bank_c", identity="bank_a") as client:
        assert client.result("job-first") == {} == client.result(job_id)  # a bare id is the caller's own
    # another identity learns nothing, not even that the job exists: the answer to a job it may
    # not see is the answer to a job that does not exist
    with cluster.client("bank_c", identity="analyst") as client:
        answers = []
        for probe in (job_id, "bank_a/no-such-job"):
            with pytest.raises(SmpcError) as info:
                client.get(probe)
            answers.append(str(info.value).replace(probe, "ID"))
            with pytest.raises(SmpcError) as info:
                list(client.events(probe, timeout=30))
            answers.append(str(info.value).replace(probe, "ID"))
            with pytest.raises(SmpcError) as info:
                client.cancel(probe)
            answers.append(str(info.value).replace(probe, "ID"))
    assert len(set(answers)) == 1 and "no job 'ID' that analyst may see" in answers[0], answers


def test_the_job_cli_submits_and_prints_the_result(cluster, capsys):
    import json

    from smpc import cli

    tls = [f"--{k}={v}" for k, v in cluster.cert_args("bank_a").items()]
    args = ["job", "submit", "--to", cluster.address("bank_c"), *tls, "--recipient", "bank_c", "--json",
            "default_rate_overall",
            "--param", "label=creditability", "--param", "positive=bad", "--param", "amount=credit_amount"]
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["defaults"] == 300
    assert "[bank_c] succeeded" in captured.err  # the progress lines
    refused = args[:-2] + ["--param", "amount=age_in_years"]
    assert cli.main(refused) == cli.EXIT_REFUSED
    assert "refused: bank_c refuses job" in capsys.readouterr().err
    assert cli.main(["job", "submit", "--to", cluster.address("bank_a"), *tls, "--job-id", "job-cli", "--no-wait",
                     "--recipient", "bank_b", "default_rate_overall", "--param", "label=creditability",
                     "--param", "positive=bad"]) == 0
    assert capsys.readouterr().out.strip() == "bank_a/job-cli"  # the id, in the requester's namespace
    assert cli.main(["job", "watch", "--to", cluster.address("bank_a"), *tls, "--json", "bank_a/job-cli"]) == 0
    watched = capsys.readouterr().out  # progress lines, then the result as JSON
    assert "[bank_a] succeeded" in watched and json.loads(watched[watched.index("\n{") + 1:])["defaults"] == 300
    assert cli.main(["job", "get", "--to", cluster.address("bank_b"), *tls, "job-cli"]) == 0  # a bare id: mine
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "JOB_STATE_SUCCEEDED" and json.loads(status["result_json"])["rows"] == 1000
    assert status["job_id"] == "bank_a/job-cli"
    assert cli.main(["job", "analyses", "--to", cluster.address("bank_c"), *tls]) == 0
    listing = capsys.readouterr().out
    assert "default_rate_overall:" in listing and "Leakage:" in listing and "label (column, required)" in listing


def test_health_and_reflection_are_served(cluster):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with _peer_channel(cluster, "bank_a", "analyst") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "smpc.v1.JobService", "smpc.v1.PartyPeer"):
            status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {"smpc.v1.JobService", "smpc.v1.PartyPeer", "grpc.health.v1.Health"} <= services


def test_concurrent_jobs_through_different_parties(cluster):
    from concurrent.futures import ThreadPoolExecutor

    def run(bank):
        with cluster.client(bank, identity=bank) as client:
            return client.run("default_rate_overall", LOAN_PARAMS)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, BANKS))
    assert results[0] == results[1] == results[2] and results[0]["defaults"] == 300


def test_replayed_job_id_is_refused(cluster):
    with cluster.client("bank_a") as client:
        client.run("default_rate_overall", LOAN_PARAMS, job_id="job-replayed")
    for coordinator in ("bank_a", "bank_c"):  # the same party again, or another one
        with cluster.client(coordinator) as client:
            with pytest.raises(PolicyError, match="job id was used before"):
                client.submit("default_rate_overall", LOAN_PARAMS, job_id="job-replayed")
        assert any(r["event"] == "job_replay_refused" for r in cluster.records(coordinator, "bank_a/job-replayed"))
    for bank in BANKS:  # ran once, everywhere
        assert [r["event"] for r in cluster.records(bank, "bank_a/job-replayed")].count("job_started") == 1


# ----- refusals: nothing computed, every audit log knows ---------------------------------
def test_policy_refusal_names_party_and_rule_and_is_audited_everywhere(cluster):
    params = {"label": "creditability", "positive": "bad", "amount": "age_in_years"}
    with cluster.client("bank_a") as client:
        with pytest.raises(PolicyError) as info:
            client.submit("default_rate_overall", params, job_id="job-refused")
        status = client.get("job-refused")
    assert "bank_c" in str(info.value) and "policy.allowed_columns.default_rate_overall" in str(info.value)
    assert info.value.party == "bank_c" and info.value.rule == "policy.allowed_columns.default_rate_overall"
    assert STATE_NAMES[status.state] == "refused"
    job_id = "bank_a/job-refused"
    for bank in BANKS:
        kinds = [r["event"] for r in cluster.records(bank, job_id)]
        assert "job_started" not in kinds and "inputs_used" not in kinds, (bank, kinds)
        if bank == "bank_c":
            decision = next(r for r in cluster.records(bank, job_id) if r["event"] == "policy_decision")
            assert decision["decision"] == "refuse"
            assert decision["rule"] == "policy.allowed_columns.default_rate_overall"
        else:  # 'by' is who this party heard it from: bank_c itself at the coordinator, else the coordinator
            refused = next(r for r in cluster.records(bank, job_id) if r["event"] == "job_refused")
            assert refused["by"] == ("bank_c" if bank == "bank_a" else "bank_a")
            assert bank == "bank_a" or refused["reported_party"] == "bank_c"
        assert job_state(cluster, bank, "job-refused") == "refused"


def test_refusal_by_the_coordinator_itself_is_audited_everywhere(cluster):
    # 'outsider' holds a certificate of the consortium CA, but no policy lets it receive results
    with cluster.client("bank_b", identity="outsider") as client:
        with pytest.raises(PolicyError, match="policy.allowed_recipients"):
            client.submit("default_rate_overall", LOAN_PARAMS, job_id="job-outsider")
    for bank in BANKS:
        kinds = [r["event"] for r in cluster.records(bank, "outsider/job-outsider")]
        assert ("policy_decision" if bank == "bank_b" else "job_refused") in kinds, (bank, kinds)
        assert "inputs_used" not in kinds


def test_bad_input_is_refused_before_any_share_moves(cluster):
    params = {"label": "creditability", "positive": "bad"}
    with cluster.client("bank_a") as client:
        with pytest.raises(InputError) as info:
            client.submit("default_rate_overall", params, source="broken", job_id="job-broken")
    # the requester hears which bank and which rule; the row and column stay at bank_b
    assert str(info.value) == ("bank_b refuses job bank_a/job-broken: its data does not match its declared schema "
                               "(rule data.schema)")
    decision = next(r for r in cluster.records("bank_b", "bank_a/job-broken") if r["event"] == "policy_decision")
    assert "creditability" in decision["detail"] and "row 8 is empty" in decision["detail"]
    assert "row 8 is empty" in cluster.log("bank_b")
    for bank in BANKS:
        assert "inputs_used" not in [r["event"] for r in cluster.records(bank, "bank_a/job-broken")]
        if bank != "bank_b":
            assert "row 8" not in str(cluster.records(bank, "bank_a/job-broken"))


# ----- certificates ---------------------------------------------------------------------
def test_certificate_of_another_ca_is_refused_at_tls(cluster, tmp_path):
    from smpc.service.client import JobClient
    from smpc.service.pki import init_certs

    init_certs(BANKS, tmp_path / "rogue")  # same names, another CA
    rogue = {"ca": cluster.certs / "ca.pem", "cert": tmp_path / "rogue" / "bank_a.pem",
             "key": tmp_path / "rogue" / "bank_a.key"}
    with JobClient(cluster.address("bank_a"), **rogue, timeout=10) as client:
        with pytest.raises(PartyUnavailable, match="UNAVAILABLE"):
            client.submit("default_rate_overall", LOAN_PARAMS)
    # a client that trusts another CA does not accept the party's certificate either
    fake = {"ca": tmp_path / "rogue" / "ca.pem", "cert": tmp_path / "rogue" / "bank_a.pem",
            "key": tmp_path / "rogue" / "bank_a.key"}
    with JobClient(cluster.address("bank_a"), **fake, timeout=10) as client:
        with pytest.raises(PartyUnavailable):
            client.info()
    with cluster.client("bank_a") as client:
        assert client.health() == "SERVING"


def test_wrong_identity_is_refused(cluster):
    # a party certificate pinned to the wrong name: bank_a's port does not present 'bank_b'
    from smpc.service.client import JobClient

    with JobClient(cluster.address("bank_a"), server_identity="bank_b", **cluster.cert_args("bank_a"),
                   timeout=10) as client:
        with pytest.raises(PartyUnavailable):
            client.info()
    # a client of the right CA that is not a configured peer cannot use the peer service
    with _peer_channel(cluster, "bank_b", "analyst") as channel:
        stub = peer_pb2_grpc.PartyPeerStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Prepare(peer_pb2.PrepareRequest(spec=peer_pb2.JobSpec(job_id="x", coordinator="analyst")),
                         timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # a real peer that claims to be another party in its HELLO
    with _peer_channel(cluster, "bank_c", "bank_b") as channel:
        code, details = _exchange(channel, [peer_pb2.Frame(kind=peer_pb2.Frame.HELLO, job_id="x", party="bank_a")])
        assert code == grpc.StatusCode.PERMISSION_DENIED and "bank_b" in details


# ----- malformed and oversized frames -----------------------------------------------------
def _peer_channel(cluster, bank, identity):
    from smpc.transport.grpc import secure_channel

    args = cluster.cert_args(identity)
    return secure_channel(cluster.address(bank), *(p.read_bytes() for p in (args["ca"], args["cert"], args["key"])),
                          identity=bank)


def _exchange(channel, frames, serializer=None):
    """Send raw frames on a new Exchange stream; the status code and details it ends with."""
    method = channel.stream_stream(
        "/smpc.v1.PartyPeer/Exchange",
        request_serializer=serializer or peer_pb2.Frame.SerializeToString,
        response_deserializer=peer_pb2.Frame.FromString,
    )
    call = method(iter(frames), timeout=30)
    try:
        for _ in call:
            pass
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return call.code(), call.details() or ""


def test_malformed_or_oversized_frames_close_the_stream_and_the_server_keeps_serving(cluster):
    with _peer_channel(cluster, "bank_b", "bank_a") as channel:
        code, _ = _exchange(channel, [b"\xff\xff\xff\xff not a frame"], serializer=lambda b: b)
        assert code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INVALID_ARGUMENT)
        code, details = _exchange(channel, [peer_pb2.Frame(kind=peer_pb2.Frame.DATA, job_id="x", tag="t")])
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "HELLO" in details
        code, _ = _exchange(channel, [peer_pb2.Frame(kind=peer_pb2.Frame.HELLO, job_id="no-such-job",
                                                     party="bank_a")])
        assert code == grpc.StatusCode.NOT_FOUND
    # bigger than the frame limit: refused by gRPC before it is parsed
    options = channel_options(max_frame_bytes=4 * MAX_FRAME_BYTES)
    args = cluster.cert_args("bank_a")
    creds = grpc.ssl_channel_credentials(*(args[k].read_bytes() for k in ("ca", "key", "cert")))
    with grpc.secure_channel(cluster.address("bank_b"), creds,
                             options=options + [("grpc.ssl_target_name_override", "bank_b")]) as channel:
        big = peer_pb2.Frame(kind=peer_pb2.Frame.HELLO, job_id="x", party="bank_a",
                             payload=b"\0" * (2 * MAX_FRAME_BYTES))
        code, _ = _exchange(channel, [big])
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    with cluster.client("bank_b") as client:
        assert client.health() == "SERVING"
        assert client.run("default_rate_overall", LOAN_PARAMS, recipients=["bank_b"])["rows"] == 1000


def test_the_submit_example_runs_against_the_services(cluster):
    import subprocess
    import sys

    from service_harness import ROOT

    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "submit_job.py"), "--to", cluster.address("bank_b"), "--as", "bank_a",
         "--certs", str(cluster.certs)], capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "default_rate   0.3" in out.stdout and "refused as expected: bank_c refuses" in out.stdout


# ----- results held at the caller's own party --------------------------------------------
ML_PARAMS = ["--param", "id=purpose", "--param", "balance=credit_amount", "--param", "balance_threshold=1e9",
             "--param", "min_lenders=3"]


def test_job_cli_says_where_a_per_bank_result_is_held(cluster, capsys):
    import json

    from smpc import cli

    tls = [f"--{k}={v}" for k, v in cluster.cert_args("bank_a").items()]
    # bank_a asks bank_b: multi_lending's result for bank_a is opened at bank_a's party only
    args = ["job", "submit", "--to", cluster.address("bank_b"), *tls, "--quiet", "--json", "--job-id", "job-ml-b",
            "multi_lending", *ML_PARAMS]
    assert cli.main(args) == 0  # the job succeeded: an empty result is not a failure
    out, err = capsys.readouterr()
    assert json.loads(out) == {}
    assert "note: bank_b holds no result of job bank_a/job-ml-b for bank_a" in err
    hint = f"smpc job get --to ADDRESS_OF_bank_a {' '.join(tls).replace('=', ' ')} bank_a/job-ml-b"
    assert hint in err, err
    # at bank_a's own party the same job has bank_a's part, and nothing is noted
    assert cli.main(["job", "get", "--to", cluster.address("bank_a"), *tls, "job-ml-b"]) == 0
    out, err = capsys.readouterr()
    assert "bank_a" in json.loads(json.loads(out)["result_json"])["by_bank"] and "note:" not in err
    # blacklist_hits reveals its result to the requesting bank's party alone
    assert cli.main(["job", "submit", "--to", cluster.address("bank_c"), *tls, "--quiet", "--job-id", "job-bl-c",
                     "blacklist_hits", "--param", "id=purpose"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "note: bank_c holds no result of job bank_a/job-bl-c for bank_a" in err
    assert "smpc job get --to ADDRESS_OF_bank_a" in err
    assert cli.main(["job", "get", "--to", cluster.address("bank_b"), *tls, "job-bl-c"]) == 0
    assert "note: bank_b holds no result of job bank_a/job-bl-c" in capsys.readouterr().err
    assert cli.main(["job", "watch", "--to", cluster.address("bank_a"), *tls, "job-bl-c"]) == 0
    out, err = capsys.readouterr()
    assert "hits" in out and "note:" not in err


def test_tls_failures_say_to_check_the_ca_and_certificate(cluster, tmp_path):
    from smpc.service.client import JobClient
    from smpc.service.pki import init_certs

    init_certs(BANKS, tmp_path / "rogue")
    rogue = tmp_path / "rogue"
    hint = "check that --ca is the consortium CA and --cert/--key were issued by it"
    # the party refuses a certificate of another CA
    with JobClient(cluster.address("bank_a"), ca=cluster.certs / "ca.pem", cert=rogue / "bank_a.pem",
                   key=rogue / "bank_a.key", timeout=10) as client:
        with pytest.raises(PartyUnavailable, match=hint) as info:
            client.info()
    assert cluster.address("bank_a") in str(info.value)
    # the client does not trust the party's certificate
    with JobClient(cluster.address("bank_a"), ca=rogue / "ca.pem", cert=rogue / "bank_a.pem",
                   key=rogue / "bank_a.key", timeout=10) as client:
        with pytest.raises(PartyUnavailable, match="the TLS handshake failed: " + hint):
            client.info()
    # the party's certificate is of the CA but not for the pinned name
    with JobClient(cluster.address("bank_a"), server_identity="bank_b", **cluster.cert_args("bank_a"),
                   timeout=10) as client:
        with pytest.raises(PartyUnavailable, match="not for the identity pinned by --server-name"):
            client.info()


# ----- cancellation -----------------------------------------------------------------------
def _wait_running(cluster, bank, job_id):
    """Block on the event stream until the job has made progress (it is exchanging rounds)."""
    with cluster.client(bank) as client:
        for event in client.events(job_id, timeout=120):
            if event.progress > 0 and STATE_NAMES[event.state] == "running":
                return
    raise AssertionError(f"job {job_id} ended before it made progress")


def test_cancel_stops_the_job_on_every_party(cluster):
    with cluster.client("bank_c") as client:
        job_id = client.submit("test_endless_rounds", {}, job_id="job-cancel")
    _wait_running(cluster, "bank_a", job_id)
    with cluster.client("bank_b") as client:  # cancel through another party than the coordinator
        client.cancel(job_id)
    for bank in BANKS:
        status = follow(cluster, bank, job_id)
        assert STATE_NAMES[status.state] == "cancelled", (bank, status)
        wait_for(lambda b=bank: job_threads(cluster, b) == 0, what=f"{bank}'s job threads to end")
    with cluster.client("bank_c") as client:
        with pytest.raises(JobCancelled):
            client.result(job_id)
    for bank in BANKS:
        recs = cluster.records(bank, job_id)
        assert [r["event"] for r in recs].count("job_cancelled") == 1
        assert next(r for r in recs if r["event"] == "job_finished")["state"] == "cancelled"


# ----- a party dies mid-job (runs last: it restarts bank_c) -------------------------------
def test_killed_party_aborts_the_job_everywhere_and_the_next_job_succeeds(cluster):
    with cluster.client("bank_a") as client:
        job_id = client.submit("test_endless_rounds", {}, job_id="job-kill")
    _wait_running(cluster, "bank_b", job_id)
    cluster.kill("bank_c")
    for bank in ("bank_a", "bank_b"):
        status = follow(cluster, bank, job_id)
        assert STATE_NAMES[status.state] == "failed", (bank, status)
        assert status.error.type in ("PartyUnavailable", "ProtocolTimeout")
        assert status.error.party == "bank_c" and "bank_c" in status.error.message
        with cluster.client(bank) as client:
            assert client.health() == "SERVING"
        wait_for(lambda b=bank: job_threads(cluster, b) == 0, what=f"{bank}'s job threads to end")
        finished = next(r for r in cluster.records(bank, job_id) if r["event"] == "job_finished")
        assert finished["state"] == "failed" and "bank_c" in finished["error"]
    with cluster.client("bank_a") as client, pytest.raises(PartyUnavailable, match="bank_c"):
        client.result(job_id)
    cluster.start("bank_c")
    with cluster.client("bank_c") as client:
        result = client.run("default_rate_overall", LOAN_PARAMS, recipients=["bank_c"])
    assert result == analyses.get("default_rate_overall").run_plaintext(cluster.tables, **LOAN_PARAMS,
                                                                         min_cell_size=10)
    for bank in BANKS:
        wait_for(lambda b=bank: job_threads(cluster, b) == 0, what=f"{bank}'s job threads to end")
