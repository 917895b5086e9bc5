"""Process-to-process transport over OS pipes, for local worker processes (``smpc.workers``).

One duplex ``multiprocessing`` connection per pair of ranks: rank i's worker w talks to rank
j's worker w on its own channel, never through a shared queue. A reader thread per peer
drains its connection into a queue, so that two ranks sending large messages to each other
at once never block on full pipe buffers. A peer whose process ends (killed, crashed) closes
its end: the reader sees end-of-file and every later ``recv`` from that peer raises
``PartyUnavailable`` at once, without waiting for the timeout.

``PrefixedTransport`` gives one session its own tag space on a shared transport: a worker
runs many bucket sessions in turn over one set of pipes, and a message of one session can
never be taken for another's (the receiver checks the full tag).
"""

from __future__ import annotations

import queue
import threading
import time
from multiprocessing.connection import Connection

import numpy as np
import torch

from smpc.errors import PartyUnavailable, ProtocolError, ProtocolTimeout
from smpc.transport.base import Transport, payload_parts


class _Stop:
    """A queued marker: the peer aborted (``reason``) or its process is gone."""

    def __init__(self, reason: str, gone: bool):
        self.reason = reason
        self.gone = gone


class PipeTransport(Transport):
    """Ordered, reliable messages to the ranks at the other ends of ``conns`` ({peer: duplex
    connection}); see the module docstring.

    >>> from multiprocessing import Pipe
    >>> a, b = Pipe()
    >>> left, right = PipeTransport(0, 2, {1: a}), PipeTransport(1, 2, {0: b})
    >>> left.send(1, "x#0", torch.arange(3))
    >>> right.recv(0, "x#0", 5.0).tolist()
    [0, 1, 2]
    >>> left.close(); right.close()
    """

    def __init__(self, rank: int, world_size: int, conns: dict[int, Connection]):
        self.rank = rank
        self.world_size = world_size
        self._conns = dict(conns)
        self._queues: dict[int, queue.SimpleQueue] = {p: queue.SimpleQueue() for p in self._conns}
        self._send_locks = {p: threading.Lock() for p in self._conns}
        self._closed = False
        self._readers = [
            threading.Thread(target=self._read, args=(p,), name=f"smpc-pipe-{rank}-{p}", daemon=True)
            for p in self._conns
        ]
        for t in self._readers:
            t.start()

    def _read(self, peer: int) -> None:
        conn, q = self._conns[peer], self._queues[peer]
        try:
            while True:
                header = conn.recv()
                if header[0] == "abort":
                    q.put(_Stop(str(header[1]), gone=False))
                    return
                _, tag, dtype, shape, sizes = header
                buf = bytearray(sum(sizes))
                offset = 0
                for size in sizes:  # the parts land straight in one buffer: no concatenation copy
                    if size:
                        conn.recv_bytes_into(buf, offset)
                    offset += size
                kind = getattr(torch, dtype)
                t = torch.frombuffer(buf, dtype=kind) if buf else torch.empty(0, dtype=kind)
                q.put((tag, t.reshape(shape)))
        except (EOFError, OSError):
            q.put(_Stop("its worker process ended", gone=True))

    def send(self, peer, tag, payload):
        parts = payload_parts(payload)
        arrays = [np.ascontiguousarray(t.detach().reshape(-1).numpy()) for t in parts]
        shape = tuple(parts[0].shape) if isinstance(payload, torch.Tensor) else (sum(a.size for a in arrays),)
        dtype = str(parts[0].dtype).removeprefix("torch.")
        try:
            with self._send_locks[peer]:
                conn = self._conns[peer]
                conn.send(("msg", tag, dtype, shape, [a.nbytes for a in arrays]))
                for a in arrays:
                    if a.nbytes:
                        conn.send_bytes(memoryview(a).cast("B"))
        except (OSError, ValueError) as exc:  # BrokenPipe: the peer's process is gone
            raise PartyUnavailable(f"party {self.rank}: cannot reach party {peer} for step '{tag}' ({exc})",
                                   peer=peer) from None

    def recv(self, peer, tag, timeout):
        q = self._queues[peer]
        deadline = time.monotonic() + timeout
        try:
            item = q.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise ProtocolTimeout(
                f"party {self.rank}: no message from party {peer} for step '{tag}' within {timeout:g} s", peer=peer
            ) from None
        if isinstance(item, _Stop):
            q.put(item)  # later receives fail the same way
            what = "its worker process ended" if item.gone else f"it aborted ({item.reason})"
            raise PartyUnavailable(f"party {self.rank}: party {peer} is unavailable: {what}", peer=peer)
        got_tag, payload = item
        if got_tag != tag:
            raise ProtocolError(f"party {self.rank}: expected step '{tag}' from party {peer}, got '{got_tag}'")
        return payload

    def abort(self, reason):
        for peer, conn in self._conns.items():
            try:
                with self._send_locks[peer]:
                    conn.send(("abort", reason))
            except (OSError, ValueError):
                pass  # that peer is gone already

    def close(self):
        if self._closed:
            return
        self._closed = True
        for conn in self._conns.values():
            conn.close()


class PrefixedTransport(Transport):
    """``inner`` with every tag prefixed: one session's own tag space on a shared transport.

    >>> from smpc.transport.inprocess import InProcessNetwork
    >>> net = InProcessNetwork(2)
    >>> a, b = PrefixedTransport(net.endpoint(0), "b1/"), net.endpoint(1)
    >>> a.send(1, "x#0", torch.zeros(1))
    >>> b.recv(0, "b1/x#0", 1.0).tolist()
    [0.0]
    """

    def __init__(self, inner: Transport, prefix: str):
        self.inner = inner
        self.prefix = prefix
        self.rank = inner.rank
        self.world_size = inner.world_size

    def send(self, peer, tag, payload):
        self.inner.send(peer, self.prefix + tag, payload)

    def recv(self, peer, tag, timeout):
        return self.inner.recv(peer, self.prefix + tag, timeout)

    def abort(self, reason):
        self.inner.abort(reason)


__all__ = ["PipeTransport", "PrefixedTransport"]
