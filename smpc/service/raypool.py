"""The Ray engine of a party's worker pool (``[compute] engine = "ray"``): the same workers as
``smpc.service.pool``'s processes, as Ray actors on the bank's own Ray cluster.

Ray is an optional dependency (``pip install smpc[ray]``), imported only when a party's
configuration asks for this engine. The party process joins the cluster named by
``[compute] address`` as a driver (``ray://HOST:PORT`` through Ray Client, ``auto`` or a GCS
``HOST:PORT`` on a cluster node, ``local``: a Ray instance of its own) and starts one actor
per worker, named ``smpc-PARTY-wW-NONCE`` in the namespace ``smpc``. Each actor holds a
``WorkerCore``: a gRPC server with the party's certificate and key, read by the actor from
the configured paths (every node that may host a worker must have the party's TLS files at
those paths; they never travel through Ray), the same caller checks, and the bucket sessions
it is asked to run, in order. What travels through Ray is only what travels through a worker
process's pipe: the bucket's keys and padded rows (this party's own, to its own cluster), and
the session's flags and shares back. Peer traffic stays on the workers' mutual TLS streams.

An actor that dies (``ray.kill``, its node lost) fails the job exactly as a worker process
that ends: the party sees the actor's death on its pending call, and the pool starts a new
actor for the next job.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Sequence

from smpc.errors import PartyUnavailable, SmpcError

PROBE_S = 1.0
"""While runs are pending, the party checks this often that its actors' ports still listen:
Ray tells a pending call's owner of its actor's death only after its own detection (tens of
seconds when another driver killed it, measured here), a closed port says it at once."""
PING_S = 1.0
"""How long a liveness check at Prepare waits for an actor's answer."""
NAMESPACE = "smpc"
"""The Ray namespace of every worker actor (operators find them with ``ray list actors``)."""


def _ray():
    try:
        import ray
    except ImportError:
        raise SmpcError("[compute] engine = \"ray\" needs Ray: pip install 'smpc[ray]'") from None
    return ray


def _listening(endpoint: str) -> bool:
    """Whether a worker's gRPC port still accepts connections (a refused or unreachable one:
    its actor is gone; no answer within the probe time counts as listening)."""
    host, _, port = endpoint.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_S).close()
    except TimeoutError:
        return True
    except OSError:
        return False
    return True


class RayWorkerActor:
    """A worker as a Ray actor: the body of the actor class ``RayBackend`` declares."""

    def __init__(self, opts: dict):
        from smpc.service.pool import WorkerCore

        self.core = WorkerCore(opts)
        self.advertise = opts.get("advertise") or _ray().util.get_node_ip_address()

    def ready(self) -> tuple[str, int]:
        return f"{self.advertise}:{self.core.port}", os.getpid()

    def ping(self) -> bool:
        return True

    def open(self, stream: str, endpoints: dict) -> None:
        self.core.open(stream, endpoints)

    def run(self, stream: str, bucket: int, fn, kwargs: dict, settings: dict) -> tuple:
        from smpc.service.pool import _portable

        try:
            result, stats = self.core.run(stream, bucket, fn, kwargs, settings)
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the peers and the party
            culprit = getattr(exc, "culprit", "") or (exc.peer if isinstance(exc, PartyUnavailable)
                                                     and isinstance(exc.peer, str) else self.core.me)
            self.core.abort(stream, f"{type(exc).__name__}: {exc}", type(exc).__name__, culprit)
            return ("error", bucket, _portable(exc))
        return ("done", bucket, result, stats)

    def close(self, stream: str) -> None:
        self.core.close(stream)

    def stop(self) -> None:
        self.core.stop()


class _RayWorker:
    """The party's handle on one worker actor (what ``pool._ProcessWorker`` is for a process)."""

    def __init__(self, actor_class, opts: dict):
        ray = _ray()
        self.opts = opts
        self.name = f"smpc-{opts['name']}-w{opts['index']}-{uuid.uuid4().hex[:8]}"
        self.actor = actor_class.options(name=self.name, namespace=NAMESPACE).remote(opts)
        self._ray = ray
        self.endpoint = ""
        self.pid = 0
        self.pending: list = []  # [(bucket, ref)] of runs in flight, in order
        self.notes: list = []  # ("started", bucket) not yet reported
        self.dead = False

    def wait_ready(self, timeout: float) -> None:
        try:
            self.endpoint, self.pid = self._ray.get(self.actor.ready.remote(), timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; the party needs one
            raise SmpcError(f"{self.opts['name']}: worker actor {self.name} did not start ({exc})") from None

    def alive(self) -> bool:
        """False once the actor is known dead. A ping unanswered within ``PING_S`` (a busy or
        slow node) does not count: Prepare must answer within the connect timeout, and an
        actor that is really gone fails the job at its first call like a process that ends."""
        if self.dead:
            return False
        try:
            self._ray.get(self.actor.ping.remote(), timeout=PING_S)
        except self._ray.exceptions.GetTimeoutError:
            return True
        except Exception:  # noqa: BLE001 - the actor died (or never started): not a worker to use
            self.dead = True
            return False
        return True

    def send(self, msg) -> None:
        kind = msg[0]
        if kind == "open":
            self.actor.open.remote(msg[1], msg[2])
        elif kind == "run":
            _, stream, b, fn, kwargs, settings = msg
            self.pending.append((b, self.actor.run.remote(stream, b, fn, kwargs, settings)))
            self.notes.append(("started", b))
        elif kind == "close":
            self.actor.close.remote(msg[1])
        elif kind == "stop":
            self.actor.stop.remote()

    def kill(self) -> None:
        self.dead = True
        try:
            self._ray.kill(self.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


class RayBackend:
    """Joins the Ray cluster at ``address`` (see the module docstring) and starts workers as
    actors of one CPU each.

    >>> RayBackend.cluster_address("local") is None
    True
    """

    def __init__(self, address: str):
        ray = _ray()
        if not ray.is_initialized():
            kept = {}
            if threading.current_thread() is threading.main_thread():
                kept = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
            ray.init(address=self.cluster_address(address), namespace=NAMESPACE, include_dashboard=False,
                     logging_level="WARNING", log_to_driver=False, configure_logging=False)
            # Ray's core installs its own handlers for these, which end the process with SIGABRT
            # after ours ran: the party's clean stop (audit sealed, jobs failed with why) is ours
            for sig, handler in kept.items():
                if handler is not None:
                    signal.signal(sig, handler)
        self._probed = 0.0
        self._actor_class = ray.remote(num_cpus=1, max_restarts=0, max_concurrency=2)(RayWorkerActor)
        self._ray = ray

    @staticmethod
    def cluster_address(address: str) -> str | None:
        return None if address == "local" else address

    def start(self, opts: dict) -> _RayWorker:
        return _RayWorker(self._actor_class, opts)

    def events(self, workers: Sequence[_RayWorker], timeout: float) -> list[tuple[int, tuple]]:
        """(worker index, message), as ``pool.ProcessBackend.events``: runs that finished, in
        each worker's order, and ("ended",) for a worker whose actor died."""
        out = []
        for i, w in enumerate(workers):
            out += [(i, note) for note in w.notes]
            w.notes.clear()
        refs = [ref for w in workers for _, ref in w.pending[:1]]  # each worker's next run to end
        if out or not refs:
            return out
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=timeout)
        if not ready and time.monotonic() - self._probed > PROBE_S:
            self._probed = time.monotonic()
            for i, w in enumerate(workers):
                if w.pending and not _listening(w.endpoint):
                    w.dead = True
                    return out + [(i, ("ended",))]
        for i, w in enumerate(workers):
            if w.pending and w.pending[0][1] in ready:
                _, ref = w.pending.pop(0)
                try:
                    out.append((i, self._ray.get(ref)))
                except Exception:  # noqa: BLE001 - the actor died (ray.kill, node lost): its worker ended
                    w.dead = True
                    out.append((i, ("ended",)))
        return out

    def close(self) -> None:
        pass  # the cluster is the bank's: the party leaves it as it found it


__all__ = ["NAMESPACE", "RayBackend", "RayWorkerActor"]
