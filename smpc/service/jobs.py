"""Jobs on one party: two-phase agreement across the compute parties, execution, events.

A client submits a job to any compute party, which becomes its coordinator:

1. The coordinator reserves the job id (a replayed id is refused), writes ``job_received``,
   and decides under its own policy (``policy.decide``). Then it sends ``Prepare`` to every
   other compute party; each writes ``job_received`` and its own ``policy_decision``,
   loads and checks its input columns, and answers accept or refuse. No share has moved.
2. If anyone refused (or could not be reached), the coordinator tells the others
   (``Cancel`` with why="refused"; each writes ``job_refused`` naming the refusing party and
   rule) and answers the requester REFUSED with a ``PolicyError`` naming the party and rule.
3. Otherwise it sends ``Start`` (with the largest of the parties' minimum cell sizes) to
   every party and starts locally. Each party runs the registered SPMD function over a
   ``GrpcTransport`` -- the lower rank dials the higher -- in a thread of its own, and
   records ``inputs_used`` and ``job_finished`` (bytes, rounds, error).

Results are revealed to the compute parties and handed out (``Get``) only to the requester
and the recipients every party allowed; each hand-out writes ``outputs_released``. A party
hands out only what was revealed to it: a per-bank part (``by_bank``, multi_lending's flags)
only to that bank, and a result revealed to one bank alone (blacklist_hits' hits, to the
requester) only by that bank's own party -- every other party finishes with an empty result.
So a bank fetches its own part from its own party. ``job_finished`` records which result
keys this party received.

A failing party aborts its transport, so its peers stop at once with ``PartyUnavailable``
naming it (or with its ``InputError``); a dead peer is noticed by the broken stream, a hung one
by the step timeout. ``Cancel`` reaches every party and stops the job there.
"""

from __future__ import annotations

import json
import math
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
from smpc.errors import PartyUnavailable, ProtocolTimeout, SmpcError
from smpc.service.audit import AuditLog
from smpc.service.config import PartyConfig
from smpc.service.policy import Decision, JobRequest, decide
from smpc.transport.grpc import GrpcTransport, secure_channel
from smpc.v1 import jobs_pb2, peer_pb2, peer_pb2_grpc

JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
MAX_FINISHED_JOBS = 1000
TERMINAL = (
    jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED, jobs_pb2.JOB_STATE_REFUSED,
)
STATE_NAMES = {v: k.removeprefix("JOB_STATE_").lower() for k, v in jobs_pb2.JobState.items()}
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


@dataclass
class Job:
    request: JobRequest
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
            self.events.append(
                jobs_pb2.JobEvent(
                    job_id=self.id, seq=len(self.events), state=self.state, progress=self.progress,
                    stage=self.stage, message=message, party=party, time_unix=time.time(),
                    error=self.error.proto() if self.error else None,
                )
            )
            self.cond.notify_all()


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

    def metadata(self) -> tuple:
        """In plaintext development mode a party names itself in metadata (nothing checks it)."""
        return (("x-smpc-party", self.config.name),) if self.insecure else ()

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()


def _error_of(exc: BaseException, me: str) -> JobError:
    """How a job's exception is reported: the root cause, where a peer's ABORT told it (the
    error class, its message and the party at fault), else the peer this party lost."""
    if isinstance(exc, PartyUnavailable):
        peer = exc.peer if isinstance(exc.peer, str) else ""
        remote_type = getattr(exc, "remote_error_type", "")
        if remote_type:
            culprit = getattr(exc, "culprit", "") or peer
            reason = getattr(exc, "remote_reason", "") or str(exc)
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

    def __init__(self, config: PartyConfig, audit: AuditLog, peers: PeerDirectory):
        self.config = config
        self.me = config.name
        self.rank = config.rank
        self.audit = audit
        self.peers = peers
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="smpc-coord")
        self._janitor = threading.Thread(target=self._sweep, name="smpc-janitor", daemon=True)
        self._janitor.start()

    # ----- bookkeeping -----------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _reserve(self, req: JobRequest) -> Job | None:
        """Register a new job id; None when it was used before (a replay). Raises
        ``ServiceStopping`` once shutdown began: ``shutdown`` sets the flag under the same lock
        before it lists the jobs to end, so every job is either on that list or never made."""
        with self._lock:
            if self._stopping.is_set():
                raise ServiceStopping(f"{self.me} is shutting down")
            if req.job_id in self._jobs or req.job_id in self.audit.job_ids:
                return None
            job = Job(req)
            self._jobs[req.job_id] = job
            self._prune_locked()
            return job

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
            job.emit(self.me, state=state, error=error, stage=stage or STATE_NAMES[state],
                     message=error.message if error else "")
            job.decision = None  # drop the input table
        return True

    # ----- coordinator -----------------------------------------------------------------
    def submit(self, requester: str, req: jobs_pb2.SubmitRequest) -> Job:
        """Phase one on every party, then start everywhere (or refuse)."""
        job_id = req.job_id or uuid.uuid4().hex
        if not JOB_ID.fullmatch(job_id):
            return self._rejected(job_id, req, requester, JobError(
                "InputError", f"{self.me}: job id {job_id[:64]!r} is not 1-128 letters, digits, '.', '_', ':', '-'",
                self.me, "job_id"))
        source = req.source or next(iter(self.config.data))  # default: the first [data.*] source
        recipients = [requester] + [r for r in dict.fromkeys(req.recipients) if r != requester]
        params = dict(req.params)
        if _answers_requester(req.analysis) and not params.get(registry.REQUESTER):
            params[registry.REQUESTER] = requester  # the requesting bank is the authenticated caller
        request = JobRequest(job_id, req.analysis, params, source, requester, recipients, self.me,
                             list(self.config.ranks))
        job = self._reserve(request)
        if job is None:
            self.audit.record("job_replay_refused", job_id=job_id, requester=requester, analysis=req.analysis)
            return self._rejected(job_id, req, requester, JobError(
                "PolicyError", f"{self.me} refuses job {job_id}: the job id was used before (rule job_id.unique)",
                self.me, "job_id.unique"), record=False)
        self._received(job, via="submit")
        decision = self._decide(job)
        if not decision.accepted:
            self._refused_here(job, decision)
            self._notify_peers(job, why="refused", reason=decision.message, party=self.me, rule=decision.rule,
                               error_type=decision.error_type, skip=set())
            return job
        job.emit(self.me, stage="waiting for the other parties to accept", progress=0.0)
        spec = _spec(request)
        futures = self._call_peers(self._peer_names(), "Prepare", peer_pb2.PrepareRequest(spec=spec))
        answers: dict[str, peer_pb2.PrepareResponse | Exception] = {n: f.result() for n, f in futures.items()}
        unreachable = {n: a for n, a in answers.items() if isinstance(a, Exception)}
        refusals = [a for n, a in answers.items() if not isinstance(a, Exception) and not a.accepted]
        if refusals or unreachable:
            if refusals:
                ranks = list(self.config.ranks)
                first = min(refusals, key=lambda a: ranks.index(a.party) if a.party in ranks else len(ranks))
                error = JobError(first.error_type or "PolicyError", first.message, first.party, first.rule)
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
        min_cell = max([decision.min_cell_size] + [a.min_cell_size for a in answers.values()])
        futures = self._call_peers(self._peer_names(), "Start",
                                   peer_pb2.StartRequest(job_id=job_id, min_cell_size=min_cell))
        failed = {}
        if not self._start_local(job, min_cell):  # it ended here first (a shutdown): stop the others
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

    def _rejected(self, job_id: str, req, requester: str, error: JobError, record: bool = True) -> Job:
        """A job refused before it got an id of its own (bad id, replay, no source)."""
        request = JobRequest(job_id, req.analysis, dict(req.params), req.source, requester, [requester], self.me,
                             list(self.config.ranks))
        job = Job(request)
        if record:
            self.audit.record("job_rejected", job_id=job_id[:128], requester=requester, analysis=req.analysis,
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
        try:
            stub = self.peers.stub(name)
            return getattr(stub, method)(request, timeout=self.config.timeouts.connect,
                                         metadata=self.peers.metadata())
        except grpc.RpcError as exc:
            code = exc.code().name if hasattr(exc, "code") else "error"
            details = exc.details() if hasattr(exc, "details") else str(exc)
            return PartyUnavailable(f"{name} is unavailable ({code}: {details})", peer=name)

    def _notify_peers(self, job: Job, why: str, reason: str, party: str, rule: str, error_type: str,
                      only: set | None = None, skip: set | None = None) -> None:
        names = [n for n in self._peer_names() if (only is None or n in only) and (not skip or n not in skip)]
        req = peer_pb2.PeerCancelRequest(job_id=job.id, why=why, reason=reason[:2000], party=party, rule=rule,
                                         error_type=error_type)
        for f in self._call_peers(names, "Cancel", req).values():
            f.result()

    # ----- every party -------------------------------------------------------------------
    def _received(self, job: Job, via: str) -> None:
        r = job.request
        self.audit.record(
            "job_received", job_id=r.job_id, via=via, analysis=r.analysis,
            params=registry.audit_params(r.analysis, r.params), source=r.source,
            requester=r.requester, recipients=list(r.recipients), coordinator=r.coordinator, parties=list(r.parties),
        )
        job.emit(self.me, stage="received")

    def _decide(self, job: Job) -> Decision:
        decision = decide(self.config, job.request)
        self.audit.record("policy_decision", job_id=job.id, analysis=job.request.analysis, **decision.as_audit())
        job.decision = decision
        return decision

    def _refused_here(self, job: Job, decision: Decision) -> None:
        error = JobError(decision.error_type, decision.message, self.me, decision.rule)
        self._finish(job, _refusal_state(decision.error_type), error)

    def prepare(self, caller: str, spec: peer_pb2.JobSpec) -> peer_pb2.PrepareResponse:
        """Phase one on a participant: decide under this party's own policy."""
        request = JobRequest(spec.job_id, spec.analysis, dict(spec.params), spec.source, spec.requester,
                             list(spec.recipients), spec.coordinator, list(spec.parties))

        def no(rule: str, message: str, error_type: str = "PolicyError") -> peer_pb2.PrepareResponse:
            return peer_pb2.PrepareResponse(accepted=False, party=self.me, rule=rule, error_type=error_type,
                                            message=message)

        if caller != spec.coordinator:
            return no("peer.identity", f"{self.me} refuses job {spec.job_id}: {caller} is not its coordinator")
        if not JOB_ID.fullmatch(spec.job_id):
            return no("job_id", f"{self.me} refuses a job with a malformed id", "InputError")
        job = self._reserve(request)
        if job is None:
            self.audit.record("job_replay_refused", job_id=spec.job_id, coordinator=caller, analysis=spec.analysis)
            return no("job_id.unique", f"{self.me} refuses job {spec.job_id}: the job id was used before "
                                       "(rule job_id.unique)")
        self._received(job, via=f"prepare from {caller}")
        decision = self._decide(job)
        if not decision.accepted:
            self._refused_here(job, decision)
            return no(decision.rule, decision.message, decision.error_type)
        job.emit(self.me, stage="accepted; waiting for the start")
        return peer_pb2.PrepareResponse(accepted=True, party=self.me, min_cell_size=decision.min_cell_size)

    def start(self, caller: str, req: peer_pb2.StartRequest) -> peer_pb2.PeerAck:
        job = self.get(req.job_id)
        if job is None or job.request.coordinator != caller:
            return peer_pb2.PeerAck(ok=False, message=f"{self.me}: no job {req.job_id} prepared by {caller}")
        if job.state != jobs_pb2.JOB_STATE_PREPARED or job.decision is None:
            return peer_pb2.PeerAck(ok=False, message=f"{self.me}: job {req.job_id} is {STATE_NAMES[job.state]}")
        if req.min_cell_size < job.decision.min_cell_size:
            reason = (f"{self.me} refuses to start job {job.id}: minimum cell size {req.min_cell_size} is below "
                      f"its policy's {job.decision.min_cell_size} (rule policy.min_cell_size)")
            self._finish(job, jobs_pb2.JOB_STATE_REFUSED,
                         JobError("PolicyError", reason, self.me, "policy.min_cell_size"))
            return peer_pb2.PeerAck(ok=False, message=reason)
        if not self._start_local(job, req.min_cell_size):
            return peer_pb2.PeerAck(ok=False, message=f"{self.me}: job {req.job_id} ended before it could start")
        return peer_pb2.PeerAck(ok=True)

    def peer_cancel(self, caller: str, req: peer_pb2.PeerCancelRequest) -> peer_pb2.PeerAck:
        job = self.get(req.job_id)
        if job is None:
            if req.why == "refused" and caller in self.config.ranks:
                # the coordinator refused before asking us: record it all the same
                self.audit.record("job_refused", job_id=req.job_id[:128], by=req.party, rule=req.rule,
                                  error_type=req.error_type, reason=req.reason, coordinator=caller)
                return peer_pb2.PeerAck(ok=True)
            return peer_pb2.PeerAck(ok=False, message=f"{self.me}: no job {req.job_id}")
        if caller not in job.request.parties:
            return peer_pb2.PeerAck(ok=False, message=f"{self.me}: {caller} is not a party of job {req.job_id}")
        if req.why == "refused":
            self.audit.record("job_refused", job_id=job.id, by=req.party, rule=req.rule, error_type=req.error_type,
                              reason=req.reason)
            self._finish(job, _refusal_state(req.error_type),
                         JobError(req.error_type or "PolicyError", req.reason, req.party, req.rule))
        elif req.why == "failed" and job.state == jobs_pb2.JOB_STATE_PREPARED and job.transport is None:
            self.audit.record("job_not_started", job_id=job.id, by=req.party, reason=req.reason)
            self._finish(job, jobs_pb2.JOB_STATE_FAILED, JobError(req.error_type or "PartyUnavailable", req.reason,
                                                                  req.party))
        else:
            self._cancel_local(job, req.reason or f"cancelled by {caller}")
        return peer_pb2.PeerAck(ok=True)

    def client_cancel(self, caller: str, job: Job) -> None:
        """Cancel on every party (the requester asked this party)."""
        reason = f"cancelled by {caller} (via {self.me})"
        self._cancel_local(job, reason)
        req = peer_pb2.PeerCancelRequest(job_id=job.id, why="cancelled", reason=reason, party=self.me)
        for f in [self._pool.submit(self._call_peer, n, "Cancel", req) for n in self._peer_names()]:
            f.result()

    def _cancel_local(self, job: Job, reason: str) -> None:
        with job.cond:
            if job.terminal:
                return
            job.cancel_reason = reason
            running = job.transport is not None
            first, job.cancel_audited = not job.cancel_audited, True
        if first:
            self.audit.record("job_cancelled", job_id=job.id, reason=reason)
        if running:
            self._abort_local(job, reason, CANCELLED)
        else:
            self._finish(job, jobs_pb2.JOB_STATE_CANCELLED, JobError(CANCELLED, reason, self.me))

    def _abort_local(self, job: Job, reason: str, error_type: str) -> None:
        transport = job.transport
        if transport is not None:
            transport.abort(reason, error_type=error_type)

    # ----- execution --------------------------------------------------------------------
    def _start_local(self, job: Job, min_cell: int) -> bool:
        """Start the job's thread here; False when the job ended first (cancelled, shut down)."""
        decision = job.decision
        if decision is None or job.terminal:
            return False
        analysis = registry.get(job.request.analysis)
        params = dict(decision.params)
        if analysis.has_min_cell_size:
            params[registry.MIN_CELL_SIZE] = max(min_cell, decision.min_cell_size)
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
                              rows=decision.rows)
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
            result = analysis.fn(ctx, decision.table, list(range(len(self.config.ranks))), **params)
            if result is None:  # nothing was revealed to this party (blacklist_hits at another bank)
                result = {}
            if not isinstance(result, dict):
                raise SmpcError(f"{self.me}: analysis {analysis.name} returned {type(result).__name__}, not a dict")
            job.result = _jsonable(result)
            json.dumps(job.result, allow_nan=True)
            state = jobs_pb2.JOB_STATE_SUCCEEDED
        except BaseException as exc:  # noqa: BLE001 - every failure must abort the peers and be reported
            error = _error_of(exc, self.me)
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
                job.bytes_sent, job.rounds = int(stats["bytes_sent"]), int(stats["rounds"])
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

    # ----- results ----------------------------------------------------------------------
    def may_see_result(self, identity: str, job: Job) -> bool:
        return identity in job.request.recipients

    def release(self, identity: str, job: Job) -> str:
        """The result as JSON for a permitted recipient (audited once per recipient)."""
        with job.cond:
            first = identity not in job.released_to
            job.released_to.add(identity)
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
                while seq >= len(job.events) and not job.terminal and alive() and not self._stopping.is_set():
                    job.cond.wait(timeout=1.0)
                batch = job.events[seq:]
                ended = job.terminal
            yield from batch
            seq += len(batch)
            if (ended and seq >= len(job.events)) or not alive() or self._stopping.is_set():
                return

    # ----- shutdown ---------------------------------------------------------------------
    def shutdown(self, timeout: float = 10.0) -> None:
        """Abort every running job (peers see this party leave) and wait for the job threads."""
        with self._lock:  # see _reserve: no job is made after this
            self._stopping.set()
            jobs = [j for j in self._jobs.values() if not j.terminal]
        for job in jobs:
            job.cancel_reason = job.cancel_reason or f"{self.me} is shutting down"
            # under the job's lock, _start_local either has given the job its transport (abort
            # it) or will find the job over and not start it; the job thread's own cleanup may
            # clear job.transport at any time, so it is read once
            with job.cond:
                transport = job.transport
                if transport is None:
                    self._finish(job, jobs_pb2.JOB_STATE_CANCELLED,
                                 JobError(CANCELLED, f"{self.me} is shutting down", self.me))
            if transport is not None:
                transport.abort(f"{self.me} is shutting down", error_type="PartyUnavailable")
        deadline = time.monotonic() + timeout
        for job in jobs:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._janitor.join(1.0)


def _spec(r: JobRequest) -> peer_pb2.JobSpec:
    return peer_pb2.JobSpec(
        job_id=r.job_id, analysis=r.analysis, params=dict(r.params), source=r.source, requester=r.requester,
        recipients=list(r.recipients), coordinator=r.coordinator, parties=list(r.parties),
    )


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
    if isinstance(value, float) and not math.isfinite(value):
        return value
    return value


def addressed_to(result, identity: str):
    """What ``identity`` may receive of a result. Analyses with per-bank parts (``by_bank``,
    e.g. multi_lending: each bank's flags are for that bank only) are released with only the
    recipient's own part, so a party never hands another bank's part on."""
    if isinstance(result, dict) and isinstance(result.get("by_bank"), dict):
        return {**result, "by_bank": {k: v for k, v in result["by_bank"].items() if k == identity}}
    return result
