"""The tamper-evident audit log: one JSON object per line, chained by SHA-256.

Every record carries ``seq`` (0, 1, 2, ... without gaps), ``time`` (UTC, ISO 8601),
``party``, ``event`` and ``prev``: the hex SHA-256 of the previous line's bytes (64 zeros for
the first). ``verify`` walks the chain and reports the first record that was edited,
inserted or deleted. What a hash chain cannot show: changes to the newest record or a cut
of the newest records, since nothing follows them. The service therefore writes a record at
every start and stop, and ``verify`` prints the head hash so an operator can anchor it
elsewhere (a ticket, a peer, a WORM store) and compare later.

The parties anchor each other's logs: at the end of every job each party signs its head
(``head_payload``: party, record count, head hash, time) with its certificate's key and sends
it to the others, which record it (``peer_head``). ``cross_check`` then holds every log
against the heads the other logs recorded of it: a log rewritten with recomputed hashes no
longer has the signed hash at that count, a cut log ends before it. Records after the last
head a peer recorded (the *unanchored tail*) can only be vouched for at the next exchange.

One process writes a log: ``AuditLog`` holds an exclusive lock (``flock`` on ``PATH.lock``,
which names the holder's pid) for its lifetime, and a second instance of the party refuses
to start. Each record is one ``write`` of the whole line, then ``fsync``; a write that fails
is cut back off. A crash in the middle of a write can leave a torn last line (no newline, not
a complete record): the next start cuts it and records ``audit_repaired`` with the size and
hash of what it cut. Anything else broken refuses the start.

Events the service writes: ``service_started``/``service_stopped``, ``job_received``,
``policy_decision``, ``job_refused`` (another party refused), ``job_started``,
``inputs_used`` (source, columns, row count), ``job_finished`` (state, bytes, rounds,
seconds, error), ``outputs_released`` (to whom), ``job_cancelled``. Records never contain
input values or results: only names, counts and identities.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from smpc.errors import SmpcError

GENESIS = "0" * 64
SIGNATURES_KEPT = 4096  # jobs whose signature later records of them still carry
REQUIRED_FIELDS = ("time", "party", "event")
HEAD_CONTEXT = "smpc.v1.AuditHead/1"
HEAD_HASH = re.compile(r"[0-9a-f]{64}")


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
    owner = None
    for idx, line in enumerate(lines):
        n = idx + 1
        want_prev = hashes[-1] if hashes else GENESIS
        expected = len(hashes)
        rec = _parse(line)
        if rec is not None and rec["seq"] == expected and rec["prev"] == want_prev:
            missing = [k for k in REQUIRED_FIELDS if not isinstance(rec.get(k), str) or not rec[k]]
            owner = rec.get("party") if owner is None else owner
            problem = None
            if missing:
                problem = f"line {n} (record {expected}) lacks the required field(s) {', '.join(missing)}"
            elif rec["party"] != owner:
                problem = f"line {n} (record {expected}) names party {rec['party'][:64]!r} in {owner[:64]!r}'s log"
            if problem is not None:
                return VerifyResult(False, len(hashes), hashes[-1] if hashes else GENESIS, problem, n)
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


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _torn_tail(data: bytes) -> int | None:
    """Where a torn last line starts, or None. Every record is written as one line with its
    newline in one ``write``, so a line that was written whole ends with a newline: bytes after
    the last newline that are not one complete record are what a crash left of a write."""
    if not data or data.endswith(b"\n"):
        return None
    cut = data.rfind(b"\n") + 1
    return None if _parse(data[cut:]) is not None else cut


class AuditLog:
    """Appends chained records; thread-safe; every record is written whole and fsynced.

    Opening a log takes its lock (``PATH.lock``) for the life of this object: a second writer,
    in this process or another, gets an AuditError naming the holder. Opening an existing log
    verifies it: a party refuses to extend a broken chain, except for a torn last line, which
    it cuts and records (``audit_repaired``).
    """

    def __init__(self, path: str | Path, party: str):
        self.path = Path(path)
        self.party = party
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.job_ids: set[str] = set()
        # the requester's signature of each recent job, carried into every later record of it
        self._signatures: OrderedDict[str, str] = OrderedDict()
        self._lockfile = self._take_lock()
        try:
            self._open()
        except BaseException:
            self._lockfile.close()
            raise

    def _take_lock(self):
        lock_path = self.path.with_name(self.path.name + ".lock")
        f = open(lock_path, "a+")  # noqa: SIM115 - held open for the life of the log
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read(64).strip()
            f.close()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise AuditError(
                f"{self.party}: another instance{who} is writing the audit log {self.path} (it holds {lock_path}); "
                "a log has one writer: stop that instance first, or wait until it has stopped"
            ) from None
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        return f

    def _open(self) -> None:
        data = self.path.read_bytes() if self.path.exists() else b""
        torn = _torn_tail(data)
        kept = data if torn is None else data[:torn]
        lines = kept.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        result = verify_lines(lines)
        if not result.ok:
            raise AuditError(
                f"audit log {self.path} is broken ({result.problem}); run `smpc audit verify {self.path}`, "
                "keep the file as evidence and start a new log"
            )
        self._seq, self._prev = result.records, result.head
        for line in lines:
            rec = json.loads(line)
            if rec.get("event") == "job_received" and rec.get("job_id"):
                self.job_ids.add(rec["job_id"])
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if created:  # the new file's name must survive a crash too
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        if torn is not None:
            os.ftruncate(self._fd, torn)
            os.fsync(self._fd)
        self._size = len(kept)
        if kept and not kept.endswith(b"\n"):  # a whole last record whose newline was not written
            self._append(b"\n")
        if torn is not None:
            cut = data[torn:]
            self.record("audit_repaired", cut_bytes=len(cut), cut_sha256=hashlib.sha256(cut).hexdigest(),
                        after_record=self._seq - 1,
                        reason="the last line was torn (no newline, not a complete record): a write that a crash "
                               "interrupted; it was cut")

    def _append(self, data: bytes) -> None:
        """Write ``data`` at the end and fsync; on failure cut the file back to where it was, so
        a record is in the log whole or not at all."""
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise AuditError(f"cannot write the audit log {self.path}: {exc}") from exc
        self._size += len(data)

    def head(self) -> tuple[int, str]:
        """(records, hash of the last record's line) as of now."""
        with self._lock:
            return self._seq, self._prev

    def record(self, event: str, **fields) -> dict:
        """Append one record; returns it. Every record of a job whose ``job_received`` named
        the requester's signature (``signature_sha256``) carries that hash too, so each record
        can be tied to the signed request it serves without reading back to the first."""
        with self._lock:
            if self._fd is None:
                raise AuditError(f"the audit log {self.path} is closed")
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
                "time": _utc_now(),
                "party": self.party,
                "event": event,
                **fields,
                "prev": self._prev,
            }
            line = json.dumps(rec, separators=(",", ":"), ensure_ascii=True, default=str).encode()
            if b"\n" in line:  # pragma: no cover - json.dumps never emits raw newlines
                raise AuditError("an audit record may not contain a newline")
            self._append(line + b"\n")
            self._seq += 1
            self._prev = line_hash(line)
            if event == "job_received" and fields.get("job_id"):
                self.job_ids.add(fields["job_id"])
            return rec

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if not self._lockfile.closed:
                self._lockfile.close()  # releases the lock


# ----- anchoring across parties -------------------------------------------------------------
def head_payload(party: str, records: int, head: str, time: str) -> bytes:
    """The bytes a party signs to vouch for its log's head: canonical JSON."""
    body = {"context": HEAD_CONTEXT, "party": party, "records": int(records), "head": head, "time": time}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def encode_signature(signature: bytes) -> str:
    return base64.b64encode(signature).decode()


@dataclass
class Finding:
    party: str  # whose log
    kind: str  # "rewritten", "cut", "broken" (tampered) or "unanchored tail"
    text: str

    @property
    def tampered(self) -> bool:
        return self.kind in ("rewritten", "cut", "broken")


@dataclass
class CrossCheck:
    findings: list[Finding]
    anchored: dict  # party -> (records, by whom) of the newest head the others recorded

    @property
    def ok(self) -> bool:
        return not any(f.tampered for f in self.findings)

    def report(self) -> str:
        out = []
        for f in self.findings:
            out.append(f"TAMPERED: {f.party}: {f.kind}: {f.text}" if f.tampered else f"UNANCHORED: {f.party}: {f.text}")
        out.append("ok: every head the parties recorded of each other is in the logs" if self.ok
                   else "TAMPERED: a log disagrees with the heads its peers recorded")
        out.append("(records after the newest head a peer recorded are vouched for by no one yet: they can be checked "
                   "only against the heads of a later exchange)")
        return "\n".join(out)


def cross_check(paths) -> CrossCheck:
    """Hold every log at ``paths`` against the heads the other logs recorded of it
    (``peer_head``): the record with that count must have that hash. Also verifies each chain."""
    logs: dict[str, list[bytes]] = {}
    findings: list[Finding] = []
    for path in paths:
        lines = read_lines(path)
        result = verify_lines(lines)
        first = _parse(lines[0]) if lines else None
        party = first.get("party") if first is not None and isinstance(first.get("party"), str) else str(path)
        if party in logs:
            raise AuditError(f"two logs of party {party!r} given ({path})")
        logs[party] = lines
        if not result.ok:
            findings.append(Finding(party, "broken", f"{path}: {result.problem}"))
    heads: dict[str, list[tuple[str, int, str, str]]] = {p: [] for p in logs}  # of -> (by, records, hash, time)
    for by, lines in logs.items():
        for line in lines:
            rec = _parse(line)
            if rec is None or rec.get("event") != "peer_head" or rec.get("party") != by:
                continue
            of, count, head = rec.get("peer"), rec.get("records"), rec.get("head")
            if of in heads and isinstance(count, int) and isinstance(head, str):
                heads[of].append((by, count, head, str(rec.get("head_time", ""))))
    anchored = {}
    for of, recorded in heads.items():
        lines = logs[of]
        bad = False
        for by, count, head, when in recorded:
            if count == 0:
                continue
            if count > len(lines):
                findings.append(Finding(of, "cut", f"the log has {len(lines)} records, but {by} recorded {of}'s "
                                                   f"signed head at {count} records ({when}): its end was cut"))
                bad = True
                break
            if line_hash(lines[count - 1]) != head:
                findings.append(Finding(of, "rewritten", f"record {count - 1} is not the one {of} signed to {by} "
                                                         f"({when}): the log was rewritten up to there"))
                bad = True
                break
        if not recorded:
            findings.append(Finding(of, "unanchored tail", f"no other log given records a head of {of}'s log: "
                                                           f"none of its {len(lines)} records can be checked"))
            continue
        by, count, _, when = max(recorded, key=lambda r: r[1])
        anchored[of] = (count, by)
        if not bad and len(lines) > count:
            events = [(_parse(x) or {}).get("event", "?") for x in lines[count:]]
            findings.append(Finding(of, "unanchored tail", f"records {count}..{len(lines) - 1} come after the "
                                                           f"newest head a peer recorded ({by}, {when}): "
                                                           f"{', '.join(map(str, events))}"))
    return CrossCheck(findings, anchored)
