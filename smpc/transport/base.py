"""The interface every transport implements (in-process threads, gRPC between processes)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

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
    def send(self, peer: int, tag: str, payload: torch.Tensor | Sequence[torch.Tensor]) -> None:
        """Queue a tensor for ``peer``; the caller may reuse ``payload`` afterwards. A sequence
        of tensors (one dtype) is one message: the concatenation of their flattened elements,
        received as one 1-D tensor. Passing the parts instead of concatenating them first
        saves a copy: each transport copies the parts once, straight into what it sends."""

    @abstractmethod
    def recv(self, peer: int, tag: str, timeout: float) -> torch.Tensor:
        """The next tensor from ``peer``, which must carry ``tag``."""

    @abstractmethod
    def abort(self, reason: str) -> None:
        """Tell every peer that this rank gave up on the job (they raise PartyUnavailable)."""

    def close(self) -> None:
        """Release resources; the default has none."""


def payload_parts(payload: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The parts of a payload (a single tensor is one part), checked for one dtype."""
    if isinstance(payload, torch.Tensor):
        return [payload]
    parts = list(payload)
    if not parts:
        raise ValueError("a message needs at least one tensor")
    if any(t.dtype != parts[0].dtype for t in parts):
        raise ValueError("the parts of one message must share a dtype")
    return parts


def payload_bytes(payload: torch.Tensor | Sequence[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in payload_parts(payload))
