"""Attacks on who is who, run against real party processes (mutual TLS on 127.0.0.1):

- a compute-party operator forges a job in another member's name (no signature, its own
  signature, an altered or stale one, a captured one replayed under its own TLS identity);
- a client certificate named like a compute party calls the peer service;
- a peer cancels in another party's name, with a 200 KB reason, or for jobs that do not exist;
- an identity takes another member's job id;
- a revoked certificate keeps calling; a pinned peer presents another certificate.

Each test fails if its attack works again.
"""

from __future__ import annotations

import stat
import time

import grpc
import pytest
from service_harness import BANKS, LOAN_PARAMS, Cluster, smpc_cli, wait_for

from smpc.errors import PolicyError, SmpcError
from smpc.service.client import JobClient
from smpc.service.identity import identity_of, load_certificate, load_private_key, sign, spec_payload
from smpc.service.pki import _pem_cert, _pem_key, init_certs, issue, load_ca
from smpc.service.states import STATE_NAMES
from smpc.transport.grpc import secure_channel
from smpc.v1 import jobs_pb2, peer_pb2, peer_pb2_grpc


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("identity"), crl=True)
    # a client certificate of the consortium CA that carries a compute party's name
    ca_key, ca_cert = load_ca(c.certs / "ca")
    key, cert = issue(ca_key, ca_cert, "bank_b", server=False)
    (c.certs / "client_bank_b.pem").write_bytes(_pem_cert(cert))
    (c.certs / "client_bank_b.key").write_bytes(_pem_key(key))
    c.start()
    yield c
    codes = c.stop_all()
    assert all(code == 0 for code in codes.values()), codes



def job_threads(cluster, bank):
    with cluster.client(bank) as client:
        return client.info().job_threads


def wait_running(cluster, bank, job_id):
    """Block on the event stream until the job exchanges rounds at ``bank``."""
    with cluster.client(bank) as client:
        for event in client.events(job_id, timeout=120):
            if event.progress > 0 and STATE_NAMES[event.state] == "running":
                return
    raise AssertionError(f"job {job_id} ended before it made progress at {bank}")


def channel(cluster, bank, holder):
    """A TLS channel to ``bank``'s port with the certificate files ``certs/HOLDER.pem/.key``."""
    certs = cluster.certs
    return secure_channel(cluster.address(bank), (certs / "ca.pem").read_bytes(),
                          (certs / f"{holder}.pem").read_bytes(), (certs / f"{holder}.key").read_bytes(),
                          identity=bank)


def signed_spec(cluster, signer, job_id, requester, coordinator, params=None, signed_at=None, cert_of=None):
    """A JobSpec as a coordinator forwards it, signed with ``signer``'s key."""
    params = dict(LOAN_PARAMS if params is None else params)
    signed_at = int(time.time()) if signed_at is None else signed_at
    payload = spec_payload(job_id, "default_rate_overall", params, "", [requester], requester, signed_at)
    key = load_private_key((cluster.certs / f"{signer}.key").read_bytes())
    return peer_pb2.JobSpec(
        job_id=job_id, analysis="default_rate_overall", params=params, source="loans", requester=requester,
        recipients=[requester], coordinator=coordinator, parties=BANKS, signature=sign(key, payload),
        certificate_pem=(cluster.certs / f"{cert_of or signer}.pem").read_text(), signed_at=signed_at,
    )


# ----- a forged requester ------------------------------------------------------------------------
def test_a_compute_party_cannot_run_a_job_in_another_members_name(cluster):
    """bank_b's operator, with bank_b's real party certificate, asks bank_a to prepare a job
    "requested by bank_c". Every variant is refused before the job id is taken, and the job
    bank_c really asks for later runs under bank_c's verified signature at every party."""
    job_id = "bank_c/forged"
    unsigned = peer_pb2.JobSpec(job_id=job_id, analysis="default_rate_overall", params=LOAN_PARAMS, source="loans",
                                requester="bank_c", recipients=["bank_c"], coordinator="bank_b", parties=BANKS)
    tampered = signed_spec(cluster, "bank_c", job_id, "bank_c", "bank_b")  # bank_c's key, as if captured earlier
    tampered.params["amount"] = "age_in_years"
    forgeries = {
        "no signature": unsigned,
        "bank_b's own signature": signed_spec(cluster, "bank_b", job_id, "bank_c", "bank_b"),
        "bank_b's key, bank_c's certificate": signed_spec(cluster, "bank_b", job_id, "bank_c", "bank_b",
                                                          cert_of="bank_c"),
        "altered parameters": tampered,
        "an hour old": signed_spec(cluster, "bank_c", job_id, "bank_c", "bank_b", signed_at=int(time.time()) - 3600),
    }
    with channel(cluster, "bank_a", "bank_b") as ch:
        stub = peer_pb2_grpc.PartyPeerStub(ch)
        for what, spec in forgeries.items():
            answer = stub.Prepare(peer_pb2.PrepareRequest(spec=spec), timeout=30)
            assert not answer.accepted and answer.rule == "requester.signature", (what, answer)
        assert not stub.Start(peer_pb2.StartRequest(job_id=job_id, min_cell_size=10), timeout=30).ok
    kinds = [r["event"] for r in cluster.records("bank_a", job_id)]
    assert kinds == ["job_rejected"] * len(forgeries), kinds  # nothing received, decided or started
    assert all(r["coordinator"] == "bank_b" for r in cluster.records("bank_a", job_id))

    # the same through the job service: bank_b's TLS identity with bank_c's genuine signed request
    now = int(time.time())
    payload = spec_payload(job_id, "default_rate_overall", LOAN_PARAMS, "", ["bank_c"], "bank_c", now)
    captured = jobs_pb2.SubmitRequest(
        job_id="forged", analysis="default_rate_overall", params=LOAN_PARAMS, recipients=["bank_c"],
        signature=sign(load_private_key((cluster.certs / "bank_c.key").read_bytes()), payload),
        certificate_pem=(cluster.certs / "bank_c.pem").read_text(), signed_at=now)
    with cluster.client("bank_a", identity="bank_b") as client:
        status = client._call("Submit", captured)
    assert STATE_NAMES[status.state] == "refused" and status.error.rule == "requester.signature"
    assert "signed by party 'bank_c', not by its requester 'bank_b'" in status.error.message
    assert not [r for b in BANKS for r in cluster.records(b, job_id) if r["event"] == "job_received"]

    # bank_c's own job of that id was never taken: it runs, and every party records who signed it
    with cluster.client("bank_c", identity="bank_c") as client:  # results open at the recipient's party
        assert client.run("default_rate_overall", LOAN_PARAMS, job_id="forged")["defaults"] == 300
    received = [next(r for r in cluster.records(b, job_id) if r["event"] == "job_received") for b in BANKS]
    assert all(r["requester"] == r["signer"] == "bank_c" and r["signer_role"] == "party" for r in received)
    assert len({r["signature_sha256"] for r in received}) == 1 and len({r["signer_cert"] for r in received}) == 1
    # and every later record of the job, at every party, carries the same signature's hash
    signature = received[0]["signature_sha256"]
    for b in BANKS:
        later = [r for r in cluster.records(b, job_id) if r["event"] != "job_rejected"]
        assert {r["event"] for r in later} >= {"job_received", "policy_decision", "job_started", "job_finished"}
        assert all(r.get("signature_sha256") == signature for r in later), (b, later)


# ----- roles -------------------------------------------------------------------------------------
def test_a_client_certificate_named_like_a_compute_party_cannot_act_as_one(cluster):
    with cluster.client("bank_a", identity="bank_a") as client:
        job_id = client.submit("test_endless_rounds", {}, job_id="role-victim")
    for bank in BANKS:
        wait_running(cluster, bank, job_id)
    before = {b: len(cluster.audit(b)) for b in BANKS}
    spec = signed_spec(cluster, "client_bank_b", "bank_b/role", "bank_b", "bank_b", cert_of="client_bank_b")
    for target in ("bank_a", "bank_c"):
        with channel(cluster, target, "client_bank_b") as ch:
            stub = peer_pb2_grpc.PartyPeerStub(ch)
            hello = peer_pb2.Frame(kind=peer_pb2.Frame.HELLO, job_id=job_id, party="bank_b")
            calls = {
                "Prepare": (stub.Prepare, peer_pb2.PrepareRequest(spec=spec)),
                "Start": (stub.Start, peer_pb2.StartRequest(job_id=job_id, min_cell_size=1)),
                "Cancel": (stub.Cancel, peer_pb2.PeerCancelRequest(job_id=job_id, why="refused", party="bank_c",
                                                                   reason="refused")),
                "Exchange": (lambda frames, s=stub, **kw: list(s.Exchange(frames, **kw)), iter([hello])),
            }
            for name, (method, request) in calls.items():
                with pytest.raises(grpc.RpcError) as info:
                    method(request, timeout=30)
                assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, name
                assert "client 'bank_b'" in info.value.details(), name
    assert {b: len(cluster.audit(b)) for b in BANKS} == before  # not one record written
    for bank in BANKS:  # the job runs on, untouched
        with cluster.client(bank) as client:
            assert STATE_NAMES[client.get(job_id).state] == "running"
    # as bank_b's client it is still bank_b to the job service: its jobs are bank_b's own
    with JobClient(cluster.address("bank_c"), ca=cluster.certs / "ca.pem", cert=cluster.certs / "client_bank_b.pem",
                   key=cluster.certs / "client_bank_b.key", server_identity="bank_c") as client:
        status = client.submit_status("default_rate_overall", LOAN_PARAMS, job_id="as-client")
        assert status.job_id == "bank_b/as-client" and status.requester == "bank_b"
        client.wait(status.job_id, timeout=120)
    with cluster.client("bank_a") as client:
        client.cancel(job_id)


# ----- peer Cancel ----------------------------------------------------------------------------------
def test_a_peer_cannot_cancel_in_another_partys_name_and_its_reasons_are_capped(cluster):
    with cluster.client("bank_a") as client:
        job_id = client.submit("test_endless_rounds", {}, job_id="cancel-victim")
    for bank in BANKS:
        wait_running(cluster, bank, job_id)
    huge = "refused\n" + "x\x1b[31m" * 50_000  # 200 KB with newlines and terminal escapes
    with channel(cluster, "bank_b", "bank_c") as ch:
        stub = peer_pb2_grpc.PartyPeerStub(ch)
        before = len(cluster.audit("bank_b"))
        # jobs bank_b does not have: nothing recorded, not ok
        for bogus in ("bank_a/no-such-job", "z" * 200_000):
            ack = stub.Cancel(peer_pb2.PeerCancelRequest(job_id=bogus, why="cancelled", reason=huge), timeout=30)
            assert not ack.ok and len(ack.message) < 1000
        assert len(cluster.audit("bank_b")) == before
        # bank_c says the running job was refused by bank_a: it is stopped as bank_c's cancellation
        ack = stub.Cancel(peer_pb2.PeerCancelRequest(job_id=job_id, why="refused", party="bank_a", rule="r\n" * 1000,
                                                     error_type="PolicyError", reason=huge), timeout=30)
        assert ack.ok
    for bank in BANKS:
        with cluster.client(bank) as client:
            for _ in client.events(job_id, timeout=120):
                pass
            assert STATE_NAMES[client.get(job_id).state] == "cancelled"
    cancelled = next(r for r in cluster.records("bank_b", job_id) if r["event"] == "job_cancelled")
    assert cancelled["by"] == "bank_c"  # the authenticated caller, whatever the request said
    assert len(cancelled["reason"]) <= 500 and cancelled["reason"].isprintable()
    assert not [r for r in cluster.records("bank_b", job_id) if r["event"] == "job_refused"]
    line = next(ln for ln in cluster.audit_path("bank_b").read_text().splitlines() if '"job_cancelled"' in ln
                and job_id in ln)
    assert len(line) < 2000
    wait_for(lambda: all(job_threads(cluster, b) == 0 for b in BANKS), what="job threads to end")


# ----- job ids ---------------------------------------------------------------------------------------
def test_no_identity_can_take_another_members_job_id(cluster):
    with cluster.client("bank_b", identity="analyst") as client:
        with pytest.raises(SmpcError, match="in 'bank_a''s namespace"):
            client.submit("default_rate_overall", LOAN_PARAMS, job_id="bank_a/payday")
        squatter = client.submit("default_rate_overall", LOAN_PARAMS, job_id="payday")  # its own namespace
        assert squatter == "analyst/payday"
    # a peer preparing bank_a's id without bank_a's signature does not reserve it either
    spec = signed_spec(cluster, "bank_b", "bank_a/payday", "bank_a", "bank_b")
    with channel(cluster, "bank_c", "bank_b") as ch:
        assert not peer_pb2_grpc.PartyPeerStub(ch).Prepare(peer_pb2.PrepareRequest(spec=spec), timeout=30).accepted
    with cluster.client("bank_a", identity="bank_a") as client:  # results open at the recipient's party
        assert client.submit("default_rate_overall", LOAN_PARAMS, job_id="payday") == "bank_a/payday"
        assert client.wait("payday", timeout=120)["defaults"] == 300
        with pytest.raises(PolicyError, match="used before"):  # a replay of the owner's own id is still refused
            client.submit("default_rate_overall", LOAN_PARAMS, job_id="payday")


# ----- revocation (runs last in this module: it revokes 'outsider') ----------------------------------
def test_a_revoked_certificate_is_refused_from_the_next_call_on(cluster):
    with cluster.client("bank_a", identity="outsider") as client:
        assert client.info().party == "bank_a"
        smpc_cli("certs", "revoke", "--ca-dir", str(cluster.certs / "ca"), "--crl", str(cluster.certs / "ca.crl"),
                 "--cert", str(cluster.certs / "outsider.pem"), env=cluster.env())
        for bank in BANKS:  # every party re-reads the list; no restart
            with cluster.client(bank, identity="outsider") as other:
                with pytest.raises(PolicyError, match="is revoked"):
                    other.info()
    with cluster.client("bank_a", identity="analyst") as client:  # others are unaffected
        assert client.info().party == "bank_a"


# ----- without the cluster ------------------------------------------------------------------------
def test_a_pinned_peer_must_present_the_pinned_certificate(tmp_path):
    from smpc.service.config import load_config
    from smpc.service.server import PartyServer

    c = Cluster(tmp_path, certs_by_cli=False)
    ca_key, ca_cert = load_ca(c.certs / "ca")
    key, cert = issue(ca_key, ca_cert, "bank_b")  # a second, valid party certificate for bank_b
    (c.certs / "bank_b2.pem").write_bytes(_pem_cert(cert))
    (c.certs / "bank_b2.key").write_bytes(_pem_key(key))
    real = identity_of(load_certificate((c.certs / "bank_b.pem").read_bytes())).fingerprint
    c.pins = {"bank_a": {"bank_b": real}}
    c._write_configs()
    server = PartyServer(load_config(c.configs["bank_a"]))
    server.start()
    try:
        request = peer_pb2.StartRequest(job_id="bank_b/x", min_cell_size=1)
        with channel(c, "bank_a", "bank_b") as ch:  # the pinned one: heard (and told there is no such job)
            assert not peer_pb2_grpc.PartyPeerStub(ch).Start(request, timeout=30).ok
        with channel(c, "bank_a", "bank_b2") as ch, pytest.raises(grpc.RpcError) as info:
            peer_pb2_grpc.PartyPeerStub(ch).Start(request, timeout=30)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "peers.bank_b.fingerprint" in info.value.details()
    finally:
        server.stop(grace=1)


def test_certs_init_keeps_the_ca_key_apart_and_keys_private_even_when_forced(tmp_path):
    out = tmp_path / "pki"
    init_certs(BANKS, out, clients=["analyst"])
    for key in [out / f"{n}.key" for n in [*BANKS, "analyst"]] + [out / "ca" / "ca.key"]:
        key.chmod(0o644)  # an old PKI, loosened by hand or an older tool
    init_certs(BANKS, out, clients=["analyst"], force=True)
    for key in [out / f"{n}.key" for n in [*BANKS, "analyst"]] + [out / "ca" / "ca.key"]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((out / "ca").stat().st_mode) == 0o700
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".key") == sorted(f"{n}.key" for n in
                                                                                 [*BANKS, "analyst"])
    assert identity_of(load_certificate((out / "analyst.pem").read_bytes())).role == "client"
    assert identity_of(load_certificate((out / "bank_a.pem").read_bytes())).role == "party"


def test_a_certificate_whose_role_and_key_usage_disagree_has_no_identity(tmp_path):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from smpc.service.identity import IdentityError

    init_certs(["bank_a"], tmp_path)
    ca_key, ca_cert = load_ca(tmp_path / "ca")

    def make(uris, usages, cn="bank_b"):
        now = dt.datetime.now(dt.timezone.utc)
        return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                .issuer_name(ca_cert.subject).public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now)
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]
                                                           + [x509.DNSName(cn)]), critical=False)
                .add_extension(x509.ExtendedKeyUsage(usages), critical=False).sign(ca_key, hashes.SHA256()))

    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    client_only = [ExtendedKeyUsageOID.CLIENT_AUTH]
    for uris, usages, cn, why in (
        ([], both, "bank_b", "names 0 smpc identities"),  # a common name alone is no identity
        (["smpc://party/bank_b", "smpc://client/bank_b"], both, "bank_b", "names 2"),
        (["smpc://party/bank_b"], client_only, "bank_b", "wrong extended key usage"),
        (["smpc://client/bank_b"], both, "bank_b", "wrong extended key usage"),
        (["smpc://admin/bank_b"], both, "bank_b", "is not smpc://party/NAME"),
        (["smpc://party/bank_b"], both, "bank_c", "common name does not match"),
    ):
        with pytest.raises(IdentityError, match=why):
            identity_of(make(uris, usages, cn))
    assert identity_of(make(["smpc://party/bank_b"], both)).role == "party"


def test_an_unusable_revocation_list_refuses_everyone(tmp_path):
    from smpc.service.identity import IdentityError, RevocationList, sanitise

    init_certs(["bank_a"], tmp_path, clients=["analyst"])
    ca = load_certificate((tmp_path / "ca.pem").read_bytes())
    analyst = identity_of(load_certificate((tmp_path / "analyst.pem").read_bytes()))
    crl = RevocationList(tmp_path / "ca.crl", ca)
    crl.check(analyst)
    other = tmp_path / "other"
    init_certs(["bank_a"], other)  # a list signed by another CA
    (tmp_path / "ca.crl").write_bytes((other / "ca.crl").read_bytes())
    with pytest.raises(IdentityError, match="not signed by the CA"):
        crl.check(analyst)
    (tmp_path / "ca.crl").unlink()
    with pytest.raises(IdentityError, match="cannot read the revocation list"):
        crl.check(analyst)
    assert sanitise("a\nb\x00c\u202ed" + "x" * 1000) == "a b c d" + "x" * 492 + "…"
