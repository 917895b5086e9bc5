"""Resource exhaustion against real party processes: a flood of ``Watch`` streams must not
starve the peers' traffic, and a requester's concurrent jobs are capped.

Before the job service had capacity of its own, every call shared one 64-thread pool with
the peer service: 64 ``Watch`` streams at bank_c left no thread for the next job's
``Prepare`` and ``Exchange`` calls there, so that job failed ("cannot reach bank_c") while
the streams stayed open. Now job-service calls run on a pool of ``limits.job_service_calls``
threads that answers RESOURCE_EXHAUSTED beyond it, Watch streams take at most three quarters
of those, each identity at most ``limits.watch_streams_per_identity``, and the peers keep
threads of their own.
"""

from __future__ import annotations

import threading

import grpc
import pytest
from service_harness import BANKS, LOAN_PARAMS, Cluster, wait_for

from smpc import analyses
from smpc.service.states import STATE_NAMES
from smpc.v1 import jobs_pb2

WATCHES_PER_IDENTITY = 20
CLIENT_CALLS = 40
WATCHES = 30  # three quarters of the job-service calls: the rest stay free for other calls
LIMITS = {"watch_streams_per_identity": WATCHES_PER_IDENTITY, "job_service_calls": CLIENT_CALLS,
          "jobs_per_requester": 1}
GATED = "test_rounds_until_released"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # bank_b takes part in two jobs at once, the others in the default eight
    c = Cluster(tmp_path_factory.mktemp("resources"), limits=LIMITS, bank_limits={"bank_b": {"max_concurrent_jobs": 2}},
                analysis_modules=("service_test_analyses", "service_resource_analyses"),
                extra_allowed=(GATED,))
    c.start()
    yield c
    codes = c.stop_all()
    assert all(code == 0 for code in codes.values()), codes


class Watcher(threading.Thread):
    """One Watch stream: ``answered`` once it delivered an event or was refused."""

    def __init__(self, client, job_id: str):
        super().__init__(daemon=True)
        self.call = client.stub.Watch(jobs_pb2.JobRef(job_id=job_id), timeout=300, metadata=client.metadata)
        self.events: list = []
        self.error: tuple | None = None
        self.answered = threading.Event()
        self.ended = threading.Event()

    def run(self):
        try:
            for event in self.call:
                self.events.append(event)
                self.answered.set()
        except grpc.RpcError as exc:
            self.error = (exc.code(), exc.details())
        finally:
            self.answered.set()
            self.ended.set()

    @property
    def is_open(self) -> bool:
        return self.error is None and bool(self.events)


def open_watchers(client, job_id: str, n: int) -> list[Watcher]:
    watchers = [Watcher(client, job_id) for _ in range(n)]
    for w in watchers:
        w.start()
    return watchers


def test_a_hundred_watch_streams_do_not_stop_running_or_following_jobs(cluster, tmp_path):
    release = tmp_path / "release"
    clients = {who: cluster.client("bank_c", who) for who in ("analyst", "bank_a")}
    watchers: list[Watcher] = []
    try:
        with cluster.client("bank_a", "bank_a") as bank_a:
            long_job = bank_a.submit(GATED, {"release_file": str(release)}, recipients=["analyst"])
            wait_for(lambda: job_progress(cluster, long_job) > 0, what="the long job to exchange rounds")

            # 100 streams at bank_c, the party that serves two Exchange streams of every job:
            # first one identity's 50, then another's
            by_analyst = open_watchers(clients["analyst"], long_job, 50)
            wait_for(lambda: all(w.answered.is_set() for w in by_analyst), what="the analyst's streams")
            by_bank_a = open_watchers(clients["bank_a"], long_job, 50)
            watchers = by_analyst + by_bank_a
            wait_for(lambda: sum(w.answered.is_set() for w in by_bank_a) >= 10, what="bank_a's streams")
            # the streams leave room for other calls at bank_c
            with cluster.client("bank_c", "bank_b") as bank_b:
                assert bank_b.info().party == "bank_c"

            # a job submitted now still runs to its result: bank_c's peer threads are its own
            with cluster.client("bank_a", "analyst") as analyst:
                result = analyst.run("default_rate_overall", LOAN_PARAMS)
            expected = analyses.get("default_rate_overall").run_plaintext(cluster.tables, **LOAN_PARAMS,
                                                                          min_cell_size=10)
            assert result == expected

            # every stream got an answer: held open, or refused at once and cleanly
            wait_for(lambda: all(w.answered.is_set() for w in watchers), what="an answer on every stream")
            opened = [w for w in watchers if w.is_open]
            refused = [w for w in watchers if not w.is_open]
            assert sum(w.is_open for w in by_analyst) == WATCHES_PER_IDENTITY
            assert sum(w.is_open for w in by_bank_a) == WATCHES - WATCHES_PER_IDENTITY
            assert len(opened) == WATCHES and len(refused) == 100 - WATCHES
            for w in refused:
                code, details = w.error
                assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, w.error
                assert "bank_c" in details and ("limits.watch_streams_per_identity" in details
                                                or "limits.job_service_calls" in details), details
            assert any("limits.watch_streams_per_identity" in w.error[1] for w in by_analyst if w.error)
            assert any("limits.job_service_calls" in w.error[1] for w in by_bank_a if w.error)
            # the flood is audited once per identity and limit, not once per stream
            quota = [r for r in cluster.audit("bank_c") if r["event"] == "quota_refused"]
            assert [(r["requester"], r["call"], r["limit"]) for r in quota] == [
                ("analyst", "Watch", "limits.watch_streams_per_identity"),
                ("bank_a", "Watch", "limits.job_service_calls")]

            # the long job never stopped: released now, it succeeds, and every open stream sees it
            assert STATE_NAMES[bank_a.get(long_job).state] == "running"
            release.touch()
            assert bank_a.wait(long_job, timeout=120) == {"released": True}
            wait_for(lambda: all(w.ended.is_set() for w in opened), what="the open streams to end")
            assert all(STATE_NAMES[w.events[-1].state] == "succeeded" for w in opened)
        # with the streams gone bank_c's job service answers again
        with cluster.client("bank_c", "analyst") as analyst:
            assert analyst.info().party == "bank_c"
    finally:
        release.touch()
        for w in watchers:
            w.call.cancel()
        for client in clients.values():
            client.close()


def wait_idle(cluster) -> None:
    """Until no party has a job left running: a requester's wait ends when its own party's job
    does, and a peer may take a moment longer to finish its part."""
    def idle():
        for bank in BANKS:
            with cluster.client(bank, "bank_a") as client:
                if client.info().active_jobs:
                    return False
        return True

    wait_for(idle, what="every party to have finished its jobs")


def job_progress(cluster, job_id: str) -> float:
    with cluster.client("bank_a", "bank_a") as client:
        return client.get(job_id).progress


def test_a_requester_runs_at_most_jobs_per_requester_jobs_at_any_party(cluster, tmp_path):
    release = tmp_path / "release"
    wait_idle(cluster)
    try:
        with cluster.client("bank_a", "bank_b") as bank_b:
            running = bank_b.submit(GATED, {"release_file": str(release)})
            for coordinator in ("bank_a", "bank_c"):  # bank_c takes part in the job, so it counts it too
                with cluster.client(coordinator, "bank_b") as client, pytest.raises(Exception) as refused:
                    client.submit("default_rate_overall", LOAN_PARAMS)
                assert "RESOURCE_EXHAUSTED" in str(refused.value) and "limits.jobs_per_requester" in str(refused.value)
            # another requester is not affected
            with cluster.client("bank_b", "analyst") as analyst:
                assert analyst.run("default_rate_overall", LOAN_PARAMS)["rows"] == 1000
            release.touch()
            assert bank_b.wait(running, timeout=120) == {"released": True}
            # and once its job ended, the requester may submit again
            wait_idle(cluster)
            # (naming bank_a a recipient opens the result at bank_a's party too, where it is asked)
            assert bank_b.run("default_rate_overall", LOAN_PARAMS, recipients=["bank_a"])["rows"] == 1000
    finally:
        release.touch()


def test_a_party_takes_part_in_at_most_max_concurrent_jobs_whoever_coordinates(cluster, tmp_path):
    release = tmp_path / "release"
    wait_idle(cluster)
    try:
        with cluster.client("bank_a", "bank_b") as bank_b, cluster.client("bank_a", "analyst") as analyst:
            running = [bank_b.submit(GATED, {"release_file": str(release)}),
                       analyst.submit(GATED, {"release_file": str(release)})]
            # bank_a coordinates a third job and has room for it; bank_b, its peer, refuses it
            status = submit_status(cluster, "bank_a", "bank_a", "default_rate_overall", LOAN_PARAMS)
            assert STATE_NAMES[status.state] == "failed"
            assert (status.error.party, status.error.rule) == ("bank_b", "limits.max_concurrent_jobs")
            assert status.error.message == ("bank_b is running 2 jobs, the most it takes at once "
                                            "(limits.max_concurrent_jobs = 2); try again when one has ended")
            quota = [r for r in cluster.audit("bank_b") if r["event"] == "quota_refused"]
            assert [(r["job_id"], r["limit"]) for r in quota] == [(status.job_id, "limits.max_concurrent_jobs")]
            release.touch()
            for client, job in zip((bank_b, analyst), running, strict=True):
                assert client.wait(job, timeout=120) == {"released": True}
        # with both ended, bank_b takes the job
        wait_idle(cluster)
        with cluster.client("bank_a", "bank_a") as bank_a:
            assert bank_a.run("default_rate_overall", LOAN_PARAMS)["rows"] == 1000
    finally:
        release.touch()


def submit_status(cluster, bank, identity, analysis, params):
    with cluster.client(bank, identity) as client:
        return client.submit_status(analysis, params)
