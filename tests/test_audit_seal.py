"""A party's log between its processes and while it idles, on real `smpc party serve` processes:
a clean stop seals the log (its final head, signed), the next start holds the log to that seal
before it writes, and a running party anchors a log that grew at its peers without waiting for
the next job's end."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import pytest
from service_harness import BANKS, Cluster, wait_for

from smpc.errors import PolicyError
from smpc.service.audit import line_hash, read_lines, read_seal, seal_path, verify, write_seal
from smpc.service.identity import load_private_key, sign


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, certs_by_cli=False, anchor_interval_s=1)
    c.start()
    yield c
    c.stop_all()


def spawn(cluster, bank):
    """A start of ``bank`` whose output the test reads (it is expected to refuse)."""
    command = [sys.executable, "-m", "smpc.cli", "party", "serve", "--config", str(cluster.configs[bank])]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=cluster.env(),
                            cwd=cluster.root, text=True)


def appended(path):
    """A forger's record at the end of a stopped party's log, chained correctly."""
    lines = read_lines(path)
    last = json.loads(lines[-1])
    forged = {"seq": len(lines), "time": last["time"], "party": last["party"], "event": "outputs_released",
              "job_id": "bank_a/never-ran", "to": "outsider", "prev": line_hash(lines[-1])}
    path.write_bytes(path.read_bytes() + json.dumps(forged, separators=(",", ":")).encode() + b"\n")
    assert verify(path).ok


def test_a_clean_stop_seals_the_log_and_the_next_start_resumes_from_the_seal(cluster):
    log = cluster.audit_path("bank_b")
    assert cluster.stop("bank_b") == 0
    seal = read_seal(log)
    lines = read_lines(log)
    assert seal is not None and seal.party == "bank_b" and seal.signature
    assert (seal.records, seal.head) == (len(lines), line_hash(lines[-1]))
    assert json.loads(lines[-1])["event"] == "service_stopped"
    cluster.start("bank_b")
    assert not seal_path(log).exists()  # spent: a later start must not hold the log to a stale seal
    started = [r for r in cluster.audit("bank_b") if r["event"] == "service_started"]
    assert started[-1]["sealed_at_stop"] == {"records": seal.records, "head": seal.head, "time": seal.time}


def test_a_record_appended_while_the_party_was_stopped_refuses_the_start(cluster):
    log = cluster.audit_path("bank_b")
    assert cluster.stop("bank_b") == 0
    appended(log)
    before = log.read_bytes()
    proc = spawn(cluster, "bank_b")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    assert "AuditError" in out and "changed after this party sealed it at its last clean stop" in out, out
    assert log.read_bytes() == before and seal_path(log).exists()  # evidence kept as it was


def test_a_reseal_by_another_key_refuses_the_start(cluster):
    """A forger who appends and writes a matching seal, signed with a key that is not bank_b's."""
    log = cluster.audit_path("bank_b")
    assert cluster.stop("bank_b") == 0
    seal = read_seal(log)
    appended(log)
    lines = read_lines(log)
    key = load_private_key((cluster.certs / "bank_a.key").read_bytes())
    forged = dataclasses.replace(seal, records=len(lines), head=line_hash(lines[-1]))
    write_seal(log, dataclasses.replace(forged, signature=sign(key, forged.payload())))
    proc = spawn(cluster, "bank_b")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "the seal beside the audit log" in out and "is not this party's" in out, out


def test_a_log_that_grew_between_jobs_is_anchored_at_the_peers_and_anchoring_settles(cluster):
    """A refused job is recorded at bank_a but ends no job: bank_a's head still reaches its
    peers within the anchor interval. Anchoring's own records do not call for more anchoring,
    so three idle parties stop writing."""
    with cluster.client("bank_a") as client, pytest.raises(PolicyError):
        client.wait(client.submit("describe", {"columns": "amount"}, job_id="not-allowed"), timeout=60)
    own = [r for r in cluster.audit("bank_a") if r["event"] not in ("peer_head", "peer_head_refused")]
    newest = own[-1]["seq"]

    def anchored_at_peers():
        return all(any(r["event"] == "peer_head" and r["peer"] == "bank_a" and r["records"] > newest
                       for r in cluster.audit(bank)) for bank in BANKS if bank != "bank_a")

    wait_for(anchored_at_peers, 30, "bank_a's grown log to be anchored at both peers", poll=lambda: None)
    wait_for(lambda: settled(cluster), 30, "anchoring to settle", poll=lambda: None)


def settled(cluster) -> bool:
    sizes = [len(cluster.audit(b)) for b in BANKS]
    time.sleep(3.5)  # more than three anchor intervals
    return [len(cluster.audit(b)) for b in BANKS] == sizes
