"""The party's durable job store: jobs (spec, state, events) and released results in SQLite.

One database file per party, beside its audit log (``[store] path``, default the audit log's
path with the suffix ``.sqlite``). What could say anything about a job's inputs or results --
the signed spec with its parameters, the status (stage, error, who received the result), every
event and the result itself -- is sealed with AES-256-GCM under the party's store key
(``[store] key_file``); each sealed value is bound to its party, job and column, so a value
copied to another row or another party's database does not open. In the clear are only what
the store looks jobs up by: the job id, requester, recipients, state name and times.

A database opened with another key, or written by another party, is refused at start, before
anything is served: ``meta.key_check`` holds a sealed constant.

SQLite in WAL mode: a new job, a job's end with its result, a release and an expiry are fsynced
before the call returns; a running job's progress events survive the process but may be lost
to a power cut (the job is then failed at the next start, as any unfinished one).

Retention: ``expire(before)`` removes the spec, status, events and result of every job that
ended before ``before`` and keeps a tombstone (id, recipients, end and expiry time), so a
recipient asking later is told the job expired rather than that it never existed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from smpc.errors import SmpcError

SCHEMA_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_CHECK = b"smpc job store key check"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    recipients TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL,
    expired_at REAL,
    spec BLOB,
    status BLOB,
    result BLOB
);
CREATE INDEX IF NOT EXISTS jobs_by_end ON jobs (finished_at) WHERE expired_at IS NULL;
CREATE TABLE IF NOT EXISTS dp_ledger (
    job_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    period TEXT NOT NULL,
    epsilon TEXT NOT NULL,
    requester TEXT NOT NULL,
    debited_at REAL NOT NULL,
    refunded_at REAL,
    refund_reason TEXT
);
CREATE INDEX IF NOT EXISTS dp_ledger_by_period ON dp_ledger (source, period);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event BLOB NOT NULL,
    PRIMARY KEY (job_id, seq)
);
"""


class StoreError(SmpcError):
    """The job store cannot be opened, read or written (the message names the file)."""


@dataclass
class StoredJob:
    """One job as the store holds it (its sealed columns opened)."""

    job_id: str
    requester: str
    recipients: list[str]
    state: str
    created_at: float
    finished_at: float | None
    expired_at: float | None
    spec: dict | None
    status: dict | None
    result: object | None
    has_result: bool
    events: list[bytes]


class JobStore:
    """Thread-safe: one connection, one lock; every write is one committed transaction."""

    def __init__(self, path: str | Path, key: bytes, party: str):
        if len(key) != KEY_BYTES:
            raise StoreError(f"{party}: the store key has {len(key)} bytes, not {KEY_BYTES}")
        self.path = Path(path)
        self.party = party
        self._aead = AESGCM(key)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # SQLite gives its -wal and -shm files the database's mode
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA secure_delete=ON")  # an expired job's pages are overwritten, not left free
            self._db.executescript(_SCHEMA)
            self._check_owner()
        except sqlite3.Error as exc:
            raise StoreError(f"{party}: cannot open the job store {self.path} ({exc}); key store.path") from None

    # ----- sealing -----------------------------------------------------------------------
    def _bound(self, job_id: str, column: str) -> bytes:
        return f"{self.party}\0{job_id}\0{column}".encode()

    def seal(self, job_id: str, column: str, value: object) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        data = json.dumps(value, allow_nan=True, separators=(",", ":")).encode()
        return nonce + self._aead.encrypt(nonce, data, self._bound(job_id, column))

    def open(self, job_id: str, column: str, sealed: bytes | None):
        if sealed is None:
            return None
        try:
            data = self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], self._bound(job_id, column))
        except InvalidTag:
            raise StoreError(f"{self.party}: job {job_id}'s {column} in {self.path} does not open under the "
                             "store key: it was altered or copied from elsewhere") from None
        return json.loads(data)

    def _seal_bytes(self, job_id: str, column: str, data: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data, self._bound(job_id, column))

    def _open_bytes(self, job_id: str, column: str, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], self._bound(job_id, column))
        except InvalidTag:
            what = "an event" if column == "event" else f"the {column}"
            raise StoreError(f"{self.party}: {what} of job {job_id} in {self.path} does not open under the "
                             "store key: it was altered or copied from elsewhere") from None

    def _check_owner(self) -> None:
        rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not rows:
            with self._db:
                self._db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
                    ("schema", str(SCHEMA_VERSION)), ("party", self.party),
                    ("key_check", self._seal_bytes("", "key_check", KEY_CHECK)),
                ])
            return
        if rows.get("party") != self.party:
            raise StoreError(f"{self.party}: the job store {self.path} belongs to {rows.get('party')!r}; "
                             "key store.path must name this party's own database")
        if int(rows.get("schema", 0)) > SCHEMA_VERSION:
            raise StoreError(f"{self.party}: the job store {self.path} has schema {rows.get('schema')}, newer than "
                             f"this version of smpc reads ({SCHEMA_VERSION}); run the newer version")
        try:
            ok = self._aead.decrypt(rows["key_check"][:NONCE_BYTES], rows["key_check"][NONCE_BYTES:],
                                    self._bound("", "key_check")) == KEY_CHECK
        except (InvalidTag, KeyError, TypeError):
            ok = False
        if not ok:
            raise StoreError(f"{self.party}: the job store {self.path} was written under another key than "
                             "key store.key_file holds; restore the key file that belongs to this database")

    # ----- writing -----------------------------------------------------------------------
    def _write(self, statements: list[tuple[str, tuple]], durable: bool = True) -> None:
        """One transaction. ``durable``: fsynced before it returns, so it survives a power cut
        too; a job's progress is not (it survives the process, and the job's end replaces it)."""
        with self._lock:
            try:
                self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                with self._db:  # one transaction
                    for sql, args in statements:
                        self._db.execute(sql, args)
            except sqlite3.Error as exc:
                raise StoreError(f"{self.party}: cannot write the job store {self.path} ({exc})") from None

    # ----- the privacy budget ledger -------------------------------------------------------
    def debit_epsilon(self, job_id: str, source: str, period: str, epsilon: Fraction, requester: str,
                      budget: Fraction | None) -> Fraction | None:
        """Debit ``epsilon`` from ``source`` in ``period`` for ``job_id``, atomically and
        durably; returns None when debited, else (the budget would be exceeded) the epsilon
        that remains, and debits nothing. One transaction under the store's lock (and SQLite's
        write lock, BEGIN IMMEDIATE), so two jobs can never both spend the last epsilon.
        Epsilons are exact fractions, kept as text."""
        with self._lock:
            try:
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    rows = self._db.execute("SELECT epsilon FROM dp_ledger WHERE source = ? AND period = ? "
                                            "AND refunded_at IS NULL", (source, period)).fetchall()
                    spent = sum((Fraction(r[0]) for r in rows), Fraction(0))
                    if budget is not None and spent + epsilon > budget:
                        self._db.execute("ROLLBACK")
                        return max(Fraction(0), budget - spent)
                    self._db.execute("INSERT INTO dp_ledger (job_id, source, period, epsilon, requester, debited_at) "
                                     "VALUES (?, ?, ?, ?, ?, ?)",
                                     (job_id, source, period, str(epsilon), requester, time.time()))
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"{self.party}: cannot write the privacy ledger in {self.path} ({exc})") from None
        return None

    def refund_epsilon(self, job_id: str, reason: str) -> bool:
        """Give a job's debit back (it never started); returns whether there was one to refund."""
        with self._lock:
            try:
                self._db.execute("PRAGMA synchronous=FULL")
                with self._db:
                    cur = self._db.execute("UPDATE dp_ledger SET refunded_at = ?, refund_reason = ? "
                                           "WHERE job_id = ? AND refunded_at IS NULL", (time.time(), reason, job_id))
            except sqlite3.Error as exc:
                raise StoreError(f"{self.party}: cannot write the privacy ledger in {self.path} ({exc})") from None
        return cur.rowcount > 0

    def spent_epsilon(self, source: str, period: str) -> Fraction:
        with self._lock:
            rows = self._db.execute("SELECT epsilon FROM dp_ledger WHERE source = ? AND period = ? "
                                    "AND refunded_at IS NULL", (source, period)).fetchall()
        return sum((Fraction(r[0]) for r in rows), Fraction(0))

    def ledger(self) -> list[dict]:
        """Every debit, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT job_id, source, period, epsilon, requester, debited_at, refunded_at, "
                                    "refund_reason FROM dp_ledger ORDER BY debited_at, job_id").fetchall()
        keys = ("job_id", "source", "period", "epsilon", "requester", "debited_at", "refunded_at", "refund_reason")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def add(self, job_id: str, requester: str, recipients: list[str], spec: dict, status: dict,
            state: str, terminal: bool = False) -> None:
        """A job this party received (its id is new: a replayed one is refused before)."""
        now = time.time()
        self._write([(
            "INSERT INTO jobs (job_id, requester, recipients, state, created_at, finished_at, spec, status) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, requester, json.dumps(list(recipients)), state, now, now if terminal else None,
             self.seal(job_id, "spec", spec), self.seal(job_id, "status", status)),
        )])

    def update(self, job_id: str, state: str, status: dict, terminal: bool, event: bytes | None = None,
               seq: int | None = None, result: object = None, has_result: bool = False) -> None:
        """The job's status now, with the event that announced it and, at its end, its result."""
        statements = [(
            "UPDATE jobs SET state = ?, status = ?, finished_at = CASE WHEN ? THEN coalesce(finished_at, ?) "
            "ELSE finished_at END WHERE job_id = ?",
            (state, self.seal(job_id, "status", status), terminal, time.time(), job_id),
        )]
        if has_result:
            statements.append(("UPDATE jobs SET result = ? WHERE job_id = ?",
                               (self.seal(job_id, "result", result), job_id)))
        if event is not None:
            statements.append(("INSERT OR REPLACE INTO events (job_id, seq, event) VALUES (?, ?, ?)",
                               (job_id, seq, self._seal_bytes(job_id, "event", event))))
        self._write(statements, durable=terminal or event is None)

    # ----- reading -----------------------------------------------------------------------
    def load(self, job_id: str) -> StoredJob | None:
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT job_id, requester, recipients, state, created_at, finished_at, expired_at, spec, status, "
                    "result FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
                events = [] if row is None else self._db.execute(
                    "SELECT event FROM events WHERE job_id = ? ORDER BY seq", (job_id,)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"{self.party}: cannot read the job store {self.path} ({exc})") from None
        if row is None:
            return None
        jid, requester, recipients, state, created, finished, expired, spec, status, result = row
        return StoredJob(
            jid, requester, json.loads(recipients), state, created, finished, expired,
            self.open(jid, "spec", spec), self.open(jid, "status", status), self.open(jid, "result", result),
            result is not None, [self._open_bytes(jid, "event", e) for (e,) in events],
        )

    def contains(self, job_id: str) -> bool:
        """Whether the store holds (or held: an expired job's tombstone) a job of this id."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is not None

    def unfinished(self) -> list[str]:
        """Jobs the store holds as neither ended nor expired: this party stopped while they ran."""
        with self._lock:
            rows = self._db.execute("SELECT job_id FROM jobs WHERE finished_at IS NULL AND expired_at IS NULL "
                                    "ORDER BY created_at").fetchall()
        return [r[0] for r in rows]

    # ----- retention ---------------------------------------------------------------------
    def expire(self, before: float) -> list[tuple[str, float]]:
        """Remove every job that ended before ``before`` (unix time): its spec, status, events and
        result; a tombstone stays. Returns ``(job id, end time)`` of each."""
        with self._lock:
            try:
                rows = self._db.execute("SELECT job_id, finished_at FROM jobs WHERE expired_at IS NULL AND "
                                        "finished_at IS NOT NULL AND finished_at < ? ORDER BY finished_at",
                                        (before,)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"{self.party}: cannot read the job store {self.path} ({exc})") from None
        return [(job_id, finished) for job_id, finished in rows]

    def remove(self, job_id: str) -> None:
        """Drop an expired job's contents, keeping its tombstone."""
        self._write([
            ("UPDATE jobs SET spec = NULL, status = NULL, result = NULL, expired_at = ? WHERE job_id = ?",
             (time.time(), job_id)),
            ("DELETE FROM events WHERE job_id = ?", (job_id,)),
        ])

    # ----- a new key ----------------------------------------------------------------------
    def rekey(self, new_key: bytes) -> int:
        """Seal everything again under ``new_key``, in one transaction: a crash leaves the
        database wholly under the old key or wholly under the new one. The old ciphertexts are
        overwritten in place (``secure_delete``) and the write-ahead log is truncated, so the old
        key opens nothing in this file afterwards (it still opens older backups). Returns the
        number of jobs re-sealed."""
        if len(new_key) != KEY_BYTES:
            raise StoreError(f"{self.party}: the new store key has {len(new_key)} bytes, not {KEY_BYTES}")
        new = AESGCM(new_key)

        def seal_new(job_id: str, column: str, data: bytes) -> bytes:
            nonce = os.urandom(NONCE_BYTES)
            return nonce + new.encrypt(nonce, data, self._bound(job_id, column))

        def again(job_id: str, column: str, sealed: bytes | None) -> bytes | None:
            return None if sealed is None else seal_new(job_id, column, self._open_bytes(job_id, column, sealed))

        with self._lock:
            try:
                jobs = self._db.execute("SELECT job_id, spec, status, result FROM jobs").fetchall()
                events = self._db.execute("SELECT job_id, seq, event FROM events").fetchall()
                self._db.execute("PRAGMA synchronous=FULL")
                with self._db:  # one transaction
                    for job_id, spec, status, result in jobs:
                        self._db.execute("UPDATE jobs SET spec = ?, status = ?, result = ? WHERE job_id = ?",
                                         (again(job_id, "spec", spec), again(job_id, "status", status),
                                          again(job_id, "result", result), job_id))
                    for job_id, seq, event in events:
                        self._db.execute("UPDATE events SET event = ? WHERE job_id = ? AND seq = ?",
                                         (again(job_id, "event", event), job_id, seq))
                    self._db.execute("UPDATE meta SET value = ? WHERE key = 'key_check'",
                                     (seal_new("", "key_check", KEY_CHECK),))
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.party}: cannot re-seal the job store {self.path} ({exc}); it is unchanged, "
                                 "under the old key") from None
            self._aead = new
        return len(jobs)

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:  # pragma: no cover - closing never fails in practice
                pass
