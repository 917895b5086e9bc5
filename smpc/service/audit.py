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
head a peer recorded (the *unanchored tail*) can only be vouched for at a later exchange: heads
also go out every ``anchor_interval_s`` while the log grows, and once more at a clean stop.

A clean stop also *seals* the log: the party signs its final head into ``PATH.seal``. The next
start of the party checks the seal (same record count, same head hash, its own certificate's
signature) before it writes anything, so records appended, cut or edited while no party process
ran refuse the start; ``cross_check`` holds a sealed log to its seal, so such records show as
tampered there too, also for the party that stopped last and whose final head no peer holds.
A seal binds the log to the holder of the party's key: against that insider only the heads the
peers recorded help, which is why both exist.

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
import dataclasses
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
SEAL_SUFFIX = ".seal"
ANCHOR_EVENTS = ("peer_head", "peer_head_refused")  # records that anchoring itself writes


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

    def __init__(self, path: str | Path, party: str, check_seal=None):
        """``check_seal(seal)`` raises AuditError when a seal found at start is not this party's
        signature (the service checks it against the consortium CA); without it only the count
        and head hash are held to the seal."""
        self.path = Path(path)
        self.party = party
        self._lock = threading.Lock()
        self._check_seal = check_seal
        self.resumed_from: Seal | None = None  # the seal of the clean stop this start follows
        self.sealed = False
        self.last_own_record = -1  # seq of the newest record anchoring did not write
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
        seal = read_seal(self.path)
        if seal is not None:
            now = (result.records, result.head)
            if torn is not None or seal.party != self.party or (seal.records, seal.head) != now:
                torn_text = ", and a torn last line" if torn is not None else ""
                raise AuditError(
                    f"{self.party}: the audit log {self.path} changed after this party sealed it at its last clean "
                    f"stop (sealed: {seal.records} records, head {seal.head[:16]}...; now: {result.records} records, "
                    f"head {result.head[:16]}...{torn_text}): records were added, cut or edited while no party "
                    f"process ran. Keep the log and {seal_path(self.path).name} as evidence, run "
                    "`smpc audit verify`, and start a new log"
                )
            if self._check_seal is not None:
                self._check_seal(seal)
            self.resumed_from = seal
        for line in lines:
            rec = json.loads(line)
            if rec.get("event") == "job_received" and rec.get("job_id"):
                self.job_ids.add(rec["job_id"])
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if created:  # the new file's name must survive a crash too
            fsync_dir(self.path.parent)
        if torn is not None:
            os.ftruncate(self._fd, torn)
            os.fsync(self._fd)
        if seal is not None:  # checked: the log goes on, and a stale seal must not outlive this start
            _remove_durably(seal_path(self.path))
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
            if self._fd is None or self.sealed:
                raise AuditError(f"the audit log {self.path} is {'sealed' if self.sealed else 'closed'}")
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
            if event not in ANCHOR_EVENTS:
                self.last_own_record = self._seq
            self._seq += 1
            self._prev = line_hash(line)
            if event == "job_received" and fields.get("job_id"):
                self.job_ids.add(fields["job_id"])
            return rec

    def seal(self, sign=None, certificate_pem: str = "") -> Seal:
        """Write ``PATH.seal`` for the head as of now, signed with ``sign(payload)`` (the party's
        key; unsigned in plaintext development mode), and take no record after it."""
        with self._lock:
            if self._fd is None:
                raise AuditError(f"the audit log {self.path} is closed")
            seal = Seal(self.party, self._seq, self._prev, _utc_now(), b"", certificate_pem)
            if sign is not None:
                seal = dataclasses.replace(seal, signature=sign(seal.payload()))
            write_seal(self.path, seal)
            self.sealed = True
            return seal

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


def decode_signature(text) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True) if isinstance(text, str) else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Seal:
    """A party's signed statement, written at a clean stop, of its log's final head."""

    party: str
    records: int
    head: str
    time: str
    signature: bytes
    certificate_pem: str

    def payload(self) -> bytes:
        return head_payload(self.party, self.records, self.head, self.time)

    def timestamp(self) -> float:
        return _when(self.time)


def seal_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SEAL_SUFFIX)


def read_seal(path: str | Path) -> Seal | None:
    """The seal beside the log at ``path``, or None; AuditError when it is not a seal."""
    where = seal_path(path)
    try:
        raw = where.read_bytes()
    except FileNotFoundError:
        return None
    try:
        body = json.loads(raw)
        seal = Seal(body["party"], body["records"], body["head"], body["time"],
                    decode_signature(body["signature"]), body["certificate_pem"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        seal = None
    if (seal is None or not isinstance(seal.party, str) or not isinstance(seal.records, int) or seal.records < 0
            or not isinstance(seal.head, str) or not HEAD_HASH.fullmatch(seal.head) or not isinstance(seal.time, str)
            or seal.signature is None or not isinstance(seal.certificate_pem, str)):
        raise AuditError(f"{where} is not an audit seal (party, records, head, time, signature, certificate_pem)")
    return seal


def write_seal(path: str | Path, seal: Seal) -> None:
    """Write the seal durably: a temporary file, fsync, rename, fsync of the directory."""
    where = seal_path(path)
    body = {"party": seal.party, "records": seal.records, "head": seal.head, "time": seal.time,
            "signature": encode_signature(seal.signature), "certificate_pem": seal.certificate_pem}
    tmp = where.with_name(where.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, json.dumps(body, sort_keys=True, indent=1).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, where)
    fsync_dir(where.parent)


def fsync_dir(directory: Path) -> None:
    """Make a directory's entries (a new, renamed or removed file) survive a crash."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _remove_durably(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)


@dataclass
class Finding:
    party: str  # whose log
    kind: str  # see TAMPER_KINDS; otherwise "unanchored tail"
    text: str

    @property
    def tampered(self) -> bool:
        return self.kind in TAMPER_KINDS


TAMPER_KINDS = ("rewritten", "cut", "broken", "appended", "forged head", "bad seal")


@dataclass
class CrossCheck:
    findings: list[Finding]
    anchored: dict  # party -> (records, by whom) of the newest head the others recorded, or its seal
    unchecked_signatures: int = 0  # recorded heads whose signer's certificate no given log holds
    ca_checked: bool = False

    @property
    def ok(self) -> bool:
        """No log disagrees with what its peers recorded or its own seal."""
        return not any(f.tampered for f in self.findings)

    @property
    def complete(self) -> bool:
        """Every record of every log is vouched for by a peer's recorded head or by a seal."""
        return self.ok and not self.findings

    def report(self) -> str:
        out = []
        for f in self.findings:
            out.append(f"TAMPERED: {f.party}: {f.kind}: {f.text}" if f.tampered else f"UNANCHORED: {f.party}: {f.text}")
        if not self.ok:
            out.append("TAMPERED: a log disagrees with the heads its peers recorded or with its own seal")
        else:
            out.append("ok: every head the parties recorded of each other, and every seal, is in the logs")
            if not self.complete:
                out.append("UNVERIFIED: some records come after the newest head a peer recorded and no seal covers "
                           "them: they can be checked only against a later exchange (a running party anchors "
                           "its log every anchor_interval_s while it grows, and seals it at a clean stop)")
        if self.unchecked_signatures:
            out.append(f"note: {self.unchecked_signatures} recorded head(s) name a signer certificate that none of the "
                       "given logs holds: their signatures were not checked")
        if not self.ca_checked:
            out.append("note: signatures were checked against the certificates the logs carry; pass --ca to check "
                       "that the consortium CA issued them")
        return "\n".join(out)


def _when(text: str) -> float:
    """A head's or seal's time as a POSIX timestamp (0 when unreadable: the CA check then fails)."""
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return 0.0


def _check_signature(party: str, signature: bytes, payload: bytes, certificate_pem: str, ca, crl, when: str):
    """None when ``party``'s certificate signed ``payload`` (and the CA issued it, given one);
    else why not."""
    from smpc.service.identity import IdentityError, signed_by_party, verify_party_signature

    try:
        if ca is not None:
            verify_party_signature(ca, crl, certificate_pem, signature, payload, party, _when(when))
        else:
            signed_by_party(certificate_pem, signature, payload, party)
    except (IdentityError, ValueError) as exc:
        return str(exc)
    return None


def _hold_to(of: str, lines: list[bytes], by: str, count: int, head: str, when: str) -> Finding | None:
    """Is ``lines`` the log whose record ``count`` has hash ``head``, as ``by`` recorded?"""
    if count > len(lines):
        return Finding(of, "cut", f"the log has {len(lines)} records, but {by} recorded {of}'s signed head at "
                                  f"{count} records ({when}): its end was cut")
    if count and line_hash(lines[count - 1]) != head:
        return Finding(of, "rewritten", f"record {count - 1} is not the one {of} signed to {by} ({when}): the log "
                                        f"was rewritten up to there")
    return None


def hold_to_seal(party: str, lines: list[bytes], seal: Seal, ca=None, crl=None) -> Finding | None:
    """Does the log ``lines`` of ``party`` end exactly at the head its seal signs?"""
    why = None
    if seal.party != party:
        why = f"the seal beside {party}'s log names {seal.party!r}"
    elif seal.signature:
        why = _check_signature(party, seal.signature, seal.payload(), seal.certificate_pem, ca, crl, seal.time)
    elif ca is not None:
        why = "the seal is unsigned (plaintext development mode)"
    if why is not None:
        return Finding(party, "bad seal", why)
    if len(lines) > seal.records:
        events = [(_parse(x) or {}).get("event", "?") for x in lines[seal.records:]]
        return Finding(party, "appended", f"records {seal.records}..{len(lines) - 1} come after the head {party} "
                                          f"sealed at its clean stop ({seal.time}): {', '.join(map(str, events))}")
    return _hold_to(party, lines, "its own seal", seal.records, seal.head, seal.time)


def cross_check(paths, ca=None, crl=None) -> CrossCheck:
    """Hold every log at ``paths`` against the heads the other logs recorded of it
    (``peer_head``): the record with that count must have that hash. A log with a seal beside it
    (``PATH.seal``) must end exactly at the sealed head. Every recorded head's signature and every
    seal's is checked against the signer's certificate (carried in the logs and the seal), and,
    given the consortium CA certificate ``ca`` (and its ``crl``), that the CA issued it to that
    party. Also verifies each chain."""
    from smpc.service.identity import fingerprint_of, load_certificate

    logs: dict[str, list[bytes]] = {}
    seals: dict[str, Seal | None] = {}
    findings: list[Finding] = []
    for path in paths:
        lines = read_lines(path)
        result = verify_lines(lines)
        first = _parse(lines[0]) if lines else None
        party = first.get("party") if first is not None and isinstance(first.get("party"), str) else str(path)
        if party in logs:
            raise AuditError(f"two logs of party {party!r} given ({path})")
        logs[party] = lines
        seals[party] = read_seal(path)
        if not result.ok:
            findings.append(Finding(party, "broken", f"{path}: {result.problem}"))
    certificates: dict[str, str] = {}  # fingerprint -> PEM, from the logs and the seals
    recorded: list[tuple[str, dict]] = []  # (by, peer_head record)
    for by, lines in logs.items():
        for line in lines:
            rec = _parse(line)
            if rec is None or rec.get("event") != "peer_head" or rec.get("party") != by:
                continue
            pem = rec.get("signer_cert_pem")
            if isinstance(pem, str) and isinstance(rec.get("signer_cert"), str):
                certificates[rec["signer_cert"]] = pem
            recorded.append((by, rec))
    for seal in seals.values():
        if seal is not None and seal.certificate_pem:
            try:
                certificates[fingerprint_of(load_certificate(seal.certificate_pem))] = seal.certificate_pem
            except ValueError:
                pass
    heads: dict[str, list[tuple[str, int, str, str]]] = {p: [] for p in logs}  # of -> (by, records, hash, time)
    unchecked = 0
    for by, rec in recorded:
        of, count, head, when = rec.get("peer"), rec.get("records"), rec.get("head"), str(rec.get("head_time", ""))
        if of not in heads or not isinstance(count, int) or not isinstance(head, str):
            continue
        signature = decode_signature(rec.get("signature"))
        if signature is not None:  # plaintext development mode records unsigned heads
            pem = certificates.get(rec.get("signer_cert"))
            if pem is None:
                unchecked += 1
            else:
                why = _check_signature(of, signature, head_payload(of, count, head, when), pem, ca, crl, when)
                if why is not None:
                    findings.append(Finding(by, "forged head", f"record {rec.get('seq')} holds a head of {of}'s log "
                                                               f"that {of} did not sign: {why}"))
                    continue
        heads[of].append((by, count, head, when))
    anchored = {}
    for of, held in heads.items():
        lines = logs[of]
        bad = False
        for by, count, head, when in held:
            finding = _hold_to(of, lines, by, count, head, when)
            if finding is not None:
                findings.append(finding)
                bad = True
                break
        newest = max(held, key=lambda r: r[1]) if held else None
        seal = seals[of]
        if seal is not None:
            finding = hold_to_seal(of, lines, seal, ca, crl)
            if finding is not None:
                findings.append(finding)
                bad = True
            elif not bad:
                anchored[of] = (seal.records, "its seal")
                continue
        if newest is None:
            if not bad:
                findings.append(Finding(of, "unanchored tail", f"no other log given records a head of {of}'s log, "
                                                               f"and it has no seal: none of its {len(lines)} "
                                                               "records can be checked"))
            continue
        by, count, _, when = newest
        anchored[of] = (count, by)
        if not bad and len(lines) > count:
            events = [(_parse(x) or {}).get("event", "?") for x in lines[count:]]
            findings.append(Finding(of, "unanchored tail", f"records {count}..{len(lines) - 1} come after the "
                                                           f"newest head a peer recorded ({by}, {when}), and no "
                                                           f"seal covers them: {', '.join(map(str, events))}"))
    return CrossCheck(findings, anchored, unchecked, ca is not None)
