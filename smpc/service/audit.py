"""The tamper-evident audit log: one JSON object per line, chained by SHA-256.

Every record carries ``seq`` (0, 1, 2, ... without gaps), ``time`` (UTC, ISO 8601),
``party``, ``event`` and ``prev``: the hex SHA-256 of the previous line's bytes (64 zeros for
the first). ``verify`` walks the chain and reports the first record that was edited,
inserted or deleted. What a hash chain cannot show: changes to the newest record or a cut
of the newest records, since nothing follows them. The service therefore writes a record at
every start and stop, and ``verify`` prints the head hash so an operator can anchor it
elsewhere (a ticket, a peer, a WORM store) and compare later.

Events the service writes: ``service_started``/``service_stopped``, ``job_received``,
``policy_decision``, ``job_refused`` (another party refused), ``job_started``,
``inputs_used`` (source, columns, row count), ``job_finished`` (state, bytes, rounds,
seconds, error), ``outputs_released`` (to whom), ``job_cancelled``. Records never contain
input values or results: only names, counts and identities.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from smpc.errors import SmpcError

GENESIS = "0" * 64
SIGNATURES_KEPT = 4096  # jobs whose signature later records of them still carry


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


class AuditError(SmpcError):
    """The audit log cannot be written or its chain is broken."""


@dataclass
class VerifyResult:
    ok: bool
    records: int
    head: str
    problem: str | None = None
    line: int | None = None  # 1-based line of the first problem

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.records} records, chain intact, head sha256 {self.head}"
        return f"TAMPERED: {self.problem}"


def _parse(line: bytes):
    try:
        rec = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("seq"), int) or not isinstance(rec.get("prev"), str):
        return None
    return rec


def verify_lines(lines: list[bytes]) -> VerifyResult:
    """Check a chain given as the file's lines (without newlines)."""
    hashes: list[str] = []
    for idx, line in enumerate(lines):
        n = idx + 1
        want_prev = hashes[-1] if hashes else GENESIS
        expected = len(hashes)
        rec = _parse(line)
        if rec is not None and rec["seq"] == expected and rec["prev"] == want_prev:
            hashes.append(line_hash(line))
            continue
        # the first anomaly: classify it
        nxt = _parse(lines[idx + 1]) if idx + 1 < len(lines) else None
        if nxt is not None and nxt["seq"] == expected and nxt["prev"] == want_prev:
            problem = f"line {n} was inserted (the chain continues at line {n + 1})"
        elif rec is not None and rec["seq"] == expected - 1 and rec["prev"] == (
            hashes[-2] if len(hashes) > 1 else GENESIS
        ):
            problem = f"line {idx} was inserted (the chain continues at line {n})"
        elif rec is None:
            problem = f"line {n} was edited: it is not a valid audit record"
        elif rec["prev"] == want_prev:
            problem = f"line {n} (record {expected}) was edited: its sequence number reads {rec['seq']}"
        elif rec["seq"] > expected:
            gone = f"record {expected}" if rec["seq"] == expected + 1 else f"records {expected}..{rec['seq'] - 1}"
            problem = f"{gone} deleted before line {n}"
        elif rec["seq"] == expected:
            if idx == 0:
                problem = "line 1 (record 0) was edited: it does not start the chain"
            else:
                problem = f"line {idx} (record {expected - 1}) was edited: line {n} holds a different hash of it"
        else:
            problem = f"line {n} was inserted or moved: it repeats record {rec['seq']} after record {expected - 1}"
        return VerifyResult(False, len(hashes), hashes[-1] if hashes else GENESIS, problem, n)
    return VerifyResult(True, len(hashes), hashes[-1] if hashes else GENESIS)


def read_lines(path: str | Path) -> list[bytes]:
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def verify(path: str | Path) -> VerifyResult:
    """Verify the audit log at ``path``."""
    return verify_lines(read_lines(path))


def records(path: str | Path) -> list[dict]:
    """Every record of a log (no verification)."""
    return [json.loads(line) for line in read_lines(path)]


class AuditLog:
    """Appends chained records; thread-safe; every record is flushed and fsynced.

    Opening an existing log verifies it: a party refuses to extend a broken chain.
    """

    def __init__(self, path: str | Path, party: str):
        self.path = Path(path)
        self.party = party
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.job_ids: set[str] = set()
        # the requester's signature of each recent job, carried into every later record of it
        self._signatures: OrderedDict[str, str] = OrderedDict()
        if self.path.exists() and self.path.stat().st_size:
            lines = read_lines(self.path)
            result = verify_lines(lines)
            if not result.ok:
                raise AuditError(
                    f"audit log {self.path} is broken ({result.problem}); run `smpc audit verify {self.path}`, "
                    "keep the file as evidence and start a new log"
                )
            self._seq = result.records
            self._prev = result.head
            for line in lines:
                rec = json.loads(line)
                if rec.get("event") == "job_received" and rec.get("job_id"):
                    self.job_ids.add(rec["job_id"])
            if not self.path.read_bytes().endswith(b"\n"):
                with open(self.path, "ab") as f:
                    f.write(b"\n")
        else:
            self._seq = 0
            self._prev = GENESIS
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "ab")

    def record(self, event: str, **fields) -> dict:
        """Append one record; returns it. Every record of a job whose ``job_received`` named
        the requester's signature (``signature_sha256``) carries that hash too, so each record
        can be tied to the signed request it serves without reading back to the first."""
        with self._lock:
            job_id = fields.get("job_id")
            if isinstance(job_id, str) and job_id:
                if event == "job_received" and fields.get("signature_sha256"):
                    self._signatures[job_id] = fields["signature_sha256"]
                    while len(self._signatures) > SIGNATURES_KEPT:
                        self._signatures.popitem(last=False)
                elif job_id in self._signatures and "signature_sha256" not in fields:
                    fields["signature_sha256"] = self._signatures[job_id]
            rec = {
                "seq": self._seq,
                "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z"),
                "party": self.party,
                "event": event,
                **fields,
                "prev": self._prev,
            }
            line = json.dumps(rec, separators=(",", ":"), ensure_ascii=True, default=str).encode()
            if b"\n" in line:  # pragma: no cover - json.dumps never emits raw newlines
                raise AuditError("an audit record may not contain a newline")
            try:
                self._file.write(line + b"\n")
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:
                raise AuditError(f"cannot write the audit log {self.path}: {exc}") from exc
            self._seq += 1
            self._prev = line_hash(line)
            if event == "job_received" and fields.get("job_id"):
                self.job_ids.add(fields["job_id"])
            return rec

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()
