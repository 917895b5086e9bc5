"""Worker pools in the party service: a bucketed multi_lending on two worker processes at every
party, through three real `smpc party serve` processes with mutual TLS.

Checked: the result equals the plaintext twin and the single-session run, each bank gets its
own flags only; every party shows each bucket's progress as job events and audits where its
workers listen; a worker killed while the job runs fails the job at every party with
PartyUnavailable naming the party that lost it (no hang, no result), and the next job runs on
fresh workers and succeeds.
"""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import pandas as pd
import pytest
from service_harness import BANKS, Cluster, wait_for

from smpc import datasets
from smpc.analyses.fraud import merge_bank_results, multi_lending_plain
from smpc.errors import ProtocolTimeout
from smpc.service.audit import verify
from smpc.service.jobs import MAX_BUCKETS, JobManager
from smpc.service.states import STATE_NAMES
from smpc.workers import run_bucketed

THRESHOLD = 40_000.0
ML = {"id": "customer_id", "balance": "balance", "balance_threshold": THRESHOLD, "min_lenders": 3}
LOAN_BOOK = {"customer_id": "str", "loan_id": "str", "grade": "str",
             "balance": {"type": "float", "bound": 1e7, "decimals": 2, "total_bound": 1e9}}


ANNOUNCED = {"bank_a": ["10.0.0.1:50061", "10.0.0.1:50062"], "bank_b": ["10.0.0.2:50061", "10.0.0.2:50062"],
             "bank_c": ["10.0.0.3:50061", "10.0.0.3:50062", "10.0.0.3:50063"]}


def _start(workers: dict, buckets: int = 4):
    from smpc.v1 import peer_pb2

    req = peer_pb2.StartRequest(job_id="bank_a/j", buckets=buckets)
    for name, endpoints in workers.items():
        req.workers[name].endpoints.extend(endpoints)
    return req


@pytest.mark.parametrize(("change", "problem"), [
    ({}, None),
    ({"bank_b": ["10.0.0.9:50061", "10.0.0.2:50062"]}, "its worker endpoints are not the ones it announced"),
    ({"bank_a": ["10.0.0.9:50061", "10.0.0.1:50062"]}, "bank_a's worker endpoints are not the ones it announced"),
    ({"bank_c": ["10.0.0.3:50061"]}, "is not a bucketed job"),
    ({"bank_c": ["10.0.0.3:50061", "not an endpoint"]}, "not HOST:PORT"),
    ({"buckets": MAX_BUCKETS + 1}, "is not a bucketed job"),
    ({"bank_c": None}, "not the job's parties"),
])
def test_a_party_starts_a_bucketed_job_only_on_the_worker_terms_announced(change, problem):
    """bank_b's check of the coordinator's Start: its own endpoints and the coordinator's
    must be what each announced at Prepare, the buckets within bounds."""
    workers = {k: v for k, v in {**ANNOUNCED, **change}.items() if k != "buckets" and v is not None}
    req = _start(workers, change.get("buckets", 4))
    job = SimpleNamespace(request=SimpleNamespace(parties=BANKS, coordinator="bank_a"),
                          workers=ANNOUNCED["bank_b"], coordinator_workers=ANNOUNCED["bank_a"])
    found = JobManager._bad_worker_terms(SimpleNamespace(me="bank_b"), job, req)
    if problem is None:
        assert found is None
    else:
        assert found[0] == "compute.workers" and problem in found[1], found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("workers_cluster")
    (root / "data").mkdir()
    books = datasets.synthetic_consortium(n_banks=3, rows_per_bank=150, seed=11, balance_threshold=THRESHOLD,
                                          min_lenders=3)
    sources = {}
    for bank in BANKS:
        books[bank].to_csv(root / "data" / f"{bank}_book.csv", index=False)
        sources[bank] = {"book": (f"data/{bank}_book.csv", LOAN_BOOK)}
    policies = {bank: {"allowed_columns": {"multi_lending": ["customer_id", "balance"]}} for bank in BANKS}
    c = Cluster(root, policies=policies, extra_sources=sources, analysis_modules=(), extra_allowed=("multi_lending",),
                certs_by_cli=False, compute={"workers": 2})
    c.books = {b: pd.read_csv(root / "data" / f"{b}_book.csv", dtype={"customer_id": str}) for b in BANKS}
    c.start()
    yield c
    codes = c.stop_all()
    assert all(code == 0 for code in codes.values()), codes
    for bank in BANKS:
        assert verify(c.audit_path(bank)).ok, bank


def worker_pid(cluster, bank: str, worker: int) -> int:
    """The process id of ``bank``'s worker, from its latest ``workers_started`` audit record."""
    started = [w for r in cluster.audit(bank) if r["event"] == "workers_started" for w in r["workers"]]
    return [w for w in started if w["worker"] == worker][-1]["pid"]


def each_banks_part(cluster, job_id: str) -> dict:
    # the submitter's wait ends when its own party is done; another party may still be finishing
    received = {}
    for bank in BANKS:  # each bank fetches its own part from its own party
        with cluster.client(bank, bank) as client:
            received[bank] = client.wait(job_id)
    return received


def saw_stage(client, job: str, prefix: str) -> bool:
    """Whether the party's events of the running job so far include a stage starting with
    ``prefix`` (the Watch stream is cut after a second: the job has not ended)."""
    try:
        return any(e.stage.startswith(prefix) for e in client.events(job, timeout=1))
    except ProtocolTimeout:
        return False


def test_bucketed_multi_lending_on_two_workers_equals_the_twin_and_the_single_session(cluster):
    plain = multi_lending_plain(cluster.books, **ML)
    single, cost = run_bucketed("multi_lending", cluster.books, ML, buckets=1)
    assert cost["buckets"] == 1 and single == plain
    with cluster.client("bank_a", "bank_a") as client:
        job = client.submit("multi_lending", ML, source="book", job_id="ml-workers", recipients=["bank_b", "bank_c"])
        client.wait(job)
    received = each_banks_part(cluster, job)
    for bank, result in received.items():
        assert result == {"flagged_count": plain["flagged_count"], "by_bank": {bank: plain["by_bank"][bank]}}
    assert merge_bank_results(list(received.values())) == plain
    assert plain["flagged_count"] >= 10
    for bank in BANKS:
        with cluster.client(bank, bank) as client:
            stages = [e.stage for e in client.events(job)]
        # two buckets, one on each worker, each seen starting and ending
        for b, w in ((1, 0), (2, 1)):
            assert any(s.startswith(f"bucket {b} of 2 running on worker {w}") for s in stages), (bank, stages)
            assert any(s.startswith(f"bucket {b} of 2 done on worker {w}") for s in stages), (bank, stages)
        started = [r for r in cluster.audit(bank) if r["event"] == "workers_started"]
        assert started and [w["worker"] for w in started[0]["workers"]] == [0, 1]
        assert all(w["endpoint"].startswith("127.0.0.1:") for w in started[0]["workers"])
        finished = next(r for r in cluster.records(bank, job) if r["event"] == "job_finished")
        assert finished["state"] == "succeeded" and finished["bytes_sent"] > 0 and finished["rounds"] > 0


def test_a_worker_killed_mid_job_fails_it_at_every_party_and_the_next_job_succeeds(cluster):
    victim = worker_pid(cluster, "bank_c", 0)
    # stopped first, so that the job cannot finish before the kill: its bucket 0 waits on it
    os.kill(victim, signal.SIGSTOP)
    try:
        with cluster.client("bank_a", "bank_a") as client:
            job = client.submit("multi_lending", ML, source="book", job_id="ml-killed")
            wait_for(lambda: saw_stage(client, job, "bucket 1 of 2 running")
                     or STATE_NAMES[client.get(job).state] != "running",
                     what="bucket 1 running at bank_a")
    finally:
        os.kill(victim, signal.SIGKILL)
    for bank in BANKS:
        with cluster.client(bank, "bank_a") as client:
            status = wait_for(lambda client=client: (s := client.get(job)) and STATE_NAMES[s.state] != "running" and s,
                              what=f"the job's end at {bank}")
        assert STATE_NAMES[status.state] == "failed", (bank, status)
        assert status.error.type == "PartyUnavailable" and status.error.party == "bank_c", (bank, status.error)
        assert not status.result_json
        finished = next(r for r in cluster.records(bank, job) if r["event"] == "job_finished")
        assert finished["state"] == "failed" and "result_keys" not in finished
    assert "worker 0 ended during bucket 1 of 2" in next(
        r for r in cluster.records("bank_c", job) if r["event"] == "job_finished")["error"]
    # every party starts the workers of the failed job afresh, in the background: the next job runs on them
    for bank in BANKS:
        wait_for(lambda bank=bank: len([r for r in cluster.audit(bank) if r["event"] == "workers_started"]) >= 2,
                 what=f"{bank}'s new workers")
    assert worker_pid(cluster, "bank_c", 0) != victim
    plain = multi_lending_plain(cluster.books, **ML)
    with cluster.client("bank_b", "bank_a") as client:
        job = client.submit("multi_lending", ML, source="book", job_id="ml-after", recipients=["bank_b", "bank_c"])
    with cluster.client("bank_a", "bank_a") as client:
        client.wait(job)
        assert any(e.stage.startswith("bucket 2 of 2 done on worker 1") for e in client.events(job))
    assert merge_bank_results(list(each_banks_part(cluster, job).values())) == plain
