"""A party's worker pool: the bucket sessions of a bucketed join (``smpc.buckets``) in worker
processes, each with its own mutually authenticated peer streams, for the party service.

``[compute] workers = N`` (N >= 2) gives the party N workers. A worker is a process (or, with
``engine = "ray"``, a Ray actor: ``smpc.service.raypool``) that runs a gRPC server with the
party's own certificate and key, read from the party's configured files (never sent), and
serves only the Exchange stream of ``smpc.v1.PartyPeer``. Its callers pass the party
server's own checks (``smpc.service.auth``): a configured peer's party certificate, its
pinned fingerprint, the revocation list, a HELLO naming the certificate's party and a lower
rank; when it dials, it pins the certificate identity configured for the peer it dials.

How a job uses the pool (``smpc.service.jobs``):

1. Prepare: the coordinator reserves its pool for the job and sends its workers' endpoints
   with the Prepare; every participant reserves its own and answers with its endpoints. A
   pool serves one job at a time: a party whose pool is busy announces none, and the job
   then runs as one session everywhere.
2. Start: the coordinator sends every party's endpoints and the number of buckets K; each
   party checks that its own entry is what it announced. The job runs on the first
   S = min(workers over the parties) workers of every party (S < 2: one session).
3. Run: every party checks its policy and inputs (at Prepare, as for every job), splits its
   rows into K padded buckets, and worker w of every party runs buckets w, w + S, ... in that
   order, over streams between the workers w only, each bucket in a fresh ``Context`` (fresh
   pairwise keys, so fresh randomness) with its own tag prefix. The bucket sessions open
   nothing but each bank's own flags; the flagged count stays shared, and the party
   processes sum the buckets' shares and open the total in one merge session over their
   own job streams (``BucketedAnalysis.merge``).
4. Failure: a worker that fails or ends (killed, crashed) fails the job. Its peers' workers
   see the stream break at once, their parties abort their job streams, and every party
   ends the job with ``PartyUnavailable`` naming the party whose worker was lost; a hung
   worker is found by the step timeout. No party reveals a merged result, since the merge
   needs every bucket. Every worker of a failed job is stopped and started afresh (new
   ports, announced at the next Prepare), so the next job runs on clean workers.

Progress: each bucket's start and end is a job event ("bucket 3 of 8 done on worker 1").
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from types import SimpleNamespace

import grpc

from smpc.allocator import release_freed
from smpc.context import Context
from smpc.errors import PartyUnavailable, SmpcError
from smpc.service.auth import CallerAuth, read_hello
from smpc.service.identity import RevocationList, load_certificate
from smpc.transport.grpc import (
    GrpcTransport,
    add_peer_servicer,
    channel_options,
    secure_channel,
    server_credentials,
    server_options,
)
from smpc.transport.pipes import PrefixedTransport
from smpc.v1 import peer_pb2_grpc

READY_S = 120.0
"""How long a new worker may take to start and listen (a spawned interpreter imports torch)."""
ABORT_GRACE_S = 0.5
"""How long a party whose worker lost a peer's worker waits for that peer's word on the job's
own streams (the cause, and who is at fault) before it blames the peer."""
POLL_S = 0.2
"""How often the party checks, while its workers run, whether the job was aborted elsewhere."""
STREAM_SEP = "~w"
"""A worker stream's job id is JOB_ID~wW: its frames can never be taken for the job's own."""


# ----- inside a worker ----------------------------------------------------------------------
def worker_options(config, insecure: bool, index: int) -> dict:
    """What worker ``index`` of a party needs, from the party's configuration only: names,
    ranks, peers (identities and pins), the paths of its TLS files, where to listen."""
    compute = config.compute
    host, _, port = compute.listen.rpartition(":")
    port = int(port)
    return {
        "name": config.name, "ranks": list(config.ranks), "peers": dict(config.peers), "index": index,
        "ca": str(config.tls_ca), "cert": str(config.tls_cert), "key": str(config.tls_key),
        "crl": str(config.tls_crl) if config.tls_crl else None, "insecure": insecure,
        "host": host, "port": port + index if port else 0, "advertise": compute.advertise,
        "connect": config.timeouts.connect,
    }


class WorkerCore:
    """One worker of a party's pool (see the module docstring): its gRPC server, bound at
    construction, and the bucket sessions it runs on request. The same object serves a
    worker process and a Ray actor.

    >>> WorkerCore.stream_id("bank_a/job-1", 1)
    'bank_a/job-1~w1'
    """

    def __init__(self, opts: dict):
        self.opts = opts
        self.me = opts["name"]
        self.ranks = list(opts["ranks"])
        self.rank = self.ranks.index(self.me)
        self.index = int(opts["index"])
        self.label = f"{self.me} worker {self.index}"
        self.insecure = bool(opts["insecure"])
        self.connect = float(opts["connect"])
        crl = None
        if not self.insecure:
            self._ca, self._cert, self._key = (Path(opts[k]).read_bytes() for k in ("ca", "cert", "key"))
            if opts.get("crl"):
                crl = RevocationList(Path(opts["crl"]), load_certificate(self._ca))
        self.auth = CallerAuth(SimpleNamespace(name=self.me, peers=opts["peers"]), self.insecure, crl)
        self._streams: dict[str, GrpcTransport] = {}
        self._channels: dict[str, list[grpc.Channel]] = {}
        self._cond = threading.Condition()
        self.server = grpc.server(ThreadPoolExecutor(max_workers=8, thread_name_prefix="smpc-worker-rpc"),
                                  options=server_options())
        add_peer_servicer(_WorkerPeer(self), self.server)
        address = f"{opts['host']}:{opts['port']}"
        try:
            if self.insecure:
                port = self.server.add_insecure_port(address)
            else:
                port = self.server.add_secure_port(address, server_credentials(self._ca, self._cert, self._key))
        except RuntimeError as exc:
            port, why = 0, f": {exc}"
        else:
            why = ""
        if not port:
            raise SmpcError(f"{self.label}: cannot listen on {address} (key compute.listen; is the port in use?){why}")
        self.port = port
        self.server.start()

    @staticmethod
    def stream_id(job_id: str, worker: int) -> str:
        return f"{job_id}{STREAM_SEP}{worker}"

    def endpoint(self, host: str) -> str:
        return f"{host}:{self.port}"

    def _channel(self, address: str, peer: str) -> grpc.Channel:
        if self.insecure:
            return grpc.insecure_channel(address, options=channel_options())
        identity = self.opts["peers"][peer].identity
        return secure_channel(address, self._ca, self._cert, self._key, identity=identity)

    def open(self, stream: str, endpoints: Mapping[int, str]) -> None:
        """Start the job's streams: register this worker's end (a peer's worker may dial at
        once) and dial the worker of the same index at every party of higher rank."""
        transport = GrpcTransport(self.rank, len(self.ranks), stream, self.ranks)
        with self._cond:
            self._streams[stream] = transport
            self._cond.notify_all()
        metadata = (("x-smpc-party", self.me),) if self.insecure else ()
        channels = self._channels.setdefault(stream, [])
        for peer in range(self.rank + 1, len(self.ranks)):
            channel = self._channel(endpoints[peer], self.ranks[peer])
            channels.append(channel)
            transport.dial(peer, channel, metadata=metadata)

    def transport(self, stream: str, timeout: float) -> GrpcTransport | None:
        """The stream's transport once ``open`` registered it (None after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while stream not in self._streams:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self._streams[stream]

    def run(self, stream: str, bucket: int, fn: Callable, kwargs: dict, settings: dict) -> tuple:
        """One bucket session over the stream's transport: (result, comm stats). (A Ray actor
        may take a run before the ``open`` sent ahead of it: it waits for that.)"""
        transport = self.transport(stream, self.connect)
        if transport is None:
            raise SmpcError(f"{self.label}: bucket {bucket} came without its streams ({stream})")
        ctx = Context(self.rank, len(self.ranks), PrefixedTransport(transport, f"b{bucket}/"), ring=settings["ring"],
                      timeout=settings["timeout"], party_names=self.ranks, result_ranks=settings["result_ranks"])
        try:
            return fn(ctx, **kwargs), ctx.comm_stats()
        finally:
            release_freed()

    def abort(self, stream: str, reason: str, error_type: str = "", culprit: str = "") -> None:
        transport = self._streams.get(stream)
        if transport is not None:
            transport.abort(reason, error_type=error_type, culprit=culprit)

    def close(self, stream: str, timeout: float = 5.0) -> None:
        with self._cond:
            transport = self._streams.pop(stream, None)
        if transport is not None:
            transport.close(timeout=timeout)
        for channel in self._channels.pop(stream, []):
            channel.close()

    def stop(self) -> None:
        for stream in list(self._streams):
            self.abort(stream, f"{self.label} is stopping", "PartyUnavailable")
            self.close(stream, timeout=1.0)
        self.server.stop(0)


class _WorkerPeer(peer_pb2_grpc.PartyPeerServicer):
    """A worker serves the Exchange streams of its bucket sessions, and nothing else."""

    def __init__(self, core: WorkerCore):
        self.core = core

    def Exchange(self, request_iterator, context):  # noqa: N802 - gRPC method name
        core = self.core
        caller = core.auth.peer(context)
        hello = read_hello(request_iterator, context, core.label, caller)
        peer_rank = core.ranks.index(caller)
        if peer_rank >= core.rank:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"{core.label}: {caller} has the higher rank, so {core.me} dials it, not the other way")
        if not hello.job_id.endswith(f"{STREAM_SEP}{core.index}"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{core.label}: the stream is not for worker {core.index}")
        transport = core.transport(hello.job_id, core.connect)
        if transport is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{core.label}: no bucket sessions {hello.job_id[:128]!r} here")
        return transport.accept(peer_rank, request_iterator, context)


def _portable(exc: BaseException) -> SmpcError:
    """An exception as it can travel back to the party process (an SmpcError, with the
    attributes ``jobs`` reads)."""
    if isinstance(exc, SmpcError):
        return exc
    return SmpcError(f"{type(exc).__name__}: {exc}")


def _process_main(conn, opts: dict) -> None:
    """A worker process: bind, say where, then run what the party process asks, in order,
    until it says stop or goes away."""
    import torch

    torch.set_num_threads(1)
    try:
        core = WorkerCore(opts)
    except BaseException as exc:  # noqa: BLE001 - the party must hear why its worker did not start
        conn.send(("failed", _portable(exc)))
        return
    conn.send(("ready", core.port))
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return  # the party process is gone
            kind = msg[0]
            if kind == "stop":
                return
            if kind == "open":
                core.open(msg[1], msg[2])
            elif kind == "close":
                core.close(msg[1])
            elif kind == "run":
                _, stream, b, fn, kwargs, settings = msg
                conn.send(("started", b))
                try:
                    result, stats = core.run(stream, b, fn, kwargs, settings)
                except BaseException as exc:  # noqa: BLE001 - every failure must reach the peers and the party
                    culprit = getattr(exc, "culprit", "") or (exc.peer if isinstance(exc, PartyUnavailable)
                                                             and isinstance(exc.peer, str) else core.me)
                    core.abort(stream, f"{type(exc).__name__}: {exc}", type(exc).__name__, culprit)
                    conn.send(("error", b, _portable(exc)))
                    continue
                conn.send(("done", b, result, stats))
    finally:
        core.stop()


# ----- the party's side ---------------------------------------------------------------------
@dataclass
class BucketPlan:
    """How one job runs on the pool: ``buckets`` sessions on the first ``slots`` workers of
    every party, whose endpoints are ``endpoints[rank][w]``."""

    buckets: int
    slots: int
    endpoints: dict[int, list[str]]


class _ProcessWorker:
    """The party's handle on one worker process."""

    def __init__(self, mp, opts: dict):
        self.opts = opts
        self.conn, theirs = mp.Pipe(duplex=True)
        self.proc = mp.Process(target=_process_main, args=(theirs, opts), daemon=True,
                               name=f"smpc-worker-{opts['name']}-{opts['index']}")
        self.proc.start()
        theirs.close()
        self.endpoint = ""
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float) -> None:
        if not self.conn.poll(timeout):
            raise SmpcError(f"{self.opts['name']}: worker {self.opts['index']} did not start within {timeout:g} s")
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            raise SmpcError(f"{self.opts['name']}: worker {self.opts['index']} ended as it started") from None
        if msg[0] != "ready":
            raise msg[1]
        host = self.opts["advertise"] or self.opts["host"]
        self.endpoint = f"{host}:{msg[1]}"

    def alive(self) -> bool:
        return self.proc.is_alive()

    def send(self, msg) -> None:
        self.conn.send(msg)

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class ProcessBackend:
    """Worker processes forked from a server process that imported this module (grpc, torch
    and the analyses) once: a new worker starts in well under a second."""

    def __init__(self, preload: Sequence[str] = ("smpc.service.pool", "smpc.analyses")):
        self._mp = multiprocessing.get_context("forkserver")
        self._mp.set_forkserver_preload(list(preload))

    def start(self, opts: dict) -> _ProcessWorker:
        return _ProcessWorker(self._mp, opts)

    def events(self, workers: Sequence, timeout: float) -> list[tuple[int, tuple]]:
        """(worker index, message) for what the workers reported within ``timeout``; a
        worker that ended reports ("ended",)."""
        by_conn = {w.conn: i for i, w in enumerate(workers)}
        by_sentinel = {w.proc.sentinel: i for i, w in enumerate(workers)}
        out = []
        for item in wait(list(by_conn) + list(by_sentinel), timeout=timeout):
            if item in by_sentinel:
                i = by_sentinel[item]
                while workers[i].conn.poll():  # what it said before it ended comes first
                    try:
                        out.append((i, workers[i].conn.recv()))
                    except (EOFError, OSError):
                        break
                out.append((i, ("ended",)))
                continue
            i = by_conn[item]
            try:
                out.append((i, item.recv()))
            except (EOFError, OSError):
                out.append((i, ("ended",)))
        return out

    def close(self) -> None:
        pass


class WorkerPool:
    """A party's ``[compute] workers`` workers (see the module docstring); ``enabled`` when
    there are at least two. ``on_started(workers)`` hears every (re)start: a list of
    {"worker", "endpoint", "pid"} (the party audits it).

    >>> from types import SimpleNamespace
    >>> WorkerPool(SimpleNamespace(compute=SimpleNamespace(workers=1, engine="process"))).enabled
    False
    """

    def __init__(self, config, insecure: bool = False, on_started: Callable[[list], None] | None = None,
                 backend: Callable[[], object] | None = None):
        """``backend()`` makes the engine's backend (``smpc.service.raypool.RayBackend`` for
        Ray); default: worker processes (``ProcessBackend``)."""
        self.config = config
        self._make_backend = backend or ProcessBackend
        self.insecure = insecure
        self.size = int(config.compute.workers)
        self.enabled = self.size >= 2
        self.on_started = on_started
        self._lock = threading.Lock()
        self._holder: str | None = None
        self._workers: list = []
        self._backend = None
        self._stale: list[int] = []  # workers of a failed job, to be stopped and started afresh
        self._renewing: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        """Start every worker and wait until each listens."""
        if not self.enabled:
            return
        with self._lock:
            self._backend = self._backend or self._make_backend()
            self._workers = [None] * self.size
            self._renew_locked(range(self.size))

    def _renew_locked(self, which) -> None:
        for i, worker in self._started(which).items():
            self._workers[i] = worker

    def _started(self, which) -> dict:
        """New workers ``which`` ({index: handle}), each listening; their start is audited."""
        fresh = {i: self._backend.start(worker_options(self.config, self.insecure, i)) for i in which}
        try:
            for worker in fresh.values():
                worker.wait_ready(READY_S)
        except BaseException:
            for worker in fresh.values():
                worker.kill()
            raise
        if self.on_started is not None and fresh:
            self.on_started([{"worker": i, "endpoint": w.endpoint, "pid": w.pid,
                              **({"actor": w.name} if hasattr(w, "name") else {})} for i, w in fresh.items()])
        return fresh

    def reserve(self, job_id: str) -> list[str]:
        """The workers' endpoints for ``job_id``, with the pool held for it until ``release``;
        [] when the pool is off or held by another job (that job runs in one session). A
        worker that ended since the last job is started afresh first."""
        if not self.enabled:
            return []
        with self._lock:
            if self._holder is not None and self._holder != job_id:
                return []
            if self._backend is None or self._stale or self._renewing is not None:
                return []  # workers being started afresh: this job runs in one session
            dead = [i for i, w in enumerate(self._workers) if w is None or not w.alive()]
            try:
                for i in dead:
                    if self._workers[i] is not None:
                        self._workers[i].kill()
                self._renew_locked(dead)
            except SmpcError:
                return []
            self._holder = job_id
            return [w.endpoint for w in self._workers]

    def release(self, job_id: str) -> None:
        with self._lock:
            if self._holder == job_id:
                self._holder = None
        self.recycle()

    def recycle(self) -> None:
        """Stop the workers of a failed job now (their streams break at the peers' workers)
        and start fresh ones in the background; ``reserve`` offers none until they listen.
        The party calls it once it has told its peers why the job failed, so that they hear
        the cause before they see the streams break."""
        with self._lock:
            stale, self._stale = self._stale, []
            if not stale or self._backend is None:
                return
            old = [self._workers[i] for i in stale]
            self._renewing = threading.Thread(target=self._renew, args=(stale,), name="smpc-pool-renew",
                                              daemon=True)
        for worker in old:
            worker.kill()
        self._renewing.start()

    def _renew(self, which: list[int]) -> None:
        """In the background, without the pool's lock (a Ray actor takes many seconds to start):
        the new workers replace the old ones once they listen."""
        try:
            fresh = self._started(which)
        except SmpcError:
            fresh = {}  # reserve() finds the old ones dead and tries again before the next job
        with self._lock:
            closed = self._closed
            if not closed:
                for i, worker in fresh.items():
                    self._workers[i] = worker
            self._renewing = None
        if closed:  # the party stopped meanwhile
            for worker in fresh.values():
                worker.kill()

    def run(self, job_id: str, rank: int, plan: BucketPlan, fn: Callable, sessions: Sequence[dict], *, ring: int,
            timeout: float, result_ranks: Sequence[int], on_event: Callable[[str, int, int], None],
            failure: Callable[[], BaseException | None]) -> list[tuple]:
        """This party's side of every bucket session: [(result, comm stats, worker)] per
        bucket. ``failure()`` says whether the job was aborted elsewhere (checked every
        ``POLL_S`` seconds); ``on_event("started" or "done", bucket, worker)``. Raises the
        first error; the job's workers are then stopped and started afresh by ``recycle``
        (which the party calls once it told its peers, or ``release`` at the job's end)."""
        me = self.config.name
        with self._lock:
            if self._holder != job_id:
                raise SmpcError(f"{me}: the worker pool is not reserved for job {job_id}")
            workers = self._workers[: plan.slots]
        settings = {"ring": ring, "timeout": timeout, "result_ranks": sorted(result_ranks)}
        queue = {w: [b for b in range(plan.buckets) if b % plan.slots == w] for w in range(plan.slots)}
        current: dict[int, int] = {}
        results: list = [None] * plan.buckets
        ok = False

        def send(w: int, msg: tuple) -> None:
            try:
                workers[w].send(msg)
            except (OSError, ValueError) as exc:  # the pipe to a worker that is gone
                raise PartyUnavailable(f"{me}: its worker {w} is gone ({exc}); job {job_id} failed at every party, "
                                       "nothing was revealed", peer=me) from None

        def next_bucket(w: int) -> None:
            if queue[w]:
                b = queue[w].pop(0)
                current[w] = b
                send(w, ("run", WorkerCore.stream_id(job_id, w), b, fn, sessions[b], settings))

        try:
            for w in range(plan.slots):
                streams = {r: plan.endpoints[r][w] for r in plan.endpoints if r != rank}
                send(w, ("open", WorkerCore.stream_id(job_id, w), streams))
                next_bucket(w)
            pending = plan.buckets
            while pending:
                problem = failure()
                if problem is not None:
                    raise problem
                for w, msg in self._backend.events(workers, POLL_S):
                    kind = msg[0]
                    if kind == "ended":
                        where = f" during bucket {current[w] + 1} of {plan.buckets}" if w in current else ""
                        raise PartyUnavailable(f"{me}: its worker {w} ended{where}; job {job_id} failed at every "
                                               "party, nothing was revealed", peer=me)
                    if kind == "error":
                        raise msg[2]
                    if kind == "started":
                        on_event("started", msg[1], w)
                    elif kind == "done":
                        results[msg[1]] = (msg[2], msg[3], w)
                        current.pop(w, None)
                        pending -= 1
                        on_event("done", msg[1], w)
                        next_bucket(w)
            ok = True
            return results
        except PartyUnavailable as exc:
            if exc.peer == me or getattr(exc, "remote_error_type", ""):
                raise
            # a peer's worker went away: usually because its party failed the job and said
            # why on the job's own streams; that reason names the party at fault
            deadline = time.monotonic() + ABORT_GRACE_S
            while time.monotonic() < deadline:
                cause = failure()
                if cause is not None:
                    raise cause from None
                time.sleep(0.05)
            raise
        finally:
            with self._lock:
                if ok:
                    for w in range(plan.slots):
                        try:
                            workers[w].send(("close", WorkerCore.stream_id(job_id, w)))
                        except (OSError, ValueError):
                            pass
                else:  # fresh workers for the next job (``recycle``): nothing of this one's streams survives
                    self._stale = sorted(set(self._stale) | set(range(plan.slots)))

    def pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._workers if w is not None]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for w in self._workers:
                if w is None:
                    continue
                try:
                    w.send(("stop",))
                except (OSError, ValueError):
                    pass
            for w in self._workers:
                if w is not None:
                    w.kill()
            self._workers = []
            if self._backend is not None:
                self._backend.close()


__all__ = ["BucketPlan", "ProcessBackend", "WorkerCore", "WorkerPool", "worker_options"]
