"""The Ray engine of the worker pools: three real party services whose workers are Ray actors
on one local Ray instance (started here with 6 logical CPUs: two actors per party).

Checked: a bucketed multi_lending on the actors equals the plaintext twin, each bank gets its
own flags; an actor killed with ``ray.kill`` while its bucket runs fails the job cleanly at
every party (PartyUnavailable naming the party, no result), and the next job runs on a new
actor and succeeds. Skipped where Ray is not installed (``pip install smpc[ray]``; the
locked development environment has it).
"""

from __future__ import annotations

import os
import signal

import pandas as pd
import pytest
from service_harness import BANKS, Cluster, wait_for

from smpc import datasets
from smpc.analyses.fraud import merge_bank_results, multi_lending_plain
from smpc.errors import ProtocolTimeout
from smpc.service.states import STATE_NAMES

ray = pytest.importorskip("ray")

THRESHOLD = 40_000.0
ML = {"id": "customer_id", "balance": "balance", "balance_threshold": THRESHOLD, "min_lenders": 3}
LOAN_BOOK = {"customer_id": "str", "balance": {"type": "float", "bound": 1e7, "decimals": 2, "total_bound": 1e9}}


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    # the parties join as drivers on this machine: Ray's token authentication is for clusters
    # reached over a network, and its token file would be one more secret for the test to hand out
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=6, include_dashboard=False, logging_level="WARNING", log_to_driver=False,
             configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, ray_address):
    root = tmp_path_factory.mktemp("ray_cluster")
    (root / "data").mkdir()
    books = datasets.synthetic_consortium(n_banks=3, rows_per_bank=60, seed=3, balance_threshold=THRESHOLD,
                                          min_lenders=3)
    sources = {}
    for bank in BANKS:
        books[bank][["customer_id", "balance"]].to_csv(root / "data" / f"{bank}_book.csv", index=False)
        sources[bank] = {"book": (f"data/{bank}_book.csv", LOAN_BOOK)}
    policies = {bank: {"allowed_columns": {"multi_lending": ["customer_id", "balance"]}} for bank in BANKS}
    compute = {"workers": 2, "engine": "ray", "address": ray_address, "listen": "127.0.0.1:0",
               "advertise": "127.0.0.1"}
    c = Cluster(root, policies=policies, extra_sources=sources, analysis_modules=(), extra_allowed=("multi_lending",),
                certs_by_cli=False, compute=compute)
    c.books = {b: pd.read_csv(root / "data" / f"{b}_book.csv", dtype={"customer_id": str}) for b in BANKS}
    c.start()
    yield c
    codes = c.stop_all()
    assert all(code == 0 for code in codes.values()), codes


def actor(cluster, bank: str, worker: int) -> dict:
    """``bank``'s worker actor (name, pid, endpoint), from its latest ``workers_started`` record."""
    started = [w for r in cluster.audit(bank) if r["event"] == "workers_started" for w in r["workers"]]
    return [w for w in started if w["worker"] == worker][-1]


def merged_result(cluster, job_id: str) -> dict:
    # the submitter's wait ends when its own party is done; another party may still be finishing
    parts = []
    for bank in BANKS:
        with cluster.client(bank, bank) as client:
            parts.append(client.wait(job_id))
    return merge_bank_results(parts)


def saw_stage(client, job: str, prefix: str) -> bool:
    """Whether the party's events of the running job so far include a stage starting with
    ``prefix`` (the Watch stream is cut after a second: the job has not ended)."""
    try:
        return any(e.stage.startswith(prefix) for e in client.events(job, timeout=1))
    except ProtocolTimeout:
        return False


def test_a_bucketed_job_on_ray_actors_equals_the_twin(cluster):
    plain = multi_lending_plain(cluster.books, **ML)
    assert plain["flagged_count"] >= 3
    with cluster.client("bank_a", "bank_a") as client:
        job = client.submit("multi_lending", ML, source="book", job_id="ml-ray", recipients=["bank_b", "bank_c"])
        client.wait(job)
        stages = [e.stage for e in client.events(job)]
    assert merged_result(cluster, job) == plain
    assert any(s.startswith("bucket 2 of 2 done on worker 1") for s in stages), stages
    for bank in BANKS:
        first = actor(cluster, bank, 0)
        assert first["actor"].startswith(f"smpc-{bank}-w0-") and first["endpoint"].startswith("127.0.0.1:")


def test_an_actor_killed_mid_bucket_fails_the_job_everywhere_and_the_next_one_runs(cluster):
    victim = actor(cluster, "bank_b", 1)
    handle = ray.get_actor(victim["actor"], namespace="smpc")
    # bank_c's worker 1 stopped: bucket 2 (on the workers 1) cannot end before the kill
    held = actor(cluster, "bank_c", 1)["pid"]
    os.kill(held, signal.SIGSTOP)
    try:
        with cluster.client("bank_a", "bank_a") as client:
            job = client.submit("multi_lending", ML, source="book", job_id="ml-ray-killed")
            wait_for(lambda: saw_stage(client, job, "bucket 2 of 2 running")
                     or STATE_NAMES[client.get(job).state] != "running",
                     what="bucket 2 running at bank_a")
        ray.kill(handle, no_restart=True)
    finally:
        os.kill(held, signal.SIGCONT)
    for bank in BANKS:
        with cluster.client(bank, "bank_a") as client:
            status = wait_for(lambda client=client: (s := client.get(job)) and STATE_NAMES[s.state] != "running" and s,
                              what=f"the job's end at {bank}")
        assert STATE_NAMES[status.state] == "failed", (bank, status)
        assert status.error.type == "PartyUnavailable" and status.error.party == "bank_b", (bank, status.error)
        assert not status.result_json
    # every party starts its workers of the failed job afresh, in the background
    for bank in BANKS:
        wait_for(lambda bank=bank: len([r for r in cluster.audit(bank) if r["event"] == "workers_started"]) >= 2,
                 what=f"{bank}'s new workers")
    assert actor(cluster, "bank_b", 1)["actor"] != victim["actor"]
    with cluster.client("bank_c", "bank_c") as client:
        job = client.submit("multi_lending", ML, source="book", job_id="ml-ray-after", recipients=["bank_a", "bank_b"])
        client.wait(job)
        assert any(e.stage.startswith("bucket 2 of 2 done on worker 1") for e in client.events(job))
    assert merged_result(cluster, job) == multi_lending_plain(cluster.books, **ML)
