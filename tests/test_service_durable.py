"""Jobs and results outlive the party process: real `smpc party serve` processes, stopped with
SIGTERM or SIGKILL and started again on the same files.

- a finished job's result is still handed out after its coordinator restarted, and the
  database holds it sealed (the result's values are not in the file's bytes);
- a job running when a party stops fails at every party, with why -- told to a waiting client
  as a shutdown, and recorded at a killed party when it starts again;
- a job older than ``policy.result_retention_days`` is deleted, and the deletion audited.

One cluster serves the module; the tests run in order and each leaves every party serving.
"""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest
from service_harness import BANKS, LOAN_PARAMS, Cluster, smpc_cli, wait_for

from smpc.errors import PartyUnavailable, SmpcError
from smpc.service.rekey import key_id
from smpc.service.states import STATE_NAMES
from smpc.service.store import JobStore, StoreError


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("durable"), certs_by_cli=False)
    c.start()
    yield c
    codes = c.stop_all()
    assert all(code == 0 for code in codes.values()), codes



def wait_running(cluster, job_id):
    for bank in BANKS:
        with cluster.client(bank) as client:
            wait_for(lambda c=client: STATE_NAMES[c.get(job_id).state] == "running", deadline_s=120,
                     what=f"job {job_id} to run at {bank}")


def follow(cluster, bank, job_id, identity="bank_a"):
    with cluster.client(bank, identity) as client:
        for _ in client.events(job_id, timeout=120):
            pass
        return client.get(job_id)


def test_a_finished_job_and_its_result_survive_a_coordinator_restart(cluster):
    with cluster.client("bank_a", identity="analyst") as client:
        job_id = client.submit("default_rate_overall", LOAN_PARAMS, job_id="kept")
        result = client.wait(job_id)
    assert cluster.stop("bank_a") == 0  # SIGTERM
    # sealed at rest: the job is in the file, its result's values are not
    stored = b"".join(p.read_bytes() for p in cluster.store_path("bank_a").parent.glob("bank_a.sqlite*"))
    assert job_id.encode() in stored
    assert json.dumps(result).encode() not in stored
    values = [v for v in result.values() if isinstance(v, float)]
    assert values and not any(repr(v).encode() in stored for v in values), result
    cluster.start("bank_a")

    with cluster.client("bank_a", identity="analyst") as client:
        status = client.get(job_id)
        assert STATE_NAMES[status.state] == "succeeded" and status.coordinator == "bank_a"
        assert json.loads(status.result_json) == result
        assert client.result(job_id) == result
        events = list(client.events(job_id, timeout=30))  # the stored history, to its end
        assert [STATE_NAMES[e.state] for e in events][-1] == "succeeded"
        assert [e.seq for e in events] == list(range(len(events)))
    with cluster.client("bank_a", identity="outsider") as client, pytest.raises(SmpcError, match="no job"):
        client.get(job_id)  # kept does not mean open to anyone
    # the hand-out to analyst was audited once, before the restart; fetching again is not a new release
    assert [r["to"] for r in cluster.records("bank_a", job_id) if r["event"] == "outputs_released"] == ["analyst"]


def waiting_client(cluster, bank, job_id) -> tuple[threading.Thread, dict]:
    """A client in ``JobClient.wait`` for the job at ``bank``, its stream open (it has seen an
    event) when this returns; the thread puts the result or the error in the dict."""
    outcome: dict = {}
    seen = threading.Event()

    def waiter():
        with cluster.client(bank) as watching:
            try:
                outcome["result"] = watching.wait(job_id, on_event=lambda e: seen.set(), timeout=120)
            except Exception as exc:  # noqa: BLE001 - the test looks at what it is
                outcome["error"] = exc
            seen.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert seen.wait(60), "the waiting client saw no event"
    return thread, outcome


def test_a_job_running_when_its_coordinator_stops_fails_everywhere_and_the_client_is_told(cluster):
    with cluster.client("bank_a") as client:
        job_id = client.submit("test_endless_rounds", {}, job_id="coordinator-stops")
    wait_running(cluster, job_id)
    thread, outcome = waiting_client(cluster, "bank_a", job_id)
    assert cluster.stop("bank_a") == 0  # SIGTERM
    thread.join(60)
    error = outcome.get("error")
    assert isinstance(error, PartyUnavailable), outcome
    assert str(error) == f"the coordinator bank_a shut down while job {job_id} ran; the job failed at every party"
    for bank in ("bank_b", "bank_c"):
        status = follow(cluster, bank, job_id)
        assert STATE_NAMES[status.state] == "failed" and status.error.party == "bank_a", (bank, status)
        assert "the coordinator bank_a shut down" in status.error.message
    cluster.start("bank_a")
    with cluster.client("bank_a") as client:
        status = client.get(job_id)
        assert STATE_NAMES[status.state] == "failed", status
        assert status.error.message == str(error) and status.error.type == "PartyUnavailable"
        with pytest.raises(PartyUnavailable, match="the coordinator bank_a shut down while job"):
            client.result(job_id)
    finished = [r for r in cluster.records("bank_a", job_id) if r["event"] == "job_finished"]
    assert len(finished) == 1 and finished[0]["state"] == "failed"


def test_a_job_running_when_its_coordinator_is_killed_is_failed_there_when_it_starts_again(cluster):
    with cluster.client("bank_a") as client:
        job_id = client.submit("test_endless_rounds", {}, job_id="coordinator-killed")
    wait_running(cluster, job_id)
    thread, outcome = waiting_client(cluster, "bank_a", job_id)
    cluster.kill("bank_a")  # SIGKILL: no chance to record anything
    thread.join(60)
    assert isinstance(outcome.get("error"), PartyUnavailable), outcome
    assert str(outcome["error"]).startswith(f"{cluster.address('bank_a')} went away while job {job_id} ran ("), outcome
    for bank in ("bank_b", "bank_c"):
        status = follow(cluster, bank, job_id)
        assert STATE_NAMES[status.state] == "failed" and status.error.party == "bank_a", (bank, status)
    cluster.start("bank_a")
    with cluster.client("bank_a") as client:
        status = client.get(job_id)
        assert STATE_NAMES[status.state] == "failed", status
        assert status.error.type == "PartyUnavailable" and status.error.party == "bank_a"
        assert status.error.message.startswith(f"bank_a stopped while job {job_id} ran; the job failed at every party")
        assert client.run("default_rate_overall", LOAN_PARAMS)  # and the party works
    finished = [r for r in cluster.records("bank_a", job_id) if r["event"] == "job_finished"]
    assert len(finished) == 1 and finished[0]["found_at_start"] is True and finished[0]["state"] == "failed"


def test_a_job_past_its_retention_is_deleted_and_the_deletion_audited(cluster):
    with cluster.client("bank_a") as client:
        job_id = client.submit("default_rate_overall", LOAN_PARAMS, job_id="short-lived")
        assert client.wait(job_id)
    assert cluster.stop("bank_a") == 0
    config = cluster.configs["bank_a"]
    text = config.read_text()
    config.write_text(text.replace("[policy]\n", "[policy]\nresult_retention_days = 1e-9\n", 1))  # 86 microseconds
    try:
        cluster.start("bank_a")
        with cluster.client("bank_a") as client:
            with pytest.raises(SmpcError, match=r"bank_a: job 'bank_a/short-lived' ended .* and has been deleted: "
                                                r"its results are kept 1e-09 days \(policy\.result_retention_days\)"):
                client.get(job_id)
        with cluster.client("bank_a", identity="outsider") as client:
            with pytest.raises(SmpcError, match="no job 'bank_a/short-lived' that outsider may see"):
                client.get(job_id)  # to anyone else, no different from a job that never was
        expired = [r for r in cluster.records("bank_a", job_id) if r["event"] == "job_expired"]
        assert len(expired) == 1 and expired[0]["result_retention_days"] == 1e-9
        with sqlite3.connect(cluster.store_path("bank_a")) as db:
            row = db.execute("SELECT spec, status, result, expired_at FROM jobs WHERE job_id = ?",
                             (job_id,)).fetchone()
            assert row[:3] == (None, None, None) and row[3] is not None
            assert db.execute("SELECT count(*) FROM events WHERE job_id = ?", (job_id,)).fetchone() == (0,)
        with cluster.client("bank_b") as client:  # bank_b keeps it for its own retention
            assert STATE_NAMES[client.get(job_id).state] == "succeeded"
    finally:
        assert cluster.stop("bank_a") == 0
        config.write_text(text)
        cluster.start("bank_a")


def test_a_stopped_partys_store_is_sealed_again_under_a_new_key(cluster):
    """`smpc store rekey`: refused while the party runs; on a stopped party every job and result
    still reads back under the new key, the old key opens nothing in the file, and it is audited."""
    with cluster.client("bank_a", identity="analyst") as client:
        job_id = client.submit("default_rate_overall", LOAN_PARAMS, job_id="rekeyed")
        result = client.wait(job_id)
    config = str(cluster.configs["bank_a"])
    running = smpc_cli("store", "rekey", "--config", config, check=False, env=cluster.env())
    assert running.returncode == 2 and "another instance" in running.stderr, running
    key_file = cluster.store_key_path("bank_a")
    old_key = bytes.fromhex(key_file.read_text().strip())
    assert cluster.stop("bank_a") == 0
    done = smpc_cli("store", "rekey", "--config", config, env=cluster.env())
    assert "is sealed under a new key" in done.stdout, done
    new_key = bytes.fromhex(key_file.read_text().strip())
    retired = list(key_file.parent.glob(key_file.name + ".retired-*"))
    assert new_key != old_key and len(retired) == 1 and bytes.fromhex(retired[0].read_text().strip()) == old_key
    assert oct(key_file.stat().st_mode & 0o777) == "0o600" and not key_file.with_name(key_file.name + ".new").exists()
    with pytest.raises(StoreError, match="written under another key"):
        JobStore(cluster.store_path("bank_a"), old_key, "bank_a")
    rekeyed = [r for r in cluster.audit("bank_a") if r["event"] == "store_rekeyed"]
    assert len(rekeyed) == 1 and rekeyed[0]["new_key_id"] == key_id(new_key) and new_key.hex() not in str(rekeyed)
    cluster.start("bank_a")  # the log was sealed again after the re-key: the start accepts it
    with cluster.client("bank_a", identity="analyst") as client:
        assert client.result(job_id) == result
        assert client.run("default_rate_overall", LOAN_PARAMS)
