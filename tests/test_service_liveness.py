"""Three real party processes on 127.0.0.1 with mutual TLS, and a peer that stops answering
or comes back: a hung peer aborts the job at every other party within one step timeout (and
a small constant), and a restarted peer takes jobs at once, without a burst of refusals.

Here the time a party takes to give up is the requirement itself, so it is measured against
the step timeout (a small one, to keep the test short); nothing sleeps for timing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from service_harness import BANKS, LOAN_PARAMS, Cluster, wait_for

from smpc import analyses
from smpc.errors import PartyUnavailable
from smpc.service.states import STATE_NAMES

STEP_S = 4.0
# what a party may take beyond the step timeout to give up on a hung peer: tell the others,
# end the streams, record the job's end
ABORT_SLACK_S = 2.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("liveness"), step_timeout=STEP_S, certs_by_cli=False)
    c.start()
    yield c
    for proc in c.procs.values():  # a test that failed half-way may leave one stopped
        os.kill(proc.pid, signal.SIGCONT)
    codes = c.stop_all()
    assert all(code == 0 for code in codes.values()), codes


def _wait_running(cluster, bank, job_id):
    with cluster.client(bank) as client:
        for event in client.events(job_id, timeout=60):
            if event.progress > 0 and STATE_NAMES[event.state] == "running":
                return
    raise AssertionError(f"job {job_id} ended at {bank} before it made progress")


def _expected_result(cluster):
    return analyses.get("default_rate_overall").run_plaintext(cluster.tables, **LOAN_PARAMS, min_cell_size=10)


@pytest.mark.parametrize("hung_bank", ["bank_c", "bank_a"])
def test_a_hung_peer_aborts_the_job_within_one_step_timeout_at_every_party(cluster, hung_bank):
    """A party stops (SIGSTOP) mid-job: every other party ends the job within the step timeout
    plus a small constant, naming it -- bank_c is dialed by both others, bank_a dials both.
    Once the stopped party runs again it ends the job too, and the next job succeeds."""
    others = [b for b in BANKS if b != hung_bank]
    with cluster.client(others[0]) as client:
        job_id = client.submit("test_endless_rounds", {}, job_id=f"job-hung-{hung_bank}")
    _wait_running(cluster, others[1], job_id)
    ended: dict[str, tuple[float, object]] = {}

    def follow(bank):
        with cluster.client(bank) as client:
            for _ in client.events(job_id, timeout=10 * STEP_S):
                pass
            ended[bank] = (time.monotonic(), client.get(job_id))

    watchers = [threading.Thread(target=follow, args=(b,), daemon=True) for b in others]
    for w in watchers:
        w.start()
    hung = cluster.procs[hung_bank]
    os.kill(hung.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        for w in watchers:
            w.join(10 * STEP_S)
        assert set(ended) == set(others), f"the job did not end at {sorted(set(others) - set(ended))}"
        for bank, (at, status) in ended.items():
            assert STATE_NAMES[status.state] == "failed", (bank, status)
            assert status.error.party == hung_bank and hung_bank in status.error.message, (bank, status.error)
            took = at - stopped_at
            assert took < STEP_S + ABORT_SLACK_S, f"{bank} took {took:.1f} s to abort (step timeout {STEP_S:g} s)"
    finally:
        os.kill(hung.pid, signal.SIGCONT)
    with cluster.client(hung_bank) as client:
        wait_for(lambda: STATE_NAMES[client.get(job_id).state] == "failed", deadline_s=10 * STEP_S,
                 what=f"{hung_bank} to end the job once it runs again")
    with cluster.client(hung_bank) as client:
        result = client.run("default_rate_overall", LOAN_PARAMS, recipients=[hung_bank])
    assert result == _expected_result(cluster)


def _start_without_waiting(cluster, bank):
    """Start ``bank``'s service and return as soon as its port accepts connections, each try
    on a fresh socket: unlike a gRPC channel's, these tries never back off, so the caller
    sees the service up before the peers' channels, which do, have reconnected to it."""
    with open(cluster.log_path(bank), "a") as log:
        cluster.procs[bank] = proc = subprocess.Popen(
            [sys.executable, "-m", "smpc.cli", "party", "serve", "--config", str(cluster.configs[bank])],
            stdout=log, stderr=subprocess.STDOUT, env=cluster.env(), cwd=cluster.root)

    def accepts():
        assert proc.poll() is None, cluster.log(bank)
        try:
            socket.create_connection(("127.0.0.1", cluster.ports[bank]), timeout=1).close()
        except OSError:
            return False
        return True

    wait_for(accepts, deadline_s=120, what=f"{bank} to listen")


def test_jobs_right_after_a_peer_restarts_succeed(cluster):
    """bank_c dies and comes back: the other parties' channels to it are still backing off
    from the failed reconnects when the first jobs arrive. Preparing a job waits for the
    connection (within timeouts.connect) instead of refusing at once, so every job succeeds."""
    with cluster.client("bank_a") as client:  # the channels to bank_c are up and in use
        assert client.run("default_rate_overall", LOAN_PARAMS, recipients=["bank_a"]) is not None
    cluster.kill("bank_c")
    failures = []

    def gone(bank, i):
        with cluster.client(bank) as client:
            try:
                client.run("default_rate_overall", LOAN_PARAMS, recipients=[bank], job_id=f"gone-{bank}-{i}")
            except PartyUnavailable as exc:
                failures.append(str(exc))

    # jobs while bank_c is gone fail, naming it, and its peers' channels back off from it
    tries = [threading.Thread(target=gone, args=(b, i)) for b in ("bank_a", "bank_b") for i in range(2)]
    for t in tries:
        t.start()
    for t in tries:
        t.join(60)
    assert len(failures) == len(tries) and all("bank_c" in f for f in failures), failures
    _start_without_waiting(cluster, "bank_c")
    want = _expected_result(cluster)
    for i in range(4):
        for bank in ("bank_a", "bank_b"):
            with cluster.client(bank) as client:
                result = client.run("default_rate_overall", LOAN_PARAMS, recipients=[bank], job_id=f"after-{bank}-{i}")
            assert result == want, (bank, i)
