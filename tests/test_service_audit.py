"""The hash-chained audit log: append, reopen, and `smpc audit verify` on edited, inserted
and deleted records."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from smpc import cli
from smpc.service.audit import GENESIS, AuditError, AuditLog, line_hash, read_lines, records, verify


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, "bank_a")
    audit.record("service_started", port=1)
    for i in range(4):
        audit.record("job_received", job_id=f"job-{i}", analysis="default_rate_overall", requester="bank_b")
        audit.record("policy_decision", job_id=f"job-{i}", decision="accept")
    audit.close()
    return path


def lines(path):
    return path.read_bytes().splitlines()


def rewrite(path, new_lines):
    path.write_bytes(b"\n".join(new_lines) + b"\n")


def verify_cli(path, capsys):
    code = cli.main(["audit", "verify", str(path)])
    return code, capsys.readouterr().out


def test_records_are_chained_json_lines(log, capsys):
    raw = lines(log)
    recs = [json.loads(x) for x in raw]
    assert [r["seq"] for r in recs] == list(range(9))
    assert recs[0]["prev"] == GENESIS
    assert all(recs[i]["prev"] == line_hash(raw[i - 1]) for i in range(1, 9))
    assert all(r["party"] == "bank_a" and r["time"].endswith("Z") for r in recs)
    code, out = verify_cli(log, capsys)
    assert code == 0 and "ok: 9 records" in out and line_hash(raw[-1]) in out


def test_an_edited_record_is_reported(log, capsys):
    raw = lines(log)
    raw[3] = raw[3].replace(b'"requester":"bank_b"', b'"requester":"bank_x"')
    rewrite(log, raw)
    code, out = verify_cli(log, capsys)
    assert code == 1 and "line 4 (record 3) was edited" in out


def test_an_edit_that_breaks_the_json_is_reported(log):
    raw = lines(log)
    raw[5] = raw[5][:-3]
    rewrite(log, raw)
    assert "line 6 was edited" in verify(log).problem


def test_an_inserted_record_is_reported(log, capsys):
    raw = lines(log)
    rewrite(log, raw[:4] + [raw[2]] + raw[4:])  # a copy of an old record slipped in as line 5
    code, out = verify_cli(log, capsys)
    assert code == 1 and "line 5 was inserted" in out


def test_a_forged_record_inserted_with_a_valid_link_is_reported(log):
    raw = lines(log)
    forged = json.loads(raw[3])
    forged.update(seq=4, prev=line_hash(raw[3]), requester="bank_x")
    forged_line = json.dumps(forged, separators=(",", ":")).encode()
    rewrite(log, raw[:4] + [forged_line] + raw[4:])
    result = verify(log)
    assert not result.ok and result.problem.startswith("line 5 was inserted")


def test_a_deleted_record_is_reported(log, capsys):
    raw = lines(log)
    rewrite(log, raw[:2] + raw[3:])
    code, out = verify_cli(log, capsys)
    assert code == 1 and "record 2 deleted before line 3" in out
    rewrite(log, raw[:2] + raw[4:])
    assert "records 2..3 deleted before line 3" in verify(log).problem


def test_a_reopened_log_continues_the_chain_and_remembers_job_ids(log):
    audit = AuditLog(log, "bank_a")
    assert audit.job_ids == {f"job-{i}" for i in range(4)}
    audit.record("service_started", port=2)
    audit.close()
    result = verify(log)
    assert result.ok and result.records == 10
    assert len(read_lines(log)) == 10


def test_a_party_refuses_to_extend_a_broken_log(log):
    raw = lines(log)
    rewrite(log, raw[:2] + raw[3:])
    with pytest.raises(AuditError, match="is broken"):
        AuditLog(log, "bank_a")


# ----- required fields ---------------------------------------------------------------------
def rechain(new_lines, start=0):
    """The lines with every hash and sequence number from line ``start`` on recomputed: what a
    forger who rewrites the log produces (and what a hash chain alone cannot see)."""
    out = list(new_lines[:start])
    prev = line_hash(out[-1]) if out else GENESIS
    for seq, line in enumerate(new_lines[start:], start):
        rec = json.loads(line)
        rec.update(seq=seq, prev=prev)
        line = json.dumps(rec, separators=(",", ":")).encode()
        out.append(line)
        prev = line_hash(line)
    return out


@pytest.mark.parametrize("field", ["time", "party", "event"])
def test_a_record_without_a_required_field_is_rejected(log, field, capsys):
    raw = [json.loads(x) for x in lines(log)]
    del raw[4][field]
    rewrite(log, rechain([json.dumps(r).encode() for r in raw]))
    code, out = verify_cli(log, capsys)
    assert code == 1 and f"line 5 (record 4) lacks the required field(s) {field}" in out


def test_a_record_of_another_party_is_rejected(log):
    raw = [json.loads(x) for x in lines(log)]
    raw[6]["party"] = "bank_b"
    rewrite(log, rechain([json.dumps(r).encode() for r in raw]))
    assert "line 7 (record 6) names party 'bank_b' in 'bank_a''s log" in verify(log).problem


# ----- one writer ----------------------------------------------------------------------------
def test_a_second_writer_is_refused_and_the_lock_ends_with_the_first(log):
    first = AuditLog(log, "bank_a")
    with pytest.raises(AuditError) as info:
        AuditLog(log, "bank_a")
    message = str(info.value)
    assert f"another instance (pid {os.getpid()}) is writing the audit log {log}" in message
    first.record("job_received", job_id="job-9")
    first.close()
    second = AuditLog(log, "bank_a")  # the lock went with the first writer
    second.record("service_started", port=3)
    second.close()
    assert verify(log).ok and verify(log).records == 11


def test_a_failed_write_leaves_no_partial_record(log, monkeypatch):
    audit = AuditLog(log, "bank_a")
    size = log.stat().st_size
    real_write = os.write

    def half_then_full(fd, data):  # the disk fills half-way through the record
        if fd == audit._fd and len(data) > 20:
            real_write(fd, bytes(data[:20]))
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(AuditError, match="No space left on device"):
        audit.record("job_received", job_id="job-full")
    monkeypatch.undo()
    assert log.stat().st_size == size  # cut back: the log is whole
    audit.record("job_received", job_id="job-after")
    audit.close()
    assert verify(log).ok and verify(log).records == 10


# ----- a torn last line ----------------------------------------------------------------------
@pytest.mark.parametrize("torn", [b'{"seq":9,"time":"2026-01-01T00:0', b"\0" * 300])
def test_a_torn_last_line_is_cut_and_the_repair_audited(log, torn):
    before = log.read_bytes()
    log.write_bytes(before + torn)  # a crash in the middle of a write (or blocks never written)
    assert not verify(log).ok
    audit = AuditLog(log, "bank_a")
    audit.close()
    result = verify(log)
    assert result.ok and result.records == 10
    assert log.read_bytes().startswith(before)
    repaired = records(log)[-1]
    assert repaired["event"] == "audit_repaired" and repaired["after_record"] == 8
    assert repaired["cut_bytes"] == len(torn) and repaired["cut_sha256"] == hashlib.sha256(torn).hexdigest()
    assert torn.decode(errors="replace") not in log.read_text(errors="replace")


def test_a_whole_last_record_without_its_newline_is_kept(log):
    log.write_bytes(log.read_bytes()[:-1])
    audit = AuditLog(log, "bank_a")
    audit.record("service_started", port=4)
    audit.close()
    assert verify(log).ok and [r["event"] for r in records(log)][-2:] == ["policy_decision", "service_started"]


def test_a_broken_line_in_the_middle_still_refuses_the_start(log):
    raw = lines(log)
    raw[3] = raw[3][:-5]
    log.write_bytes(b"\n".join(raw) + b"\n" + b'{"seq":9,"ti')  # a torn end does not excuse the middle
    with pytest.raises(AuditError, match="line 4 was edited"):
        AuditLog(log, "bank_a")


def test_an_unparseable_complete_last_line_is_an_edit_not_a_tear(log):
    raw = lines(log)
    raw[-1] = raw[-1][:-5]
    rewrite(log, raw)  # with its newline: it was written whole, then changed
    with pytest.raises(AuditError, match="line 9 was edited"):
        AuditLog(log, "bank_a")
