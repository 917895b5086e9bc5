"""The hash-chained audit log: append, reopen, and `smpc audit verify` on edited, inserted
and deleted records."""

from __future__ import annotations

import json

import pytest

from smpc import cli
from smpc.service.audit import GENESIS, AuditError, AuditLog, line_hash, read_lines, verify


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
