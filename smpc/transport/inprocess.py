"""In-process transport: one thread per party, a queue per ordered pair of ranks.

Used by ``smpc.simulate`` and the tests. Payloads are copied on send, as a wire would, so a
receiver can never alias a sender's buffer (a multi-part payload is copied once, by
concatenating it).
"""

from __future__ import annotations

import queue
import threading
import time

import torch

from smpc.errors import PartyUnavailable, ProtocolError, ProtocolTimeout
from smpc.transport.base import Transport, payload_parts


class _Abort:
    def __init__(self, rank: int, reason: str):
        self.rank = rank
        self.reason = reason


class InProcessNetwork:
    """The shared medium of one simulated job."""

    def __init__(self, world_size: int):
        self.world_size = world_size
        self._queues = {
            (src, dst): queue.SimpleQueue()
            for src in range(world_size)
            for dst in range(world_size)
            if src != dst
        }
        self._abort: _Abort | None = None
        self._lock = threading.Lock()

    def endpoint(self, rank: int) -> InProcessTransport:
        return InProcessTransport(self, rank)

    def abort(self, rank: int, reason: str) -> None:
        with self._lock:
            if self._abort is not None:
                return
            self._abort = _Abort(rank, reason)
        for q in self._queues.values():
            q.put(self._abort)


class InProcessTransport(Transport):
    def __init__(self, network: InProcessNetwork, rank: int):
        self.network = network
        self.rank = rank
        self.world_size = network.world_size

    def send(self, peer, tag, payload):
        if self.network._abort is not None:
            self._raise_abort(self.network._abort)
        if isinstance(payload, torch.Tensor):
            copy = payload.detach().clone()
        else:  # one copy: the concatenation is already a fresh buffer
            copy = torch.cat([t.detach().reshape(-1) for t in payload_parts(payload)])
        self.network._queues[(self.rank, peer)].put((tag, copy))

    def recv(self, peer, tag, timeout):
        q = self.network._queues[(peer, self.rank)]
        deadline = time.monotonic() + timeout
        try:
            item = q.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise ProtocolTimeout(
                f"party {self.rank}: no message from party {peer} for step '{tag}' "
                f"within {timeout:g} s",
                peer=peer,
            ) from None
        if isinstance(item, _Abort):
            q.put(item)  # keep the sentinel for later receives
            self._raise_abort(item)
        got_tag, payload = item
        if got_tag != tag:
            raise ProtocolError(
                f"party {self.rank}: expected step '{tag}' from party {peer}, got '{got_tag}'"
            )
        return payload

    def _raise_abort(self, item: _Abort):
        raise PartyUnavailable(
            f"party {self.rank}: job aborted because party {item.rank} failed ({item.reason})",
            peer=item.rank,
        )

    def abort(self, reason):
        self.network.abort(self.rank, reason)
