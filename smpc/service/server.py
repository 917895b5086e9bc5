"""The party service process: one gRPC server with the peer service, the job service,
standard health checking and reflection, over mutual TLS.

``PartyServer(config).start()`` binds and serves; ``stop()`` aborts running jobs (peers see
this party leave), marks health NOT_SERVING and shuts down. ``serve(path)`` is
``smpc party serve``: it runs until SIGTERM or SIGINT.

Who may call what (``smpc.service.identity`` reads the caller's certificate): the peer service
(``smpc.v1.PartyPeer``) only the other configured compute parties, by a party certificate
(``smpc://party/NAME``) -- and, where ``[peers.NAME] fingerprint`` pins it, only that one
certificate; the job service any client or party certificate of the consortium CA -- its
name is what the parties' policies check as requester and recipient. A certificate from
another CA is refused in the TLS handshake, one on the CA's revocation list (``[tls] crl``)
on every call. The plaintext development mode listens on loopback addresses only.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from concurrent import futures
from contextlib import ExitStack
from importlib.metadata import PackageNotFoundError, version

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from smpc.analyses import registry
from smpc.errors import SmpcError
from smpc.service.audit import AuditError, AuditLog
from smpc.service.auth import CallerAuth as _Auth
from smpc.service.auth import read_hello
from smpc.service.config import PartyConfig, load_config
from smpc.service.identity import (
    CertIdentity,
    IdentityError,
    RevocationList,
    load_certificate,
    verify_party_signature,
)
from smpc.service.jobs import Job, JobManager, PeerDirectory, ServiceStopping
from smpc.service.pool import WorkerPool
from smpc.service.quotas import QuotaExceeded, Quotas
from smpc.service.store import JobStore
from smpc.transport.grpc import (
    MalformedMessage,
    add_peer_servicer,
    is_loopback,
    lenient,
    server_credentials,
    server_options,
)
from smpc.v1 import jobs_pb2, jobs_pb2_grpc, peer_pb2, peer_pb2_grpc

SHUTDOWN_LIMIT_S = 30.0
# how long a stopping server lets its calls finish before it cancels them
STOP_GRACE_S = 5.0
SERVICE_NAMES = (
    jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    peer_pb2.DESCRIPTOR.services_by_name["PartyPeer"].full_name,
)
PEER_METHODS = f"/{SERVICE_NAMES[1]}/"
HEALTH_METHODS = f"/{health.SERVICE_NAME}/"
# what one job can hold of a party's peer threads at once: the Exchange streams of the two
# other parties (only the lower ranks dial, so at most two) and one Prepare, Start or Cancel
# from each of them
PEER_THREADS_PER_JOB = 4
# peer threads beyond that: streams of jobs that just ended still closing, health checks
PEER_SPARE_THREADS = 8
# calls over the job-service limit wait here for their RESOURCE_EXHAUSTED answer (a refusal
# takes microseconds, so two threads keep up with any client)
REFUSAL_THREADS = 2
# gRPC's own cap on calls in flight, far above what the pools can hold: it only bounds the
# memory a flood of calls waiting for their refusal can pin
CALL_BACKLOG = 1024
INSECURE_WARNING = """\
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! WARNING: --insecure-dev-plaintext: NO TLS. Shares, results and identities travel in    !!
!! the clear and any process that can reach this port can claim to be any party.         !!
!! For development on one machine only. Never use it with real data.                      !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""


def _version() -> str:
    try:
        return version("smpc")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def check_plaintext_loopback(config: PartyConfig) -> None:
    """Plaintext mode carries shares and identities in the clear: it may only listen on, and
    dial, this machine's loopback addresses."""
    pool = [("compute.listen", config.compute.listen)] if config.compute.workers > 1 else []
    for key, address in [("party.listen", config.listen), *pool] + [
            (f"peers.{p.name}.address", p.address) for p in config.peers.values()]:
        if not is_loopback(address):
            raise SmpcError(f"{config.name}: --insecure-dev-plaintext works on loopback addresses only (127.0.0.1, "
                            f"::1, localhost); key {key} is {address!r}. Use mutual TLS for anything else")


class PeerServicer(peer_pb2_grpc.PartyPeerServicer):
    def __init__(self, manager: JobManager, auth: _Auth):
        self.manager = manager
        self.auth = auth

    def Prepare(self, request, context):  # noqa: N802 - gRPC method name
        caller = self.auth.peer(context)
        try:
            return self.manager.prepare(caller, request.spec, request.workers)
        except ServiceStopping as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

    def Start(self, request, context):  # noqa: N802
        return self.manager.start(self.auth.peer(context), request)

    def Cancel(self, request, context):  # noqa: N802
        return self.manager.peer_cancel(self.auth.peer(context), request)

    def RecordHead(self, request, context):  # noqa: N802
        return self.manager.record_peer_head(self.auth.peer(context), request)

    def Exchange(self, request_iterator, context):  # noqa: N802
        caller = self.auth.peer(context)
        me = self.manager.me
        hello = read_hello(request_iterator, context, me, caller)
        job = self.manager.get(hello.job_id)
        if job is None or job.terminal:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{me}: no running job {hello.job_id[:128]!r}")
        ranks = list(self.manager.config.ranks)
        peer_rank = ranks.index(caller)
        if peer_rank >= self.manager.rank:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"{me}: {caller} has the higher rank, so {me} dials it, not the other way")
        if not job.transport_ready.wait(self.manager.config.timeouts.connect):
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{me}: job {job.id} has not started here")
        transport = job.transport
        if transport is None or job.terminal:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{me}: job {job.id} is over")
        return transport.accept(peer_rank, request_iterator, context)


def _refused(job: Job) -> bool:
    """Whether the requester was answered with a refusal that counts towards
    ``limits.refusals_per_hour``: a party's policy or input check refused the job (a refusal
    names its rule; a failure does not). Refusals for a limit or the request's size do not
    count: they say nothing about anyone's data, and an identity that keeps trying would
    otherwise never see its window pass."""
    rule = job.error.rule if job.terminal and job.error is not None else ""
    return bool(rule) and not rule.startswith(("limits.", "request.size"))


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, manager: JobManager, auth: _Auth, quotas: Quotas):
        self.manager = manager
        self.auth = auth
        self.quotas = quotas

    def _job(self, job_id: str, context, who: CertIdentity):
        """The job a caller may see: a recipient (the requester included) or a compute party.
        A job that does not exist and one the caller may not see get the same answer, so ids
        cannot be probed. An id without '/' is one of the caller's own (``CALLER/ID``)."""
        full = job_id if "/" in job_id else f"{who.name}/{job_id}"
        job = self.manager.get(full)
        if job is None or (who.name not in job.request.recipients and not self.auth.is_peer(who)):
            context.abort(grpc.StatusCode.NOT_FOUND, self.manager.missing(full, who.name, self.auth.is_peer(who)))
        return job

    def _over_quota(self, identity: str, call: str, exc: QuotaExceeded, context) -> None:
        """Answer RESOURCE_EXHAUSTED naming the limit; audited once per identity and limit
        until the identity is admitted again, so a flood of refused calls writes one record."""
        if exc.first:
            self.manager.audit.record("quota_refused", requester=identity, call=call, limit=exc.key, reason=str(exc))
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))

    def Submit(self, request, context):  # noqa: N802
        identity = self.auth.identity(context)
        try:
            self.quotas.admit_submit(identity)
            job = self.manager.submit(identity, request)
        except QuotaExceeded as exc:
            self._over_quota(identity, "Submit", exc, context)
        except ServiceStopping as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        if _refused(job):
            self.quotas.record_refusal(identity)
        return self.manager.status(job)

    def Get(self, request, context):  # noqa: N802
        who = self.auth.caller(context)
        return self.manager.status(self._job(request.job_id, context, who), who.name)

    def Cancel(self, request, context):  # noqa: N802
        who = self.auth.caller(context)
        job = self._job(request.job_id, context, who)
        if who.name != job.request.requester:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"{self.manager.me}: only the requester {job.request.requester!r} may cancel job {job.id}")
        self.manager.client_cancel(who.name, job)
        return self.manager.status(job)

    def Watch(self, request, context):  # noqa: N802
        who = self.auth.caller(context)
        job = self._job(request.job_id, context, who)
        with ExitStack() as held:
            try:
                held.enter_context(self.quotas.watch_stream(who.name))
            except QuotaExceeded as exc:
                self._over_quota(who.name, "Watch", exc, context)
            yield from self.manager.events(job, context.is_active)

    def ListAnalyses(self, request, context):  # noqa: N802
        self.auth.identity(context)
        allowed = set(self.manager.config.policy.allowed_analyses)
        out = jobs_pb2.ListAnalysesResponse()
        for a in registry.analyses():
            info = out.analyses.add(name=a.name, summary=a.summary, leakage=a.leakage, cost=a.cost,
                                    allowed=a.name in allowed)
            # owner-set parameters (bounds, decimals, group keys, the join salt) come from each
            # bank's data configuration: a requester may not send them, so they are not offered
            for p in (p for p in a.params if p.owner is None):
                info.params.add(name=p.name, type=p.type, required=p.required,
                                default="" if p.default is None else str(p.default), description=p.description)
        return out

    def ServerInfo(self, request, context):  # noqa: N802
        self.auth.identity(context)
        return jobs_pb2.ServerInfoResponse(
            party=self.manager.me, version=_version(), active_jobs=self.manager.active_jobs(),
            job_threads=self.manager.job_threads(),
        )


_REFUSING = threading.local()


class _ClientPool(futures.ThreadPoolExecutor):
    """The threads of every call but the peer service's and health checks': at most
    ``limits.job_service_calls`` run at once, each on a thread of its own.

    gRPC hands this pool one work item per call (the whole call: a ``Watch`` stream holds its
    item until it ends), on its polling thread, before anything runs. A call that finds every
    slot taken is not queued behind the streams: its item runs on a small pool of its own,
    where the handler (see ``_on_client_pool``) answers RESOURCE_EXHAUSTED at once. A slot is
    given back when the item ends, however the call ended."""

    def __init__(self, calls: int):
        super().__init__(max_workers=calls, thread_name_prefix="smpc-client")
        self.calls = calls
        self._slots = threading.BoundedSemaphore(calls)
        self._refusals = futures.ThreadPoolExecutor(max_workers=REFUSAL_THREADS, thread_name_prefix="smpc-refuse")

    def submit(self, fn, /, *args, **kwargs):
        if not self._slots.acquire(blocking=False):
            return self._refusals.submit(_run_refusing, fn, args, kwargs)
        try:
            return super().submit(self._run_admitted, fn, args, kwargs)
        except BaseException:
            self._slots.release()
            raise

    def _run_admitted(self, fn, args, kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            self._slots.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._refusals.shutdown(wait=wait, cancel_futures=cancel_futures)
        super().shutdown(wait=wait, cancel_futures=cancel_futures)


def _run_refusing(fn, args, kwargs):
    _REFUSING.active = True
    try:
        return fn(*args, **kwargs)
    finally:
        _REFUSING.active = False


class _ClientTraffic(grpc.ServerInterceptor):
    """Puts every call that is not the peer service's or a health check on the ``_ClientPool``
    (gRPC's per-method ``experimental_thread_pool``), so clients can never take the threads
    that serve the peers' Exchange streams and Prepare/Start/Cancel calls. Health checks stay
    on the server's pool: they never hold a thread, and monitoring must see a party whose
    client capacity is full as serving."""

    def __init__(self, pool: _ClientPool, party: str):
        self.pool = pool
        self.party = party
        self.refusal = (f"{party}: {pool.calls} job-service calls are in flight here, the most allowed "
                        f"(limits.job_service_calls = {pool.calls}); try again later")

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or method.startswith((PEER_METHODS, HEALTH_METHODS)):
            return handler
        handler = _refusing_malformed_requests(handler, self.party)
        kinds = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
        return handler._replace(**{k: self._on_client_pool(getattr(handler, k)) for k in kinds
                                   if getattr(handler, k) is not None})

    def _on_client_pool(self, behavior):
        refusal = self.refusal

        def run(request, context, *rest):
            if getattr(_REFUSING, "active", False):
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
            return behavior(request, context, *rest)

        run.experimental_thread_pool = self.pool
        run.experimental_non_blocking = getattr(behavior, "experimental_non_blocking", False)
        return run


def _refusing_malformed_requests(handler: grpc.RpcMethodHandler, party: str) -> grpc.RpcMethodHandler:
    """A stream-request method (reflection's) that parses its messages leniently and ends the
    call with INVALID_ARGUMENT, once, at the first that does not parse (``lenient`` says why
    gRPC's own answer to such a message leaves the call open for ever)."""
    if not handler.request_streaming:
        return handler
    kind = "stream_stream" if handler.stream_stream is not None else "stream_unary"
    behavior = getattr(handler, kind)

    def parsed(requests, context):
        for request in requests:
            if isinstance(request, MalformedMessage):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"{party}: a request message that does not parse ({request})")
            yield request

    def run(requests, context, *rest):
        return behavior(parsed(requests, context), context, *rest)

    run.experimental_non_blocking = getattr(behavior, "experimental_non_blocking", False)
    return handler._replace(request_deserializer=lenient(handler.request_deserializer), **{kind: run})


def own_seal_check(config: PartyConfig):
    """The check a start makes of the seal its last clean stop left: this party's certificate,
    issued by the consortium CA, valid and not revoked when it sealed, signed it."""
    ca = load_certificate(config.tls_ca.read_bytes())
    crl = RevocationList(config.tls_crl, ca) if config.tls_crl else None

    def check(seal) -> None:
        try:
            verify_party_signature(ca, crl, seal.certificate_pem, seal.signature, seal.payload(), config.name,
                                   seal.timestamp())
        except IdentityError as exc:
            raise AuditError(f"{config.name}: the seal beside the audit log {config.audit_path} is not this party's: "
                             f"{exc}. Keep the log and its seal as evidence and start a new log") from None

    return check


def _pool_backend(config: PartyConfig):
    """The worker pool's engine: None for worker processes; Ray (an optional dependency)
    only where the configuration asks for it."""
    if config.compute.engine != "ray":
        return None
    from smpc.service.raypool import RayBackend

    return lambda: RayBackend(config.compute.address)


class PartyServer:
    """One party's gRPC server and job manager.

    Two thread pools keep client traffic from starving the peers: the server's own pool serves
    the peer service and health checks, sized for ``limits.max_concurrent_jobs`` jobs (which
    the job manager enforces for jobs coordinated here and elsewhere alike); the job service
    and reflection run on a pool of ``limits.job_service_calls`` threads that refuses calls
    beyond it rather than queueing them.
    """

    def __init__(self, config: PartyConfig, insecure: bool = False):
        if insecure:
            check_plaintext_loopback(config)
        self.config = config
        self.insecure = insecure
        self.audit = AuditLog(config.audit_path, config.name, check_seal=None if insecure else own_seal_check(config))
        self.store = JobStore(config.store_path, config.store_key, config.name)
        self.peers = PeerDirectory(config, insecure=insecure)
        self.pool = WorkerPool(config, insecure, on_started=self._workers_started, backend=_pool_backend(config))
        self.manager = JobManager(config, self.audit, self.peers, self.store, self.pool)
        self.quotas = Quotas(config.name, config.limits)
        auth = _Auth(config, insecure, self.manager.crl)
        limits = config.limits
        peer_threads = limits.max_concurrent_jobs * PEER_THREADS_PER_JOB + PEER_SPARE_THREADS
        self.client_pool = _ClientPool(limits.job_service_calls)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=peer_threads, thread_name_prefix="smpc-rpc"),
            interceptors=[_ClientTraffic(self.client_pool, config.name)],
            options=server_options(),
            maximum_concurrent_rpcs=peer_threads + limits.job_service_calls + CALL_BACKLOG,
        )
        add_peer_servicer(PeerServicer(self.manager, auth), self.server)
        jobs_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(self.manager, auth, self.quotas), self.server)
        self.health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        self.port: int | None = None
        self._stopped = False

    def _workers_started(self, workers: list) -> None:
        """Where the pool's workers listen, for the operator (their ports change with each start)."""
        self.audit.record("workers_started", engine=self.config.compute.engine, workers=workers)

    def start(self) -> int:
        self.pool.start()  # before the party serves: a bucketed job may come at once
        try:
            if self.insecure:
                port = self.server.add_insecure_port(self.config.listen)
            else:
                creds = server_credentials(
                    self.config.tls_ca.read_bytes(), self.config.tls_cert.read_bytes(), self.config.tls_key.read_bytes()
                )
                port = self.server.add_secure_port(self.config.listen, creds)
        except RuntimeError as exc:  # grpcio >= 1.60 raises "Failed to bind" where older ones returned 0
            port, why = 0, f": {exc}"
        else:
            why = ""
        if not port:
            raise SmpcError(f"{self.config.name}: cannot listen on {self.config.listen} (key party.listen; "
                            f"is the port in use?){why}")
        self.port = port
        self.server.start()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.audit.record(
            "service_started", listen=self.config.listen, port=port, tls=not self.insecure, version=_version(),
            parties=list(self.config.ranks), config=str(self.config.path), store=str(self.config.store_path),
            result_retention_days=self.config.policy.result_retention_days,
            **({"sealed_at_stop": {"records": seal.records, "head": seal.head, "time": seal.time}}
               if (seal := self.audit.resumed_from) is not None else {}),
        )
        return port

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.health.enter_graceful_shutdown()
        self.manager.shutdown(timeout=grace)
        self.pool.close()
        if not self.server.stop(grace).wait(timeout=grace + 5):
            print(f"smpc party {self.config.name}: gRPC server shutdown did not finish; leaving anyway",
                  file=sys.stderr, flush=True)
        self.audit.record("service_stopped")
        self.manager.push_final_head()
        self.client_pool.shutdown(wait=False, cancel_futures=True)
        self.peers.close()
        self.manager.seal_audit()
        self.store.close()
        self.audit.close()


def serve(config_path: str, insecure: bool = False) -> int:
    """``smpc party serve``: run until SIGTERM/SIGINT. Returns the exit code."""
    if insecure:
        print(INSECURE_WARNING, file=sys.stderr, flush=True)
    config = load_config(config_path)
    server = PartyServer(config, insecure=insecure)
    # The handler only appends to a list: it runs in the main thread between any two bytecodes,
    # so one that takes a lock (Event.set) deadlocks when a second signal lands while the first
    # handler, or the main thread's own wait, holds that lock - systemd's SIGTERM followed by an
    # operator's Ctrl-C did exactly that.
    signals: list[int] = []

    def on_signal(signum, frame):
        signals.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: every thread's stack
    port = server.start()
    host = config.listen.rpartition(":")[0]
    mode = "PLAINTEXT (insecure, development only)" if insecure else "mutual TLS"
    print(f"smpc party {config.name} (rank {config.rank} of {', '.join(config.ranks)}) serving on {host}:{port} "
          f"with {mode}; audit log {config.audit_path}; job store {config.store_path}", flush=True)
    try:
        while not signals:
            time.sleep(0.1)  # the loop sees a signal within 0.1 s (PEP 475 resumes the sleep)
    finally:
        print(f"smpc party {config.name}: shutting down", flush=True)
        # a shutdown that hangs dumps every thread's stack and exits non-zero instead
        faulthandler.dump_traceback_later(SHUTDOWN_LIMIT_S, exit=True)
        t0 = time.monotonic()
        server.stop()
        faulthandler.cancel_dump_traceback_later()
        print(f"smpc party {config.name}: stopped in {time.monotonic() - t0:.1f} s", flush=True)
    return 0


def serve_and_exit(config_path: str, insecure: bool = False) -> None:
    """``serve``, then leave the process at once: every job, stream and file is closed by
    then, and the interpreter's own teardown (torch's) would add seconds to each restart."""
    code = serve(config_path, insecure)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
