"""The interface every transport implements (in-process threads, gRPC between processes)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Transport(ABC):
    """Point-to-point, ordered, reliable delivery of tensors between the ranks of one job.

    Messages between a pair of ranks arrive in the order sent; each carries a tag that the
    receiver checks, so that two parties running different steps fail loudly instead of
    mixing data. ``recv`` never waits longer than its timeout: it raises ``ProtocolTimeout``
    naming the peer, or ``PartyUnavailable`` when the peer aborted or disconnected.
    """

    rank: int
    world_size: int

    @abstractmethod
    def send(self, peer: int, tag: str, payload: torch.Tensor) -> None:
        """Queue a tensor for ``peer``; the caller may reuse ``payload`` afterwards."""

    @abstractmethod
    def recv(self, peer: int, tag: str, timeout: float) -> torch.Tensor:
        """The next tensor from ``peer``, which must carry ``tag``."""

    @abstractmethod
    def abort(self, reason: str) -> None:
        """Tell every peer that this rank gave up on the job (they raise PartyUnavailable)."""

    def close(self) -> None:
        """Release resources; the default has none."""
