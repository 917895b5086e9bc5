"""Jobs on one party: two-phase agreement across the compute parties, execution, events.

A client submits a job to any compute party, which becomes its coordinator:

1. The coordinator checks the requester's signature over the job (``identity.SpecVerifier``;
   not in plaintext development mode), reserves the job id ``REQUESTER/ID`` (a replayed id
   is refused), writes ``job_received`` with the verified signer, and decides under its own
   policy (``policy.decide``). Then it sends ``Prepare`` with the signed submission to every
   other compute party; each verifies the signature itself -- the coordinator's word for who
   asked counts for nothing --, writes ``job_received`` and its own ``policy_decision``,
   loads and checks its input columns, and answers accept or refuse. No share has moved.
2. If anyone refused (or could not be reached), the coordinator tells the others
   (``Cancel`` with why="refused"; each writes ``job_refused`` naming the refusing party and
   rule) and answers the requester REFUSED with a ``PolicyError`` naming the party and rule.
3. Otherwise it sends ``Start`` to every party and starts locally, with the parties' terms
   merged: the largest minimum cell size and minimum contributors, the smallest maximum
   dominance, and per owner-set parameter the largest declared bound, decimals or
   rows-per-customer cap, or the union of declared categories (each party checks that they
   cover its own; the join salt and a private job's customer column stay each party's own). A join runs only when
   every party's join salt has the same fingerprint (the salt itself never travels). A party's
   refusal says which party and rule; detail about its own rows stays in its own audit log.
   Each party runs the registered SPMD function over a ``GrpcTransport`` -- the lower rank
   dials the higher -- in a thread of its own, and records ``inputs_used`` and
   ``job_finished`` (bytes, rounds, error).

Results are revealed to the compute parties and handed out (``Get``) only to the requester
and the recipients every party allowed; each hand-out writes ``outputs_released``. A party
hands out only what was revealed to it: a per-bank part (``by_bank``, multi_lending's flags)
only to that bank, and a result revealed to one bank alone (blacklist_hits' hits, to the
requester) only by that bank's own party -- every other party finishes with an empty result.
So a bank fetches its own part from its own party. ``job_finished`` records which result
keys this party received.

A failing party aborts its transport, so its peers stop at once with ``PartyUnavailable``
naming it (or with its ``InputError``); a dead peer is noticed by the broken stream, a hung one
by the step timeout. ``Cancel`` reaches every party and stops the job there. What a peer's
``Cancel`` says about who refused or cancelled is recorded as what it reported; the record's
``by`` is always the authenticated caller, and its free text is capped and sanitised.

Every job a party received is kept in its job store (``store.JobStore``): spec, every event,
and at its end the state and result, so ``Get`` and ``Watch`` answer across restarts until
``policy.result_retention_days`` after the job ended (then it is deleted, audited as
``job_expired``). A shutdown fails each running job with why, here and -- by the abort -- at
the peers; a job found unfinished at start (the party was killed) is failed then.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc

from smpc.analyses import registry
from smpc.context import Context
from smpc.errors import PartyUnavailable, PolicyError, ProtocolTimeout, SmpcError
from smpc.service.audit import HEAD_HASH, AuditError, AuditLog, encode_signature, head_payload
from smpc.service.budget import BUDGET_RULE, PrivacyBudget, epsilon_of
from smpc.service.config import PartyConfig
from smpc.service.identity import (
    JOB_ID,
    PARTY,
    IdentityError,
    RevocationList,
    Signer,
    SpecVerifier,
    identity_of_pem,
    load_certificate,
    load_private_key,
    namespaced_job_id,
    recipients_for,
    sanitise,
    sign,
    spec_payload,
    verify_party_signature,
)
from smpc.service.policy import (
    Decision,
    JobRequest,
    decide,
    decode_declared,
    encode_declared,
    merge_declared,
    uncovered,
)
from smpc.service.pool import BucketPlan, WorkerPool
from smpc.service.quotas import QuotaExceeded
from smpc.service.states import STATE_BY_NAME, STATE_NAMES, TERMINAL
from smpc.service.store import JobStore, StoredJob
from smpc.transport.grpc import GrpcTransport, secure_channel
from smpc.v1 import jobs_pb2, peer_pb2, peer_pb2_grpc

ERROR_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# the longest analysis, source, recipient or parameter name a request may carry, and the most
# recipients: every one of them is written to the audit log
NAME_CHARS = 128
MAX_RECIPIENTS = 64
MAX_FINISHED_JOBS = 1000
CANCELLED = "Cancelled"
PROGRESS_EVERY = 0.1


class ServiceStopping(SmpcError):
    """A new job reached a party that is shutting down (the RPC answers UNAVAILABLE)."""


@dataclass
class JobError:
    type: str
    message: str
    party: str = ""
    rule: str = ""

    def proto(self) -> jobs_pb2.JobError:
        return jobs_pb2.JobError(type=self.type, message=self.message, party=self.party, rule=self.rule)

    def audit(self) -> dict:
        return {"error_type": self.type, "error": self.message, "error_party": self.party,
                **({"rule": self.rule} if self.rule else {})}


@dataclass(frozen=True)
class Submission:
    """The job as its requester signed it, forwarded to every party unchanged."""

    params: dict
    source: str = ""
    signature: bytes = b""
    certificate_pem: str = ""
    signed_at: int = 0


@dataclass
class Job:
    request: JobRequest
    submission: Submission | None = None
    signer: Signer | None = None
    state: int = jobs_pb2.JOB_STATE_PREPARED
    progress: float = 0.0
    stage: str = "received"
    error: JobError | None = None
    result: dict | None = None
    decision: Decision | None = None
    bytes_sent: int = 0
    rounds: int = 0
    events: list = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    transport: GrpcTransport | None = None
    transport_ready: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    cancel_reason: str | None = None
    released_to: set = field(default_factory=set)
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    cancel_audited: bool = False
    store: JobStore | None = None
    """Where this party keeps the job once it received it: every event is written there."""
    stopped: JobError | None = None
    dp_debited: bool = False
    """This party debited the job's epsilon from its privacy ledger (refunded if it never starts)."""
    workers: list = field(default_factory=list)
    """Endpoints of this party's worker pool, reserved for the job at Prepare ([]: none)."""
    coordinator_workers: list = field(default_factory=list)
    """The endpoints the coordinator announced with its Prepare (participants check its Start)."""
    plan: BucketPlan | None = None
    """Set at the start of a bucketed job that runs on the worker pools."""
    bucket_bytes: int = 0
    bucket_rounds: int = 0
    """Why this party's shutdown ended the job (it ends failed, whatever the abort said)."""
    _last_event: float = 0.0
    _partial_shown: bool = False

    @property
    def id(self) -> str:
        return self.request.job_id

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def emit(self, party: str, state: int | None = None, progress: float | None = None, stage: str | None = None,
             message: str = "", error: JobError | None = None) -> None:
        """Record an event. Progress and stage updates are coalesced to at most one event per
        ``PROGRESS_EVERY`` seconds (the status always has the latest), so a long job keeps a
        short history; the first update with a partial progress (0 < p < 1) is always kept, so
        a watcher sees progress even of a job faster than ``PROGRESS_EVERY``."""
        with self.cond:
            if self.terminal:
                return
            now = time.monotonic()
            progress_only = state is None and error is None and not message
            first_partial = progress is not None and 0 < progress < 1 and not self._partial_shown
            if progress_only and self.events and not first_partial and now - self._last_event < PROGRESS_EVERY:
                if progress is not None:
                    self.progress = progress
                if stage is not None:
                    self.stage = stage
                return
            self._last_event = now
            self._partial_shown = self._partial_shown or first_partial
            if state is not None:
                self.state = state
            if progress is not None:
                self.progress = progress
            if stage is not None:
                self.stage = stage
            if error is not None:
                self.error = error
            event = jobs_pb2.JobEvent(
                job_id=self.id, seq=len(self.events), state=self.state, progress=self.progress,
                stage=self.stage, message=message, party=party, time_unix=time.time(),
                error=self.error.proto() if self.error else None,
            )
            self.events.append(event)
            try:
                if self.store is not None:
                    self.persist(event)
            finally:
                self.cond.notify_all()

    def persist(self, event: jobs_pb2.JobEvent | None = None) -> None:
        """Write the job's status (and ``event``; at a successful end, the result) to its store."""
        done = event is not None and self.state == jobs_pb2.JOB_STATE_SUCCEEDED and self.result is not None
        self.store.update(self.id, STATE_NAMES[self.state], self.stored_status(), self.terminal,
                          event.SerializeToString() if event is not None else None,
                          event.seq if event is not None else None, self.result, has_result=done)

    def stored_status(self) -> dict:
        return {"progress": self.progress, "stage": self.stage, "bytes_sent": self.bytes_sent, "rounds": self.rounds,
                "error": None if self.error is None else vars(self.error).copy(),
                "released_to": sorted(self.released_to)}

    def stored_spec(self) -> dict:
        r, sub = self.request, self.submission
        return {"analysis": r.analysis, "params": dict(r.params), "source": r.source, "requester": r.requester,
                "recipients": list(r.recipients), "coordinator": r.coordinator, "parties": list(r.parties),
                "signed_params": dict(sub.params) if sub else None, "signed_source": sub.source if sub else "",
                "signed_at": sub.signed_at if sub else 0}


class PeerDirectory:
    """Long-lived channels and stubs to the other compute parties."""

    def __init__(self, config: PartyConfig, insecure: bool = False):
        self.config = config
        self.insecure = insecure
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        if not insecure:
            self._ca = config.tls_ca.read_bytes()
            self._cert = config.tls_cert.read_bytes()
            self._key = config.tls_key.read_bytes()

    def channel(self, name: str) -> grpc.Channel:
        with self._lock:
            ch = self._channels.get(name)
            if ch is None:
                peer = self.config.peers[name]
                if self.insecure:
                    from smpc.transport.grpc import channel_options

                    ch = grpc.insecure_channel(peer.address, options=channel_options())
                else:
                    ch = secure_channel(peer.address, self._ca, self._cert, self._key, identity=peer.identity)
                self._channels[name] = ch
            return ch

    def stub(self, name: str) -> peer_pb2_grpc.PartyPeerStub:
        return peer_pb2_grpc.PartyPeerStub(self.channel(name))

    def separate_channel(self, name: str) -> grpc.Channel:
        """A channel of its own, for a call that must not disturb the jobs' channel: a failed
        connection there would put the jobs' channel into reconnect backoff, and the first
        job after the peer returns would fail at once."""
        peer = self.config.peers[name]
        if self.insecure:
            from smpc.transport.grpc import channel_options

            return grpc.insecure_channel(peer.address, options=channel_options())
        return secure_channel(peer.address, self._ca, self._cert, self._key, identity=peer.identity)

    def metadata(self) -> tuple:
        """In plaintext development mode a party names itself in metadata (nothing checks it)."""
        return (("x-smpc-party", self.config.name),) if self.insecure else ()

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()


def _error_of(exc: BaseException, me: str, parties: tuple[str, ...] = ()) -> JobError:
    """How a job's exception is reported: the root cause, where a peer's ABORT told it (the
    error class, its message and the party at fault -- one of the job's parties, else the
    peer that sent it), else the peer this party lost."""
    if isinstance(exc, PartyUnavailable):
        peer = exc.peer if isinstance(exc.peer, str) else ""
        remote_type = getattr(exc, "remote_error_type", "")
        if remote_type:
            culprit = getattr(exc, "culprit", "")
            culprit = culprit if culprit in parties else peer
            remote_type = _error_type(remote_type)
            reason = sanitise(getattr(exc, "remote_reason", "")) or str(exc)
            if peer and peer != culprit:
                reason = f"{reason} (reported by {peer})"
            return JobError(remote_type, reason, culprit)
        kind = "ProtocolTimeout" if isinstance(exc, ProtocolTimeout) else "PartyUnavailable"
        return JobError(kind, str(exc), peer)
    if isinstance(exc, SmpcError):
        return JobError(type(exc).__name__, str(exc), me)
    return JobError("InternalError", f"{me}: {type(exc).__name__}: {exc}", me)


class JobManager:
    """All jobs of this party: coordination, participation, execution and events."""

    def __init__(self, config: PartyConfig, audit: AuditLog, peers: PeerDirectory, store: JobStore,
                 pool: WorkerPool | None = None):
        self.config = config
        self.pool = pool
        self.me = config.name
        self.rank = config.rank
        self.audit = audit
        self.peers = peers
        self.store = store
        self.budget = PrivacyBudget(config, store, audit)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        # mutual TLS: who asked is what the requester's signature proves, checked at every party
        self.crl: RevocationList | None = None
        self.verifier: SpecVerifier | None = None
        self._head_key = None  # signs this party's audit head for the peers (mutual TLS only)
        if not peers.insecure:
            ca = load_certificate(config.tls_ca.read_bytes())
            own = identity_of_pem(config.tls_cert.read_bytes())
            if own.role != PARTY or own.name != config.name:
                raise SmpcError(f"{self.me}: key 'tls.cert' is a {own.role} certificate of {own.name!r}; a party "
                                f"needs its party certificate (smpc://party/{self.me})")
            self.crl = RevocationList(config.tls_crl, ca) if config.tls_crl else None
            self.verifier = SpecVerifier(ca, self.crl)
            self._head_key = load_private_key(config.tls_key.read_bytes())
            self._head_cert = config.tls_cert.read_text()
        self._stopping = threading.Event()
        self._shut_down = threading.Event()
        self._recover()
        self.expire_results()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="smpc-coord")
        # audit heads go out on threads of their own: a hung peer never holds up a job
        self._anchors = ThreadPoolExecutor(max_workers=2, thread_name_prefix="smpc-anchor")
        self._heads_due: dict[str, str] = {}  # peer -> the latest job whose end a queued push follows
        self._heads_lock = threading.Lock()
        self._janitor = threading.Thread(target=self._sweep, name="smpc-janitor", daemon=True)
        self._janitor.start()
        self._certs_recorded: set[str] = set()  # peer certificates this process wrote into the log
        self._anchored_through = -1  # the newest own record whose head went out in a periodic push
        self._anchorer = threading.Thread(target=self._anchor_periodically, name="smpc-anchorer", daemon=True)
        self._anchorer.start()

    # ----- bookkeeping -----------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        """The job, from memory or, for one that ended before this start or long ago, from the
        store (None once its retention expired)."""
        with self._lock:  # expire_results drops jobs under this lock: a load never revives one
            job = self._jobs.get(job_id)
            if job is None:
                stored = self.store.load(job_id)
                if stored is None or stored.expired_at is not None:
                    return None
                job = self._jobs[job_id] = self._from_store(stored)
                self._prune_locked()
            return job

    def missing(self, job_id: str, identity: str, peer: bool) -> str:
        """What a caller is told of a job it cannot get: that it expired, to a recipient of it or
        a compute party; to anyone else the same as for a job that never existed."""
        stored = self.store.load(job_id)
        if stored is not None and stored.expired_at is not None and (peer or identity in stored.recipients):
            ended = dt.datetime.fromtimestamp(stored.finished_at, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            return (f"{self.me}: job {sanitise(job_id, 200)!r} ended {ended} and has been deleted: its results are "
                    f"kept {self.config.policy.result_retention_days:g} days (policy.result_retention_days)")
        return f"{self.me}: no job {sanitise(job_id, 200)!r} that {identity} may see"

    def _from_store(self, stored: StoredJob) -> Job:
        spec, status = stored.spec, stored.status
        request = JobRequest(stored.job_id, spec["analysis"], spec["params"], spec["source"], spec["requester"],
                             spec["recipients"], spec["coordinator"], spec["parties"])
        submission = None if spec["signed_params"] is None else Submission(
            spec["signed_params"], spec["signed_source"], signed_at=spec["signed_at"])
        job = Job(request, submission=submission, state=STATE_BY_NAME[stored.state], progress=status["progress"],
                  stage=status["stage"], error=JobError(**status["error"]) if status["error"] else None,
                  result=stored.result if stored.has_result else None, bytes_sent=status["bytes_sent"],
                  rounds=status["rounds"], released_to=set(status["released_to"]), cancel_audited=True)
        job.events = [jobs_pb2.JobEvent.FromString(e) for e in stored.events]
        job.store = self.store
        return job

    def _recover(self) -> None:
        """Jobs the store holds as unfinished were running (or prepared) when this party stopped
        without ending them (killed, a power cut): they end failed, with why. The other parties
        failed theirs already, when this party's streams broke."""
        for job_id in self.store.unfinished():
            stored = self.store.load(job_id)
            job = self._from_store(stored)
            what = "ran" if job.state == jobs_pb2.JOB_STATE_RUNNING else "was being prepared"
            error = JobError("PartyUnavailable", f"{self.me} stopped while job {job_id} {what}; the job failed at "
                                                 f"every party ({self.me} found it unfinished when it started again)",
                             self.me)
            self.audit.record("job_finished", job_id=job_id, state="failed", found_at_start=True, **error.audit())
            self._finish(job, jobs_pb2.JOB_STATE_FAILED, error)

    def expire_results(self, now: float | None = None) -> list[str]:
        """Delete the jobs (spec, events, result) that ended more than
        ``policy.result_retention_days`` ago; each is audited (``job_expired``) before it goes."""
        days = self.config.policy.result_retention_days
        now = time.time() if now is None else now
        gone = []
        for job_id, finished in self.store.expire(now - days * 86400):
            ended = dt.datetime.fromtimestamp(finished, dt.timezone.utc).isoformat(timespec="seconds")
            self.audit.record("job_expired", job_id=job_id, ended=ended.replace("+00:00", "Z"),
                              result_retention_days=days)
            with self._lock:
                self.store.remove(job_id)
                self._jobs.pop(job_id, None)
            gone.append(job_id)
        return gone

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _reserve(self, req: JobRequest) -> Job | None:
        """Register a new job id; None when it was used before (a replay). Raises
        ``ServiceStopping`` once shutdown began: ``shutdown`` sets the flag under the same lock
        before it lists the jobs to end, so every job is either on that list or never made.
        Raises ``QuotaExceeded`` when this party already takes part in
        ``limits.max_concurrent_jobs`` jobs, or in ``limits.jobs_per_requester`` of the
        requester's: counted under the same lock, whichever party coordinates them."""
        with self._lock:
            if self._stopping.is_set():
                raise ServiceStopping(f"{self.me} is shutting down")
            if req.job_id in self._jobs or req.job_id in self.audit.job_ids or self.store.contains(req.job_id):
                return None
            self._check_capacity_locked(req.requester)
            job = Job(req)
            self._jobs[req.job_id] = job
            self._prune_locked()
            return job

    def _check_capacity_locked(self, requester: str) -> None:
        limits = self.config.limits
        active = [j for j in self._jobs.values() if not j.terminal]
        if len(active) >= limits.max_concurrent_jobs:
            raise QuotaExceeded(
                f"{self.me} is running {len(active)} jobs, the most it takes at once "
                f"(limits.max_concurrent_jobs = {limits.max_concurrent_jobs}); try again when one has ended",
                "limits.max_concurrent_jobs")
        mine = sum(1 for j in active if j.request.requester == requester)
        if mine >= limits.jobs_per_requester:
            raise QuotaExceeded(
                f"{self.me}: {requester} has {mine} jobs running here, the most allowed "
                f"(limits.jobs_per_requester = {limits.jobs_per_requester}); try again when one has ended",
                "limits.jobs_per_requester")

    def _prune_locked(self) -> None:
        finished = [jid for jid, j in self._jobs.items() if j.terminal]
        for jid in finished[: max(0, len(finished) - MAX_FINISHED_JOBS)]:
            del self._jobs[jid]

    def active_jobs(self) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if not j.terminal)

    @staticmethod
    def job_threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name.startswith(("smpc-job-", "smpc-link-")) and t.is_alive())

    def _sweep(self) -> None:
        """Expire jobs prepared here that never started (the coordinator vanished)."""
        ttl = 3 * self.config.timeouts.connect + 30
        while not self._stopping.wait(5.0):
            self.expire_results()
            now = time.monotonic()
            with self._lock:
                stale = [j for j in self._jobs.values()
                         if j.state == jobs_pb2.JOB_STATE_PREPARED and j.started is None and now - j.created > ttl]
            for job in stale:
                self._finish(job, jobs_pb2.JOB_STATE_CANCELLED,
                             JobError(CANCELLED, f"{self.me}: job {job.id} was prepared but never started", self.me))

    def _finish(self, job: Job, state: int, error: JobError | None = None, stage: str | None = None) -> bool:
        """Move a job to a terminal state once; returns whether this call did it."""
        with job.cond:
            if job.terminal:
                return False
            if job.stopped is not None and job.cancel_reason is None and state != jobs_pb2.JOB_STATE_SUCCEEDED:
                state, error = jobs_pb2.JOB_STATE_FAILED, job.stopped  # this party's shutdown ended it
            job.emit(self.me, state=state, error=error, stage=stage or STATE_NAMES[state],
                     message=error.message if error else "")
            job.decision = None  # drop the input table
            refund = job.dp_debited and job.started is None and state != jobs_pb2.JOB_STATE_SUCCEEDED
        if self.pool is not None:  # outside the job's lock: Get and Watch never wait on the pool
            self.pool.release(job.id)
        if refund:  # nothing was computed or released: the epsilon goes back (smpc.service.budget)
            self.budget.refund(job.id, f"ended {STATE_NAMES[state]} before it started")
        return True

    # ----- coordinator -----------------------------------------------------------------
    def submit(self, requester: str, req: jobs_pb2.SubmitRequest) -> Job:
        """Phase one on every party, then start everywhere (or refuse). Raises
        ``QuotaExceeded`` for ``limits.max_concurrent_jobs`` and ``limits.jobs_per_requester``."""
        if self.stopping:
            raise ServiceStopping(f"{self.me} is shutting down")
        oversize = request_size_problem(req, self.config.limits)
        if oversize is not None:  # before anything else is written: none of it reaches the audit log
            key, what = oversize
            label = sanitise(f"{requester}/{req.job_id}", 200) if req.job_id else "the job"
            return self._rejected(f"{requester}/{req.job_id}", req, requester, JobError(
                "InputError", f"{self.me} refuses {'job ' if req.job_id else ''}{label}: {what} (rule {key})",
                self.me, key))
        try:
            if self.verifier is not None and not req.job_id:
                raise IdentityError("a signed submission names its job id")
            job_id = namespaced_job_id(requester, req.job_id or uuid.uuid4().hex)
        except IdentityError as exc:
            return self._rejected(f"{requester}/{req.job_id}", req, requester, JobError(
                "InputError", f"{self.me} refuses the job: {exc}", self.me, "job_id"))
        recipients = recipients_for(requester, req.recipients)
        submission = Submission(dict(req.params), req.source, req.signature, req.certificate_pem, req.signed_at)
        signer = None
        if self.verifier is not None:
            try:
                signer = self._verify(job_id, req.analysis, submission, recipients, requester)
            except IdentityError as exc:
                return self._rejected(job_id, req, requester, JobError(
                    "PolicyError", f"{self.me} refuses job {job_id}: {exc} (rule requester.signature)", self.me,
                    "requester.signature"))
        source = req.source or next(iter(self.config.data))  # default: the first [data.*] source
        params = _effective_params(req.analysis, submission.params, requester)
        request = JobRequest(job_id, req.analysis, params, source, requester, recipients, self.me,
                             list(self.config.ranks))
        job = self._reserve(request)
        if job is None:
            self.audit.record("job_replay_refused", job_id=job_id, requester=requester,
                              analysis=req.analysis[:NAME_CHARS])
            return self._rejected(job_id, req, requester, JobError(
                "PolicyError", f"{self.me} refuses job {job_id}: the job id was used before (rule job_id.unique)",
                self.me, "job_id.unique"), record=False)
        job.submission, job.signer = submission, signer
        self._received(job, via="submit")
        decision = self._decide(job)
        if not decision.accepted:
            self._refused_here(job, decision)
            self._notify_peers(job, why="refused", reason=decision.message, party=self.me, rule=decision.rule,
                               error_type=decision.error_type, skip=set())
            return job
        job.emit(self.me, stage="waiting for the other parties to accept", progress=0.0)
        spec = _spec(job)
        futures = self._call_peers(self._peer_names(), "Prepare",
                                   peer_pb2.PrepareRequest(spec=spec, workers=self._reserve_workers(job, decision)))
        answers: dict[str, peer_pb2.PrepareResponse | Exception] = {n: f.result() for n, f in futures.items()}
        unreachable = {n: a for n, a in answers.items() if isinstance(a, Exception)}
        refusals = [(n, a) for n, a in answers.items() if not isinstance(a, Exception) and not a.accepted]
        if refusals or unreachable:
            if refusals:  # the refusing party is the one that answered, whatever its answer says
                ranks = list(self.config.ranks)
                name, first = min(refusals, key=lambda na: ranks.index(na[0]))
                error = JobError(_error_type(first.error_type), sanitise(first.message), name,
                                 sanitise(first.rule, 128))
                why = "refused"
            else:
                name, exc = next(iter(unreachable.items()))
                error = JobError("PartyUnavailable", f"{self.me}: cannot reach {name} to prepare job {job_id} ({exc})",
                                 name)
                why = "failed"
            accepted = {n for n, a in answers.items() if not isinstance(a, Exception) and a.accepted}
            self._notify_peers(job, why=why, reason=error.message, party=error.party, rule=error.rule,
                               error_type=error.type, only=accepted)
            self.audit.record("job_refused" if why == "refused" else "job_not_started", job_id=job_id,
                              by=error.party, **error.audit())
            self._finish(job, _refusal_state(error.type) if why == "refused" else jobs_pb2.JOB_STATE_FAILED, error)
            return job
        start = self._start_terms(job, decision, answers)
        if start is None:
            return job
        futures = self._call_peers(self._peer_names(), "Start", start)
        failed = {}
        if not self._start_local(job, start):  # it ended here first (a shutdown): stop the others
            failed[self.me] = "it ended before it could start"
        for name, fut in futures.items():
            ack = fut.result()
            if isinstance(ack, Exception) or not ack.ok:
                failed[name] = ack.message if isinstance(ack, peer_pb2.PeerAck) else str(ack)
        if failed:
            name, why = next(iter(failed.items()))
            reason = f"{self.me}: {name} did not start job {job_id} ({why})"
            self._notify_peers(job, why="failed", reason=reason, party=name, rule="", error_type="PartyUnavailable",
                               skip=set(failed))
            self._abort_local(job, reason, "PartyUnavailable")
        return job

    def _start_terms(self, job: Job, decision: Decision,
                     answers: dict[str, peer_pb2.PrepareResponse]) -> peer_pb2.StartRequest | None:
        """What every party runs the job with, merged from its own decision and the peers'
        answers; None when the job cannot run (it is refused here and everywhere)."""
        analysis = registry.get(job.request.analysis)
        salts = {self.me: decision.salt_fingerprint, **{n: a.join_salt_fingerprint for n, a in answers.items()}}
        declared = [decision.declared]
        refusal = None
        if len(set(salts.values())) > 1:
            differ = ", ".join(n for n, f in salts.items() if f != decision.salt_fingerprint)
            refusal = JobError("PolicyError", f"{self.me} refuses job {job.id}: the join salt of {differ} differs "
                                              f"from {self.me}'s (rule join.salt)", self.me, "join.salt")
        for name, answer in answers.items():
            try:
                declared.append(decode_declared(analysis, answer.declared, name))
            except SmpcError as exc:
                refusal = refusal or JobError("PolicyError", f"{self.me} refuses job {job.id}: {exc} "
                                                             "(rule declared)", self.me, "declared")
        if refusal is not None:
            self._notify_peers(job, why="refused", reason=refusal.message, party=self.me, rule=refusal.rule,
                               error_type=refusal.type, only=set(answers))
            self.audit.record("job_refused", job_id=job.id, by=self.me, **refusal.audit())
            self._finish(job, jobs_pb2.JOB_STATE_REFUSED, refusal)
            return None
        start = peer_pb2.StartRequest(
            job_id=job.id,
            min_cell_size=max([decision.min_cell_size] + [a.min_cell_size for a in answers.values()]),
            declared=encode_declared(merge_declared(analysis, declared)),
            min_contributors=max([decision.min_contributors] + [a.min_contributors for a in answers.values()]),
            max_dominance=min([decision.max_dominance] + [a.max_dominance for a in answers.values()]),
        )
        pools = {self.me: peer_pb2.WorkerPool(endpoints=job.workers, min_buckets=_min_buckets(decision.rows)),
                 **{name: answer.workers for name, answer in answers.items()}}
        slots = min(len(p.endpoints) for p in pools.values())
        if slots >= 2:  # every party has a pool for this job: the buckets run there
            wanted = max(max(p.min_buckets for p in pools.values()), 1)
            start.buckets = min(slots * -(-wanted // slots), MAX_BUCKETS - MAX_BUCKETS % slots)
            for name, pool in pools.items():
                start.workers[name].CopyFrom(pool)
        return start

    def _rejected(self, job_id: str, req, requester: str, error: JobError, record: bool = True) -> Job:
        """A job refused before it got an id of its own (bad id, bad signature, replay): its id
        is not reserved, and its record is bounded."""
        request = JobRequest(sanitise(job_id, 200), sanitise(req.analysis, 128), {}, sanitise(req.source, 128),
                             requester, [requester], self.me, list(self.config.ranks))
        job = Job(request)
        if record:
            self.audit.record("job_rejected", job_id=request.job_id, requester=requester, analysis=request.analysis,
                              **error.audit())
        self._finish(job, _refusal_state(error.type), error)
        return job

    def _peer_names(self) -> list[str]:
        return [n for n in self.config.ranks if n != self.me]

    def _call_peers(self, names: list[str], method: str, request) -> dict[str, Future]:
        """``method`` on each peer in parallel; each future's result is the answer or a
        PartyUnavailable. Once shutdown closed the pool they resolve at once to the latter."""
        futures = {}
        for name in names:
            try:
                futures[name] = self._pool.submit(self._call_peer, name, method, request)
            except RuntimeError:  # "cannot schedule new futures after shutdown"
                futures[name] = Future()
                futures[name].set_result(PartyUnavailable(f"{self.me} is shutting down", peer=self.me))
        return futures

    def _call_peer(self, name: str, method: str, request):
        """``method`` on peer ``name``: the answer, or a PartyUnavailable.

        A ``Prepare`` waits for the connection, up to ``timeouts.connect``, instead of failing
        at once: for a moment after a peer restarts, the channel to it is still waiting out
        the backoff of its failed reconnects and would refuse every call."""
        connect = self.config.timeouts.connect
        wait = method == "Prepare"
        try:
            stub = self.peers.stub(name)
            return getattr(stub, method)(request, timeout=connect, metadata=self.peers.metadata(),
                                         wait_for_ready=wait)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            if wait and code == grpc.StatusCode.DEADLINE_EXCEEDED:
                details = f"no connection or no answer within timeouts.connect = {connect:g} s; {details}"
            return PartyUnavailable(f"{name} is unavailable ({code.name if code else 'error'}: {details})",
                                    peer=name)

    def _notify_peers(self, job: Job, why: str, reason: str, party: str, rule: str, error_type: str,
                      only: set | None = None, skip: set | None = None) -> None:
        names = [n for n in self._peer_names() if (only is None or n in only) and (not skip or n not in skip)]
        req = peer_pb2.PeerCancelRequest(job_id=job.id, why=why, reason=sanitise(reason), party=party, rule=rule,
                                         error_type=error_type)
        for f in self._call_peers(names, "Cancel", req).values():
            f.result()

    # ----- every party -------------------------------------------------------------------
    def _received(self, job: Job, via: str) -> None:
        r = job.request
        self.audit.record(
            "job_received", job_id=r.job_id, via=via, analysis=r.analysis[:NAME_CHARS],
            **received_params(r.analysis, r.params, self.config.limits), source=r.source[:NAME_CHARS],
            requester=r.requester, recipients=[who[:NAME_CHARS] for who in r.recipients[:MAX_RECIPIENTS]],
            coordinator=r.coordinator, parties=list(r.parties),
            **(job.signer.audit() if job.signer else {"signer": None, "signed": "no (plaintext development mode)"}),
        )
        with job.cond:  # from here on every event of the job is kept
            self.store.add(r.job_id, r.requester, list(r.recipients), job.stored_spec(), job.stored_status(),
                           STATE_NAMES[job.state], job.terminal)
            job.store = self.store
        job.emit(self.me, stage="received")

    def _decide(self, job: Job) -> Decision:
        decision = decide(self.config, job.request)
        epsilon = epsilon_of(decision.params) if decision.accepted else None
        if epsilon is not None:  # last, so a job refused for any other reason spends nothing
            try:
                self.budget.debit(job.id, job.request.source, epsilon, job.request.requester)
            except PolicyError as exc:
                decision = Decision(False, self.me, BUDGET_RULE, "PolicyError", str(exc))
            else:
                job.dp_debited = True
        self.audit.record("policy_decision", job_id=job.id, analysis=job.request.analysis, **decision.as_audit())
        if decision.detail:  # this party's own data: its operator's log, never the wire
            print(f"{self.me}: job {job.id} refused ({decision.rule}): {decision.detail}", file=sys.stderr,
                  flush=True)
        job.decision = decision
        return decision

    def _refused_here(self, job: Job, decision: Decision) -> None:
        error = JobError(decision.error_type, decision.message, self.me, decision.rule)
        self._finish(job, _refusal_state(decision.error_type), error)

    def _verify(self, job_id: str, analysis: str, sub: Submission, recipients: list[str], requester: str) -> Signer:
        payload = spec_payload(job_id, analysis, sub.params, sub.source, recipients, requester, sub.signed_at)
        return self.verifier.verify(sub.certificate_pem, sub.signature, sub.signed_at, payload, requester, time.time())

    def prepare(self, caller: str, spec: peer_pb2.JobSpec,
                coordinator_workers: peer_pb2.WorkerPool | None = None) -> peer_pb2.PrepareResponse:
        """Phase one on a participant: check who asked, then decide under this party's own policy."""
        if self.stopping:
            raise ServiceStopping(f"{self.me} is shutting down")

        def no(rule: str, message: str, error_type: str = "PolicyError") -> peer_pb2.PrepareResponse:
            return peer_pb2.PrepareResponse(accepted=False, party=self.me, rule=rule, error_type=error_type,
                                            message=message)

        if caller != spec.coordinator:
            return no("peer.identity", f"{self.me} refuses a job from {caller}: {caller} is not its coordinator")
        if not JOB_ID.fullmatch(spec.job_id) or spec.job_id.partition("/")[0] != spec.requester:
            return no("job_id", f"{self.me} refuses a job whose id is not REQUESTER/ID", "InputError")
        recipients = list(spec.recipients)
        submission = Submission(dict(spec.params), spec.signed_source, spec.signature, spec.certificate_pem,
                                spec.signed_at)
        signer = None
        if self.verifier is not None:
            try:
                if recipients != recipients_for(spec.requester, recipients):
                    raise IdentityError("the recipients are not the requester first and each other one once")
                if spec.signed_source not in ("", spec.source):
                    raise IdentityError(f"the requester signed source {sanitise(spec.signed_source, 64)!r}, "
                                        f"not {sanitise(spec.source, 64)!r}")
                signer = self._verify(spec.job_id, spec.analysis, submission, recipients, spec.requester)
            except IdentityError as exc:
                self.audit.record("job_rejected", job_id=spec.job_id, requester=spec.requester, coordinator=caller,
                                  analysis=sanitise(spec.analysis, 128), error_type="PolicyError",
                                  rule="requester.signature", error=str(exc))
                return no("requester.signature", f"{self.me} refuses job {spec.job_id} from {caller}: {exc} "
                                                  "(rule requester.signature)")
        params = _effective_params(spec.analysis, submission.params, spec.requester)
        request = JobRequest(spec.job_id, spec.analysis, params, spec.source, spec.requester, recipients,
                             spec.coordinator, list(spec.parties))
        try:
            job = self._reserve(request)
        except QuotaExceeded as exc:
            self.audit.record("quota_refused", job_id=spec.job_id, coordinator=caller, requester=spec.requester[:128],
                              limit=exc.key, reason=str(exc))
            return no(exc.key, str(exc), "QuotaExceeded")
        if job is None:
            self.audit.record("job_replay_refused", job_id=spec.job_id, coordinator=caller,
                              analysis=sanitise(spec.analysis, 128))
            return no("job_id.unique", f"{self.me} refuses job {spec.job_id}: the job id was used before "
                                       "(rule job_id.unique)")
        job.submission, job.signer = submission, signer
        self._received(job, via=f"prepare from {caller}")
        decision = self._decide(job)
        if not decision.accepted:
            self._refused_here(job, decision)
            return no(decision.rule, decision.message, decision.error_type)
        job.emit(self.me, stage="accepted; waiting for the start")
        job.coordinator_workers = list(coordinator_workers.endpoints) if coordinator_workers is not None else []
        return peer_pb2.PrepareResponse(
            accepted=True, party=self.me, min_cell_size=decision.min_cell_size,
            declared=encode_declared(decision.declared), join_salt_fingerprint=decision.salt_fingerprint,
            min_contributors=decision.min_contributors, max_dominance=decision.max_dominance,
            workers=self._reserve_workers(job, decision),
        )

    def start(self, caller: str, req: peer_pb2.StartRequest) -> peer_pb2.PeerAck:
        job = self.get(req.job_id)
        if job is None or job.request.coordinator != caller:
            return peer_pb2.PeerAck(ok=False, message=f"{self.me}: no job {sanitise(req.job_id, 200)!r} prepared "
                                                       f"by {caller}")
        if job.state != jobs_pb2.JOB_STATE_PREPARED or job.decision is None:
            return peer_pb2.PeerAck(ok=False, message=f"{self.me}: job {req.job_id} is {STATE_NAMES[job.state]}")
        weaker = self._weaker_than_decided(job, req) or self._bad_worker_terms(job, req)
        if weaker is not None:
            rule, what = weaker
            reason = f"{self.me} refuses to start job {job.id}: {what} (rule {rule})"
            self._finish(job, jobs_pb2.JOB_STATE_REFUSED, JobError("PolicyError", reason, self.me, rule))
            return peer_pb2.PeerAck(ok=False, message=reason)
        if not self._start_local(job, req):
            return peer_pb2.PeerAck(ok=False, message=f"{self.me}: job {req.job_id} ended before it could start")
        return peer_pb2.PeerAck(ok=True)

    def _bad_worker_terms(self, job: Job, req: peer_pb2.StartRequest) -> tuple[str, str] | None:
        """(rule, what) when the coordinator's worker terms are not the ones announced: this
        party's own endpoints and the coordinator's must be what each announced at Prepare
        (a third party's reach this party only through the coordinator; its certificate,
        pinned at every dial, is what proves them), and the buckets within bounds."""
        if not req.workers:
            return None
        parties = set(job.request.parties)
        if set(req.workers) != parties:
            return "compute.workers", "the worker pools named are not the job's parties"
        if list(req.workers[self.me].endpoints) != job.workers:
            return "compute.workers", "its worker endpoints are not the ones it announced"
        coordinator = job.request.coordinator
        if coordinator != self.me and list(req.workers[coordinator].endpoints) != job.coordinator_workers:
            return "compute.workers", f"{coordinator}'s worker endpoints are not the ones it announced at Prepare"
        slots = min(len(p.endpoints) for p in req.workers.values())
        if slots < 2 or not 1 <= req.buckets <= MAX_BUCKETS:
            return "compute.workers", f"{req.buckets} buckets on {slots} workers is not a bucketed job"
        if any(not ENDPOINT.fullmatch(e) for p in req.workers.values() for e in p.endpoints):
            return "compute.workers", "a worker endpoint is not HOST:PORT"
        return None

    def _reserve_workers(self, job: Job, decision: Decision) -> peer_pb2.WorkerPool:
        """This party's worker pool for a bucketed job (its endpoints; none for another job,
        without a pool, or while the pool serves another job)."""
        if self.pool is None or not self.pool.enabled or job.request.analysis not in _bucketed():
            return peer_pb2.WorkerPool()
        job.workers = self.pool.reserve(job.id)
        return peer_pb2.WorkerPool(endpoints=job.workers, min_buckets=_min_buckets(decision.rows))

    def _weaker_than_decided(self, job: Job, req: peer_pb2.StartRequest) -> tuple[str, str] | None:
        """(rule, what) when the coordinator's terms are looser than this party decided: a
        smaller minimum cell size or number of contributors, a larger dominance, or owner-set
        values that do not cover this party's declaration."""
        mine = job.decision
        if req.min_cell_size < mine.min_cell_size:
            return "policy.min_cell_size", (f"minimum cell size {req.min_cell_size} is below its policy's "
                                            f"{mine.min_cell_size}")
        if req.min_contributors < mine.min_contributors:
            return "policy.min_contributors", (f"minimum contributors {req.min_contributors} is below its "
                                               f"policy's {mine.min_contributors}")
        if not req.max_dominance <= mine.max_dominance:
            return "policy.max_dominance", (f"maximum dominance {req.max_dominance:g} % is above its policy's "
                                            f"{mine.max_dominance:g} %")
        analysis = registry.get(job.request.analysis)
        try:
            merged = decode_declared(analysis, req.declared, job.request.coordinator)
        except SmpcError as exc:
            return "declared", str(exc)
        name = uncovered(analysis, merged, mine.declared)
        if name is not None:
            return "declared", f"the job's '{name}' does not cover this party's declaration"
        return None

    def peer_cancel(self, caller: str, req: peer_pb2.PeerCancelRequest) -> peer_pb2.PeerAck:
        """A peer stops a job here. ``caller`` is the authenticated peer: it is who every record
        names; what the request says of who refused (``party``) is kept as ``reported_party``.
        Only the job's coordinator reports refusals and failed starts, and only before the job
        started; anything else stops the job as a cancellation."""
        reason, rule, reported = sanitise(req.reason), sanitise(req.rule, 128), sanitise(req.party, 64)
        error_type = _error_type(req.error_type)
        job_id = req.job_id if JOB_ID.fullmatch(req.job_id) else ""
        job = self.get(job_id) if job_id else None
        if job is None or caller not in job.request.parties:
            if job is None and job_id and req.why == "refused":
                # the coordinator refused before asking this party: a bounded record of what it said
                self.audit.record("job_refused", job_id=job_id, by=caller, reported_party=reported, rule=rule,
                                  error_type=error_type, reason=reason, coordinator=caller)
            return peer_pb2.PeerAck(ok=False, message=f"{self.me}: no job {sanitise(req.job_id, 200)!r} of {caller}")
        not_started = job.state == jobs_pb2.JOB_STATE_PREPARED and job.transport is None
        if req.why in ("refused", "failed") and not_started:
            if caller != job.request.coordinator:
                return peer_pb2.PeerAck(ok=False, message=f"{self.me}: only job {job.id}'s coordinator "
                                                           f"{job.request.coordinator} reports its refusal or failure")
            if req.why == "refused":
                self.audit.record("job_refused", job_id=job.id, by=caller, reported_party=reported, rule=rule,
                                  error_type=error_type, reason=reason)
                self._finish(job, _refusal_state(error_type), JobError(error_type, reason, caller, rule))
            else:
                self.audit.record("job_not_started", job_id=job.id, by=caller, reported_party=reported, reason=reason)
                self._finish(job, jobs_pb2.JOB_STATE_FAILED,
                             JobError(error_type if req.error_type else "PartyUnavailable", reason, caller))
        else:
            self._cancel_local(job, reason or f"cancelled by {caller}", by=caller)
        return peer_pb2.PeerAck(ok=True)

    def client_cancel(self, caller: str, job: Job) -> None:
        """Cancel on every party (the requester asked this party)."""
        reason = f"cancelled by {caller} (via {self.me})"
        self._cancel_local(job, reason, by=caller)
        req = peer_pb2.PeerCancelRequest(job_id=job.id, why="cancelled", reason=reason, party=self.me)
        for f in [self._pool.submit(self._call_peer, n, "Cancel", req) for n in self._peer_names()]:
            f.result()

    def _cancel_local(self, job: Job, reason: str, by: str = "") -> None:
        with job.cond:
            if job.terminal:
                return
            job.cancel_reason = reason
            running = job.transport is not None
            first, job.cancel_audited = not job.cancel_audited, True
        if first:
            self.audit.record("job_cancelled", job_id=job.id, reason=reason, by=by or self.me)
        if running:
            self._abort_local(job, reason, CANCELLED)
        else:
            self._finish(job, jobs_pb2.JOB_STATE_CANCELLED, JobError(CANCELLED, reason, self.me))

    def _abort_local(self, job: Job, reason: str, error_type: str) -> None:
        transport = job.transport
        if transport is not None:
            transport.abort(reason, error_type=error_type)

    # ----- execution --------------------------------------------------------------------
    def _start_local(self, job: Job, start: peer_pb2.StartRequest) -> bool:
        """Start the job's thread here, on the agreed terms (checked against this party's
        decision by ``start``); False when the job ended first (cancelled, shut down)."""
        decision = job.decision
        if decision is None or job.terminal:
            return False
        analysis = registry.get(job.request.analysis)
        params = dict(decision.params)
        params.update(decode_declared(analysis, start.declared, job.request.coordinator))
        if analysis.has_min_cell_size:
            params[registry.MIN_CELL_SIZE] = max(start.min_cell_size, decision.min_cell_size)
        if analysis.param(registry.MIN_CONTRIBUTORS) is not None:
            params[registry.MIN_CONTRIBUTORS] = max(start.min_contributors, decision.min_contributors)
        if analysis.param(registry.MAX_DOMINANCE) is not None:
            params[registry.MAX_DOMINANCE] = min(start.max_dominance, decision.max_dominance)
        if start.workers and start.buckets:
            ranks = list(self.config.ranks)
            slots = min(len(p.endpoints) for p in start.workers.values())
            job.plan = BucketPlan(int(start.buckets), slots,
                                  {ranks.index(n): list(p.endpoints) for n, p in start.workers.items()})
        with job.cond:  # shutdown reads transport and thread under this lock: it sees both or neither
            if job.terminal:
                return False
            job.started = time.monotonic()
            job.transport = GrpcTransport(self.rank, len(self.config.ranks), job.id, list(self.config.ranks))
            job.emit(self.me, state=jobs_pb2.JOB_STATE_RUNNING, stage="starting", progress=0.0)
            job.thread = threading.Thread(
                target=self._execute, args=(job, analysis, params, decision), name=f"smpc-job-{job.id[:24]}",
                daemon=True,
            )
            job.transport_ready.set()
            job.thread.start()
        return True

    def _execute(self, job: Job, analysis, params: dict, decision: Decision) -> None:
        transport = job.transport
        timeouts = self.config.timeouts
        timer = threading.Timer(timeouts.job, self._abort_local, args=(job, f"{self.me}: job exceeded "
                                f"timeouts.job = {timeouts.job:g} s", "ProtocolTimeout"))
        timer.daemon = True
        timer.name = f"smpc-job-timer-{job.id[:16]}"
        timer.start()
        t0 = time.monotonic()
        ctx = None
        state, error = jobs_pb2.JOB_STATE_FAILED, None
        try:
            self.audit.record("job_started", job_id=job.id, rank=self.rank, parties=list(self.config.ranks),
                              params=registry.audit_params(job.request.analysis,
                                                           {k: v for k, v in params.items() if v is not None}))
            self.audit.record("inputs_used", job_id=job.id, source=job.request.source, columns=decision.columns,
                              rows=decision.rows, duplicate_rows=decision.duplicate_rows)
            for peer in range(self.rank + 1, len(self.config.ranks)):
                name = self.config.ranks[peer]
                transport.dial(peer, self.peers.channel(name), metadata=self.peers.metadata())
            job.emit(self.me, stage="agreeing session keys")
            # results open only to the recipients' own parties; a recipient without one (a
            # client identity) receives through the coordinator's party, which it chose
            ranks, recipients = list(self.config.ranks), job.request.recipients
            result_ranks = {ranks.index(n) for n in recipients if n in ranks}
            if any(n not in ranks for n in recipients):
                result_ranks.add(ranks.index(job.request.coordinator))
            ctx = Context(self.rank, len(ranks), transport, ring=analysis.ring, timeout=timeouts.step,
                          party_names=ranks, result_ranks=result_ranks)
            registry.set_progress_hook(ctx, lambda f, s: job.emit(self.me, progress=f, stage=s))
            if job.plan is not None:
                result = self._run_buckets(job, ctx, analysis, params, decision, result_ranks)
            else:
                result = analysis.fn(ctx, decision.table, list(range(len(self.config.ranks))), **params)
            if result is None:  # nothing was revealed to this party (blacklist_hits at another bank)
                result = {}
            if not isinstance(result, dict):
                raise SmpcError(f"{self.me}: analysis {analysis.name} returned {type(result).__name__}, not a dict")
            job.result = _jsonable(result)
            json.dumps(job.result, allow_nan=True)
            state = jobs_pb2.JOB_STATE_SUCCEEDED
        except BaseException as exc:  # noqa: BLE001 - every failure must abort the peers and be reported
            error = _error_of(exc, self.me, self.config.ranks)
            if job.cancel_reason is not None:
                state, error = jobs_pb2.JOB_STATE_CANCELLED, JobError(CANCELLED, job.cancel_reason, self.me)
            elif error.type == CANCELLED:
                state = jobs_pb2.JOB_STATE_CANCELLED
            # tell the remaining peers the root cause and who is at fault (a no-op after a
            # local cancel, which aborted already)
            if isinstance(exc, PartyUnavailable):
                transport.abort(error.message, error_type=error.type, culprit=error.party)
            else:
                transport.abort(f"{type(exc).__name__}: {exc}", error_type=error.type, culprit=self.me)
                if not isinstance(exc, SmpcError):
                    traceback.print_exc(file=sys.stderr)
        finally:
            timer.cancel()
            with job.cond:  # a peer's abort may tell us before its Cancel call does
                first = state == jobs_pb2.JOB_STATE_CANCELLED and not job.cancel_audited
                job.cancel_audited = job.cancel_audited or first
            if first:
                self.audit.record("job_cancelled", job_id=job.id, reason=error.message if error else "",
                                  by=error.party if error else "")
            if ctx is not None:
                stats = ctx.comm_stats()
                job.bytes_sent = int(stats["bytes_sent"]) + job.bucket_bytes
                job.rounds = int(stats["rounds"]) + job.bucket_rounds
                registry.set_progress_hook(ctx, None)
            transport.close(timeout=timeouts.step)
            self.audit.record(
                "job_finished", job_id=job.id, state=STATE_NAMES[state], bytes_sent=job.bytes_sent,
                rounds=job.rounds, seconds=round(time.monotonic() - t0, 3), **(error.audit() if error else {}),
                **({"result_keys": sorted(job.result)} if job.result is not None else {}),
            )
            if state == jobs_pb2.JOB_STATE_SUCCEEDED:
                job.emit(self.me, progress=1.0)
            self._finish(job, state, error)
            job.transport = None
            self._send_head(job.id)

    def _run_buckets(self, job: Job, ctx: Context, analysis, params: dict, decision: Decision,
                     result_ranks: set) -> dict | None:
        """A bucketed job (``smpc.service.pool``): this bank's rows split into the agreed
        buckets, the bucket sessions on the worker pool, then the merge on this job's own
        streams, which opens the merged outputs only."""
        spec = _bucketed()[analysis.name]
        plan = job.plan
        owners = list(range(len(self.config.ranks)))
        job.emit(self.me, stage=f"splitting the rows into {plan.buckets} buckets", progress=0.02)
        state, buckets = spec.prepare(decision.table, self.me, self.rank, len(owners), plan.buckets, **params)
        public = spec.public(len(owners), **params)
        sessions = [{"owners": owners, "keys": buckets.keys[b], "values": buckets.values[b], **public}
                    for b in range(plan.buckets)]
        done: list[int] = []

        def event(kind: str, b: int, w: int) -> None:
            if kind == "done":
                done.append(b)
            what = "done" if kind == "done" else "running"
            text = f"bucket {b + 1} of {plan.buckets} {what} on worker {w}"
            job.emit(self.me, progress=0.05 + 0.85 * len(done) / plan.buckets,
                     stage=f"{text} ({len(done)} of {plan.buckets} done)", message=text)

        job.emit(self.me, stage=f"{plan.buckets} buckets on {plan.slots} workers per party", progress=0.05)
        try:
            outcome = self.pool.run(job.id, self.rank, plan, spec.session, sessions, ring=analysis.ring,
                                    timeout=self.config.timeouts.step, result_ranks=result_ranks, on_event=event,
                                    failure=job.transport.failure)
        except BaseException as exc:
            # the peers hear the cause on the job's streams before they see this party's
            # workers go (recycle), so that they blame the right party
            error = _error_of(exc, self.me, self.config.ranks)
            job.transport.abort(error.message, error_type=error.type, culprit=error.party)
            self.pool.recycle()
            raise
        chains: dict[int, int] = {}
        for _, stats, w in outcome:
            chains[w] = chains.get(w, 0) + int(stats["rounds"])
        job.bucket_bytes = sum(int(stats["bytes_sent"]) for _, stats, _ in outcome)
        job.bucket_rounds = max(chains.values())  # the workers run side by side
        job.emit(self.me, stage="merging the buckets", progress=0.92)
        shared = [r["shared"] for r, _, _ in outcome] if ctx.is_compute else None
        opened = spec.merge(ctx, owners, shared, **params)
        if opened is None:
            return None
        return spec.finish(state, buckets, [r["own"] for r, _, _ in outcome], opened, self.me, **params)

    # ----- audit anchoring ----------------------------------------------------------------
    def _send_head(self, job_id: str) -> None:
        """After a job's end: this party's signed audit head to every peer, which records it
        (``peer_head``). Fire and forget, each call bounded by ``timeouts.connect``; it never
        changes the job, and a peer that is gone only misses this anchor. At most one push per
        peer waits in the queue (it sends the head as of when it runs), so a hung peer cannot
        pile them up."""
        for name in self._peer_names():
            with self._heads_lock:
                queued = name in self._heads_due
                self._heads_due[name] = job_id
            if not queued:
                try:
                    self._anchors.submit(self._push_head, name)
                except RuntimeError:  # shutting down
                    return

    def _anchor_periodically(self) -> None:
        """Between jobs too, a log that grew goes out: the unanchored tail of a running party
        is at most ``anchor_interval_s`` old. Only records other than anchoring's own count, or
        two parties would anchor each other's ``peer_head`` records forever."""
        while not self._stopping.wait(self.config.anchor_interval_s):
            newest = self.audit.last_own_record
            if newest > self._anchored_through:
                self._anchored_through = newest
                self._send_head("")

    def push_final_head(self) -> None:
        """At a clean stop, after the last record: the final head to every peer still up, at
        once and in parallel, each bounded by ``timeouts.connect``."""
        threads = [threading.Thread(target=self._push_head, args=(name, ""), daemon=True)
                   for name in self._peer_names()]
        for t in threads:
            t.start()
        deadline = time.monotonic() + self.config.timeouts.connect + 1
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def seal_audit(self) -> None:
        """Seal the log at its final head (see ``AuditLog.seal``)."""
        if self._head_key is not None:
            self.audit.seal(lambda payload: sign(self._head_key, payload), self._head_cert)
        else:
            self.audit.seal()

    def _push_head(self, name: str, job_id: str | None = None) -> None:
        if job_id is None:
            with self._heads_lock:
                job_id = self._heads_due.pop(name, "")
        records, head = self.audit.head()
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        signature = b""
        if self._head_key is not None:
            signature = sign(self._head_key, head_payload(self.me, records, head, when))
        request = peer_pb2.AuditHead(party=self.me, records=records, head=head, time=when, signature=signature,
                                     certificate_pem=self._head_cert if self._head_key is not None else "",
                                     job_id=job_id)
        try:
            with self.peers.separate_channel(name) as channel:
                peer_pb2_grpc.PartyPeerStub(channel).RecordHead(request, timeout=self.config.timeouts.connect,
                                                                 metadata=self.peers.metadata())
        except grpc.RpcError:
            pass  # the peer is gone or stopping: it misses this anchor, the next job's end sends another

    def record_peer_head(self, caller: str, head: peer_pb2.AuditHead) -> peer_pb2.PeerAck:
        """Record a peer's signed audit head (``peer_head``), after checking that the caller
        signed it with its party certificate; what does not check out is recorded as refused."""
        when, job_id = sanitise(head.time, 40), sanitise(head.job_id, 200)
        problem = None
        signed: dict = {"signed": "no (plaintext development mode)"}
        if head.party != caller:
            problem = f"the head names {sanitise(head.party, 64)!r}, but {caller} sent it"
        elif not HEAD_HASH.fullmatch(head.head) or head.records >= 2**53:
            problem = "the head is not a record count and a hex SHA-256"
        elif self.verifier is not None:
            try:
                ident = verify_party_signature(self.verifier.ca, self.crl, head.certificate_pem, head.signature,
                                               head_payload(caller, head.records, head.head, head.time),
                                               self.config.peers[caller].identity, time.time())
            except IdentityError as exc:
                problem = str(exc)
            else:
                signed = {"signer_cert": ident.fingerprint, "signature": encode_signature(head.signature)}
                if ident.fingerprint not in self._certs_recorded:  # so `audit cross-check` can check it
                    self._certs_recorded.add(ident.fingerprint)
                    signed["signer_cert_pem"] = head.certificate_pem
        try:
            if problem is not None:
                self.audit.record("peer_head_refused", peer=caller, after_job=job_id, reason=problem)
                return peer_pb2.PeerAck(ok=False, message=f"{self.me} refuses {caller}'s audit head: {problem}")
            self.audit.record("peer_head", peer=caller, records=int(head.records), head=head.head, head_time=when,
                              after_job=job_id, **signed)
        except AuditError as exc:  # this party is stopping: its log is closed
            return peer_pb2.PeerAck(ok=False, message=f"{self.me}: {exc}")
        return peer_pb2.PeerAck(ok=True)

    # ----- results ----------------------------------------------------------------------
    def may_see_result(self, identity: str, job: Job) -> bool:
        return identity in job.request.recipients

    def release(self, identity: str, job: Job) -> str:
        """The result as JSON for a permitted recipient (audited once per recipient)."""
        with job.cond:
            first = identity not in job.released_to
            job.released_to.add(identity)
            if first and job.store is not None:
                job.persist()
        result = addressed_to(job.result, identity)
        if first:
            self.audit.record("outputs_released", job_id=job.id, to=identity, keys=sorted(result or {}))
        return json.dumps(result, allow_nan=True)

    def status(self, job: Job, identity: str | None = None) -> jobs_pb2.JobStatus:
        with job.cond:
            out = jobs_pb2.JobStatus(
                job_id=job.id, state=job.state, analysis=job.request.analysis, party=self.me,
                coordinator=job.request.coordinator, requester=job.request.requester, progress=job.progress,
                stage=job.stage, error=job.error.proto() if job.error else None, bytes_sent=job.bytes_sent,
                rounds=job.rounds,
            )
            done = job.state == jobs_pb2.JOB_STATE_SUCCEEDED
        if done and identity is not None and self.may_see_result(identity, job):
            out.result_json = self.release(identity, job)
        return out

    def events(self, job: Job, alive) -> list:
        """Generator of a job's events from the first until it ends (``alive()`` false stops it)."""
        seq = 0
        while True:
            with job.cond:
                # through a shutdown, until the shutdown ended the job: a watcher learns how it ended
                while seq >= len(job.events) and not job.terminal and alive() and not self._shut_down.is_set():
                    job.cond.wait(timeout=1.0)
                batch = job.events[seq:]
                ended = job.terminal
            yield from batch
            seq += len(batch)
            if (ended and seq >= len(job.events)) or not alive() or self._shut_down.is_set():
                return

    # ----- shutdown ---------------------------------------------------------------------
    def shutdown(self, timeout: float = 10.0) -> None:
        """Abort every running job (peers see this party leave) and wait for the job threads."""
        with self._lock:  # see _reserve: no job is made after this
            self._stopping.set()
            jobs = [j for j in self._jobs.values() if not j.terminal]
        for job in jobs:
            who = f"the coordinator {self.me}" if job.request.coordinator == self.me else self.me
            reason = f"{who} shut down while job {job.id} ran; the job failed at every party"
            # under the job's lock, _start_local either has given the job its transport (abort
            # it) or will find the job over and not start it; the job thread's own cleanup may
            # clear job.transport at any time, so it is read once
            with job.cond:
                transport = job.transport
                if transport is None:
                    job.cancel_reason = job.cancel_reason or f"{self.me} is shutting down"
                    self._finish(job, jobs_pb2.JOB_STATE_CANCELLED,
                                 JobError(CANCELLED, f"{self.me} is shutting down", self.me))
                else:  # a running job fails here as at its peers, which lose this party
                    job.stopped = JobError("PartyUnavailable", reason, self.me)
            if transport is not None:
                transport.abort(reason, error_type="PartyUnavailable")
        deadline = time.monotonic() + timeout
        for job in jobs:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))
        self._shut_down.set()
        for job in jobs:
            with job.cond:
                job.cond.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._anchors.shutdown(wait=False, cancel_futures=True)
        self._janitor.join(1.0)


MAX_BUCKETS = 4096
"""The most buckets a job may be split into (a coordinator asking for more is refused)."""
ENDPOINT = re.compile(r"[A-Za-z0-9_.:\[\]-]{1,253}:[0-9]{1,5}")


def _bucketed() -> dict:
    """{analysis name: its bucketed form} (``smpc.workers.bucketed_analyses``)."""
    from smpc.workers import bucketed_analyses

    return bucketed_analyses()


def _min_buckets(rows: int) -> int:
    from smpc.buckets import BUCKET_ROWS

    return max(1, -(-int(rows) // BUCKET_ROWS))


def request_size_problem(req: jobs_pb2.SubmitRequest, limits) -> tuple[str, str] | None:
    """``(limit key, what is wrong)`` for a submission too large to take, else None. The
    description gives counts and sizes only, never a value."""
    params = req.params
    if len(params) > limits.param_count:
        return "limits.param_count", f"it has {len(params)} parameters, more than {limits.param_count}"
    total = 0
    for name, value in params.items():
        size = len(value.encode("utf-8"))
        if len(name) > NAME_CHARS:
            return "request.size", f"a parameter name has {len(name)} characters, more than {NAME_CHARS}"
        if size > limits.param_value_bytes:
            return ("limits.param_value_bytes",
                    f"parameter '{name}' has {size} bytes, more than {limits.param_value_bytes}")
        total += len(name.encode("utf-8")) + size
    if total > limits.param_bytes:
        return "limits.param_bytes", f"its parameters have {total} bytes, more than {limits.param_bytes}"
    names = {"analysis": req.analysis, "source": req.source}
    for what, name in names.items():
        if len(name) > NAME_CHARS:
            return "request.size", f"the {what} name has {len(name)} characters, more than {NAME_CHARS}"
    if len(req.recipients) > MAX_RECIPIENTS:
        return "request.size", f"it names {len(req.recipients)} recipients, more than {MAX_RECIPIENTS}"
    if any(len(who) > NAME_CHARS for who in req.recipients):
        return "request.size", f"a recipient name has more than {NAME_CHARS} characters"
    return None


def received_params(analysis: str, params, limits) -> dict:
    """What ``job_received`` records of a job's parameters: their values as the catalogue parses
    them (``secret`` ones fingerprinted). Parameters that do not parse, or that are over the
    size limits (a participant checks what the coordinator sent), are recorded by name only,
    cut short: a raw value a requester wrote never reaches the log unparsed."""
    size = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in params.items())
    if len(params) <= limits.param_count and size <= limits.param_bytes:
        try:
            parsed = registry.get(analysis).parse_params(dict(params))
        except SmpcError:
            pass
        else:
            return {"params": registry.audit_params(analysis, {k: v for k, v in parsed.items() if k in params})}
    names = sorted(params)[: limits.param_count]
    return {"params_unparsed": [name[:NAME_CHARS] for name in names]}


def _spec(job: Job) -> peer_pb2.JobSpec:
    r, sub = job.request, job.submission
    return peer_pb2.JobSpec(
        job_id=r.job_id, analysis=r.analysis, params=dict(sub.params), source=r.source, requester=r.requester,
        recipients=list(r.recipients), coordinator=r.coordinator, parties=list(r.parties),
        signature=sub.signature, certificate_pem=sub.certificate_pem, signed_at=sub.signed_at,
        signed_source=sub.source,
    )


def _effective_params(analysis: str, params: dict, requester: str) -> dict:
    """The parameters a party decides on: as signed, and an analysis that answers its
    requester names the authenticated requester when the request left it out."""
    params = dict(params)
    if _answers_requester(analysis) and not params.get(registry.REQUESTER):
        params[registry.REQUESTER] = requester
    return params


def _error_type(text: str) -> str:
    """A peer's error class name, or PolicyError when it is not a plain identifier."""
    return text if ERROR_TYPE.fullmatch(text or "") else "PolicyError"


def _answers_requester(name: str) -> bool:
    try:
        return registry.get(name).requester_only
    except SmpcError:
        return False  # an unknown analysis: every party's decision refuses it


def _refusal_state(error_type: str) -> int:
    return jobs_pb2.JOB_STATE_REFUSED if error_type in ("PolicyError", "") else jobs_pb2.JOB_STATE_FAILED


def _jsonable(value):
    """Results as plain JSON types (numpy and torch scalars become Python numbers)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    return value


def addressed_to(result, identity: str):
    """What ``identity`` may receive of a result. Analyses with per-bank parts (``by_bank``,
    e.g. multi_lending: each bank's flags are for that bank only) are released with only the
    recipient's own part, so a party never hands another bank's part on."""
    if isinstance(result, dict) and isinstance(result.get("by_bank"), dict):
        return {**result, "by_bank": {k: v for k, v in result["by_bank"].items() if k == identity}}
    return result
