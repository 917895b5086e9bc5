"""The job store on its own: sealed columns, the key and owner checks, retention by the clock
the caller passes, and the configuration keys that name it (no servers)."""

from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest
from test_service_config import GOOD, party_dir, pki, write  # noqa: F401 - fixtures

from smpc.service.config import ConfigError, load_config
from smpc.service.store import JobStore, StoreError

KEY = bytes(range(32))
SPEC = {"analysis": "default_rate_overall", "params": {"label": "creditability", "watchlist": "secret-id-4711"}}
RESULT = {"default_rate": 0.30033333333, "count": 1000}


def fill(store: JobStore, job_id: str = "bank_a/j1", end: bool = True) -> None:
    store.add(job_id, "bank_a", ["bank_a", "analyst"], SPEC, {"stage": "received"}, "prepared")
    store.update(job_id, "running", {"stage": "running"}, False, b"event-0", 0)
    if end:
        store.update(job_id, "succeeded", {"stage": "succeeded"}, True, b"event-1", 1, RESULT, has_result=True)


def test_a_job_reads_back_as_written_and_nothing_of_it_is_in_the_file_in_the_clear(tmp_path):
    path = tmp_path / "bank_a.sqlite"
    store = JobStore(path, KEY, "bank_a")
    fill(store)
    store.close()
    assert os.stat(path).st_mode & 0o077 == 0
    data = path.read_bytes()
    assert b"bank_a/j1" in data  # what the store looks jobs up by
    for secret in (b"0.30033333333", b"secret-id-4711", b"creditability", b"event-1", b"succeeded\"}"):
        assert secret not in data
    store = JobStore(path, KEY, "bank_a")
    job = store.load("bank_a/j1")
    assert (job.state, job.spec, job.result, job.events) == ("succeeded", SPEC, RESULT, [b"event-0", b"event-1"])
    assert job.recipients == ["bank_a", "analyst"] and job.finished_at is not None and job.expired_at is None
    assert store.load("bank_a/none") is None and store.unfinished() == []


def test_another_key_or_another_partys_database_is_refused_at_open(tmp_path):
    path = tmp_path / "bank_a.sqlite"
    JobStore(path, KEY, "bank_a").close()
    with pytest.raises(StoreError, match="written under another key than key store.key_file holds"):
        JobStore(path, bytes(32), "bank_a")
    with pytest.raises(StoreError, match="belongs to 'bank_a'; key store.path"):
        JobStore(path, KEY, "bank_b")


def test_a_sealed_value_moved_to_another_job_does_not_open(tmp_path):
    path = tmp_path / "bank_a.sqlite"
    store = JobStore(path, KEY, "bank_a")
    fill(store, "bank_a/j1")
    fill(store, "bank_a/j2")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE jobs SET result = (SELECT result FROM jobs WHERE job_id = 'bank_a/j1') "
                   "WHERE job_id = 'bank_a/j2'")
    with pytest.raises(StoreError, match="job bank_a/j2's result .* does not open under the store key"):
        store.load("bank_a/j2")


def test_unfinished_jobs_are_listed_and_expiry_follows_the_callers_clock(tmp_path):
    store = JobStore(tmp_path / "bank_a.sqlite", KEY, "bank_a")
    fill(store, "bank_a/old")
    fill(store, "bank_a/running", end=False)
    assert store.unfinished() == ["bank_a/running"]
    assert store.expire(time.time() - 3600) == []  # ended less than an hour ago
    expired = store.expire(time.time() + 3600)
    assert [job_id for job_id, _ in expired] == ["bank_a/old"]  # a running job never expires
    store.remove("bank_a/old")
    tomb = store.load("bank_a/old")
    assert tomb.expired_at is not None and (tomb.spec, tomb.status, tomb.result, tomb.events) == (None, None, None, [])
    assert tomb.recipients == ["bank_a", "analyst"] and store.contains("bank_a/old")
    assert store.expire(time.time() + 3600) == []  # once


# ----- configuration -----------------------------------------------------------------------
def test_the_store_sits_beside_the_audit_log_and_keeps_results_30_days_by_default(party_dir):  # noqa: F811
    config = load_config(write(party_dir, GOOD))
    assert config.store_path == (party_dir / "audit" / "bank_a.sqlite").resolve()
    assert config.store_key == bytes.fromhex("ab" * 32)
    assert config.policy.result_retention_days == 30
    moved = GOOD.replace('key_file = "store_key"', 'key_file = "store_key"\npath = "db/jobs.sqlite"')
    assert load_config(write(party_dir, moved)).store_path == (party_dir / "db" / "jobs.sqlite").resolve()
    short = GOOD.replace("max_rows = 1000", "max_rows = 1000\nresult_retention_days = 0.5")
    assert load_config(write(party_dir, short)).policy.result_retention_days == 0.5


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace('[store]\nkey_file = "store_key"\n', ""), r"missing key 'store'"),
    (lambda t: t.replace('key_file = "store_key"', 'key_file = "nowhere"'),
     r"key 'store\.key_file': file .* not exist"),
    (lambda t: t.replace('key_file = "store_key"', 'key_file = "store_key"\npath = "audit/bank_a.jsonl"'),
     r"key 'store\.path': .* is the audit log or the key file"),
    (lambda t: t.replace("max_rows = 1000", "max_rows = 1000\nresult_retention_days = 0"),
     r"key 'policy\.result_retention_days' must be a positive number"),
])
def test_bad_store_or_retention_config_names_the_key(party_dir, edit, message):  # noqa: F811
    with pytest.raises(ConfigError, match=message):
        load_config(write(party_dir, edit(GOOD)))


def test_the_store_key_file_is_the_owners_only_and_holds_32_bytes(party_dir):  # noqa: F811
    key = party_dir / "store_key"
    key.chmod(0o644)
    with pytest.raises(ConfigError, match=r"key 'store\.key_file': .* readable by others \(mode 0644\)"):
        load_config(write(party_dir, GOOD))
    key.write_text("too short\n")
    key.chmod(0o600)
    with pytest.raises(ConfigError, match=r"key 'store\.key_file': .* does not hold 64 hex digits"):
        load_config(write(party_dir, GOOD))


def test_the_example_configs_name_a_store_key_and_a_retention():
    from test_service_config import SERVICES

    for bank in ("bank_a", "bank_b", "bank_c"):
        config = load_config(SERVICES / f"{bank}.toml", check_files=False)
        assert config.store_path.name == f"{bank}.sqlite" and config.policy.result_retention_days == 30
        assert f"certs/{bank}.store_key" in (SERVICES / f"{bank}.toml").read_text()


def test_results_json_round_trips_non_finite_numbers(tmp_path):
    store = JobStore(tmp_path / "s.sqlite", KEY, "bank_a")
    value = {"mean": float("nan"), "max": float("inf")}
    opened = store.open("j", "result", store.seal("j", "result", value))
    assert json.dumps(opened, allow_nan=True) == json.dumps(value, allow_nan=True)


def test_rekey_seals_every_column_and_event_again_and_the_old_key_opens_nothing(tmp_path):
    path = tmp_path / "bank_a.sqlite"
    store = JobStore(path, KEY, "bank_a")
    fill(store)
    fill(store, "bank_a/j2", end=False)
    before = {row[0]: row[1:] for row in sqlite3.connect(path).execute("SELECT job_id, spec, status, result FROM jobs")}
    new_key = bytes(range(32, 64))
    assert store.rekey(new_key) == 2
    assert store.load("bank_a/j1").result == RESULT  # the open store goes on under the new key
    store.close()
    with sqlite3.connect(path) as db:
        after = {row[0]: row[1:] for row in db.execute("SELECT job_id, spec, status, result FROM jobs")}
    for job_id, columns in before.items():  # every ciphertext is new (fresh nonces, another key)
        assert all(a != b for a, b in zip(columns, after[job_id], strict=True) if a is not None)
    with pytest.raises(StoreError, match="written under another key"):
        JobStore(path, KEY, "bank_a")
    store = JobStore(path, new_key, "bank_a")
    j1, j2 = store.load("bank_a/j1"), store.load("bank_a/j2")
    assert (j1.spec, j1.result, j1.events) == (SPEC, RESULT, [b"event-0", b"event-1"])
    assert (j2.state, j2.events, j2.result) == ("running", [b"event-0"], None)
    with pytest.raises(StoreError, match="has 5 bytes"):
        store.rekey(b"short")
