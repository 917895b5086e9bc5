"""Audit logs anchored in each other, on logs written by real `smpc party serve` processes:
after every job each party signs its head and the others record it (``peer_head``), and
`smpc audit cross-check` finds a log rewritten with recomputed hashes, a cut tail and an
appended record -- none of which `smpc audit verify` alone can see."""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import time

import pytest
from service_harness import BANKS, LOAN_PARAMS, Cluster, wait_for
from test_service_audit import rechain

from smpc import cli
from smpc.service.audit import Seal, head_payload, line_hash, records, seal_path, verify, write_seal
from smpc.service.identity import load_certificate, load_private_key, sign, verify_party_signature
from smpc.transport.grpc import secure_channel
from smpc.v1 import peer_pb2, peer_pb2_grpc

JOBS = ["bank_a/anchor-1", "bank_a/anchor-2"]


def heads_of(cluster, bank, job_id):
    return {r["peer"] for r in cluster.audit(bank) if r["event"] == "peer_head" and r["after_job"] == job_id}


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """The three logs of a cluster that ran two jobs and stopped, each head exchanged."""
    root = tmp_path_factory.mktemp("anchoring")
    cluster = Cluster(root / "cluster", certs_by_cli=False)
    cluster.start()
    try:
        for job_id in JOBS:
            with cluster.client("bank_a") as client:
                client.wait(client.submit("default_rate_overall", LOAN_PARAMS, job_id=job_id.split("/")[1]),
                            timeout=120)
            for bank in BANKS:
                others = set(BANKS) - {bank}
                wait_for(lambda b=bank, o=others, j=job_id: heads_of(cluster, b, j) == o, 60,
                         f"{bank} to record the others' heads after {job_id}", poll=lambda: None)
        forged_answers = plant_forged_heads(cluster)
    finally:
        assert all(code == 0 for code in cluster.stop_all().values())
    saved = root / "saved"
    saved.mkdir()
    for bank in BANKS:
        shutil.copy(cluster.audit_path(bank), saved / f"{bank}.jsonl")
        shutil.copy(seal_path(cluster.audit_path(bank)), seal_path(saved / f"{bank}.jsonl"))
    return saved, cluster.certs, forged_answers


def plant_forged_heads(cluster):
    """bank_a, a configured peer of bank_b, tries to make bank_b record heads that no party
    signed: one in bank_c's name, one whose signature is not over what it claims."""
    certs = cluster.certs
    key = load_private_key((certs / "bank_a.key").read_bytes())
    count, head, when = 3, "ab" * 32, "2026-01-01T00:00:00Z"
    in_c_name = peer_pb2.AuditHead(party="bank_c", records=count, head=head, time=when, job_id="forged-1",
                                   signature=sign(key, head_payload("bank_c", count, head, when)),
                                   certificate_pem=(certs / "bank_a.pem").read_text())
    other_count = peer_pb2.AuditHead(party="bank_a", records=count + 1, head=head, time=when, job_id="forged-2",
                                     signature=sign(key, head_payload("bank_a", count, head, when)),
                                     certificate_pem=(certs / "bank_a.pem").read_text())
    with secure_channel(cluster.address("bank_b"), (certs / "ca.pem").read_bytes(),
                        (certs / "bank_a.pem").read_bytes(), (certs / "bank_a.key").read_bytes(),
                        identity="bank_b") as channel:
        stub = peer_pb2_grpc.PartyPeerStub(channel)
        return [stub.RecordHead(h, timeout=30) for h in (in_c_name, other_count)]


@pytest.fixture
def copies(logs, tmp_path):
    saved = logs[0]
    for bank in BANKS:
        shutil.copy(seal_path(saved / f"{bank}.jsonl"), seal_path(tmp_path / f"{bank}.jsonl"))
    return {bank: shutil.copy(saved / f"{bank}.jsonl", tmp_path / f"{bank}.jsonl") for bank in BANKS}


def cross_check(copies, capsys, command="cross-check", *extra):
    code = cli.main(["audit", command, str(copies["bank_b"]), "--peer-logs", str(copies["bank_a"]),
                     str(copies["bank_c"]), *extra])
    return code, capsys.readouterr().out


def raw(path):
    return path.read_bytes().splitlines()


def write(path, lines):
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_every_party_records_the_others_signed_heads(logs, copies, capsys):
    certs = logs[1]
    ca = load_certificate((certs / "ca.pem").read_bytes())
    for bank in BANKS:
        heads = [r for r in records(copies[bank]) if r["event"] == "peer_head"]
        assert {(r["peer"], r["after_job"]) for r in heads} >= {(p, j) for p in set(BANKS) - {bank} for j in JOBS}
        for r in heads:  # each signed by the peer's own party certificate, over what was recorded
            cert = (certs / f"{r['peer']}.pem").read_text()
            ident = verify_party_signature(ca, None, cert, base64.b64decode(r["signature"]),
                                           head_payload(r["peer"], r["records"], r["head"], r["head_time"]),
                                           r["peer"], now=time.time())
            assert r["signer_cert"] == ident.fingerprint
            # and the head is that record of the peer's log
            assert line_hash(raw(copies[r["peer"]])[r["records"] - 1]) == r["head"]
    code, out = cross_check(copies, capsys)
    assert code == 0 and "TAMPERED" not in out, out
    assert "ok: every head the parties recorded of each other, and every seal, is in the logs" in out


def test_a_rewrite_with_recomputed_hashes_is_found(copies, capsys):
    lines = raw(copies["bank_b"])
    at = next(i for i, x in enumerate(lines) if b'"job_finished"' in x)  # the first job's end, long anchored
    forged = rechain(lines[:at] + [lines[at].replace(b'"state":"succeeded"', b'"state":"failed"')] + lines[at + 1:],
                     at)
    assert forged[at] != lines[at]
    write(copies["bank_b"], forged)
    assert verify(copies["bank_b"]).ok  # the chain alone cannot tell
    code, out = cross_check(copies, capsys)
    assert code == 1 and "TAMPERED: bank_b: rewritten: record" in out and "the log was rewritten" in out, out
    code, out = cross_check(copies, capsys, command="verify")
    assert code == 1 and "ok:" in out.splitlines()[0] and "TAMPERED: bank_b: rewritten" in out, out


def test_a_cut_tail_is_found(copies, capsys):
    lines = raw(copies["bank_b"])
    second = next(i for i, x in enumerate(lines) if b'"job_received"' in x and JOBS[1].encode() in x)
    write(copies["bank_b"], lines[:second])  # the second job never happened, says bank_b's log
    assert verify(copies["bank_b"]).ok
    code, out = cross_check(copies, capsys)
    assert code == 1 and f"TAMPERED: bank_b: cut: the log has {second} records, but" in out, out
    assert "its end was cut" in out


def append_forged_release(path):
    lines = raw(path)
    last = json.loads(lines[-1])
    forged = {"seq": len(lines), "time": last["time"], "party": "bank_b", "event": "outputs_released",
              "job_id": JOBS[0], "to": "outsider", "keys": ["rate"], "prev": line_hash(lines[-1])}
    write(path, lines + [json.dumps(forged, separators=(",", ":")).encode()])
    assert verify(path).ok  # the chain alone cannot tell
    return len(lines)


def test_a_record_appended_after_a_clean_stop_is_found(logs, copies, capsys):
    n = append_forged_release(copies["bank_b"])
    for extra in ((), ("--ca", str(logs[1] / "ca.pem"))):
        code, out = cross_check(copies, capsys, "cross-check", *extra)
        assert code == 1, out
        assert (f"TAMPERED: bank_b: appended: records {n}..{n} come after the head bank_b sealed at its clean stop"
                in out and "outputs_released" in out), out
    code = cli.main(["audit", "verify", str(copies["bank_b"])])
    out = capsys.readouterr().out
    assert code == 1 and "TAMPERED: bank_b: appended" in out, out


def test_every_record_of_cleanly_stopped_parties_is_vouched_for(logs, copies, capsys):
    code, out = cross_check(copies, capsys, "cross-check", "--ca", str(logs[1] / "ca.pem"))
    assert code == 0 and "UNANCHORED" not in out and "UNVERIFIED" not in out, out
    assert "pass --ca" not in out and "were not checked" not in out, out  # every signature checked, CA too


def test_records_after_the_last_anchor_without_a_seal_are_unverified(copies, capsys):
    seal_path(copies["bank_b"]).unlink()  # as for a party still running (or a forger who deleted the seal)
    n = append_forged_release(copies["bank_b"])
    code, out = cross_check(copies, capsys)
    tail = next(x for x in out.splitlines() if x.startswith("UNANCHORED: bank_b"))
    assert f"..{n} come after the newest head a peer recorded" in tail and "outputs_released" in tail, out
    assert "no seal covers them" in tail and "UNVERIFIED" in out, out
    # what the peers vouched for is intact: not tampered, but not clean either
    assert code == 4 and "TAMPERED" not in out, out


def test_a_seal_signed_by_another_key_is_found(logs, copies, capsys):
    """A forger who appends and re-seals without bank_b's key: bank_a's key signs the seal."""
    n = append_forged_release(copies["bank_b"])
    lines = raw(copies["bank_b"])
    certs = logs[1]
    key = load_private_key((certs / "bank_a.key").read_bytes())
    forged = Seal("bank_b", n + 1, line_hash(lines[-1]), "2026-01-01T00:00:00Z", b"", "")
    for cert in ("bank_b.pem", "bank_a.pem"):
        write_seal(copies["bank_b"], dataclasses.replace(forged, signature=sign(key, forged.payload()),
                                                          certificate_pem=(certs / cert).read_text()))
        code, out = cross_check(copies, capsys)
        assert code == 1 and "TAMPERED: bank_b: bad seal" in out, out


def test_a_recorded_head_nobody_signed_is_found(copies, capsys):
    """bank_c's log rewritten so that the head it recorded of bank_b's log hides a rewrite of
    bank_b: the signature bank_b gave no longer matches what bank_c's log claims."""
    lines = raw(copies["bank_c"])
    at = next(i for i, x in enumerate(lines) if b'"peer_head"' in x and b'"peer":"bank_b"' in x)
    rec = json.loads(lines[at])
    rec["head"] = "cd" * 32
    lines[at] = json.dumps(rec, separators=(",", ":")).encode()
    write(copies["bank_c"], rechain(lines, at))
    seal_path(copies["bank_c"]).unlink()  # the forger also drops the seal its rewrite broke
    code, out = cross_check(copies, capsys)
    assert code == 1 and f"TAMPERED: bank_c: forged head: record {at} holds a head of bank_b's log" in out, out


def test_a_log_given_alone_has_nothing_to_check_against(copies, capsys):
    code = cli.main(["audit", "cross-check", str(copies["bank_b"]), "--peer-logs", str(copies["bank_b"])])
    assert code == 2 and "two logs of party 'bank_b'" in capsys.readouterr().err


def test_a_peer_cannot_plant_a_head_nobody_signed(logs, copies):
    answers = logs[2]
    assert [a.ok for a in answers] == [False, False]
    assert "the head names 'bank_c', but bank_a sent it" in answers[0].message
    assert "does not match what it signs" in answers[1].message
    recs = records(copies["bank_b"])
    assert not [r for r in recs if r["event"] == "peer_head" and r["after_job"].startswith("forged")]
    refused = [r for r in recs if r["event"] == "peer_head_refused"]
    assert [(r["peer"], r["after_job"]) for r in refused] == [("bank_a", "forged-1"), ("bank_a", "forged-2")]
