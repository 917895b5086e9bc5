"""Run an SPMD function on every rank over the in-process transport while recording what each
rank receives: for tests of what a party sees (privacy, leakage, who gets which messages)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from smpc.sharing import N_COMPUTE
from smpc.simulation import simulate
from smpc.transport.inprocess import InProcessNetwork, InProcessTransport


class RecordingTransport(InProcessTransport):
    """The in-process transport, keeping (peer, tag, a copy of the payload) of every message
    this rank receives."""

    def __init__(self, network: InProcessNetwork, rank: int):
        super().__init__(network, rank)
        self.received: list[tuple[int, str, torch.Tensor]] = []

    def recv(self, peer, tag, timeout):
        payload = super().recv(peer, tag, timeout)
        self.received.append((peer, tag, payload.clone()))
        return payload


def run_recorded(fn: Callable, world: int = 3, ring: int = 64, party_names: list[str] | None = None,
                 args: Callable[[int], dict] = lambda rank: {}, result_ranks=None):
    """Run ``fn(ctx, **args(rank))`` on every rank (``smpc.simulate``); return (results, the
    messages each rank received). ``result_ranks``: the job's recipients (``ctx.result_ranks``;
    default the compute parties). A failing rank aborts the others, and the error of the rank
    that failed first is re-raised."""
    transports: dict[int, RecordingTransport] = {}

    def recording(network: InProcessNetwork, rank: int) -> RecordingTransport:
        transports[rank] = RecordingTransport(network, rank)
        return transports[rank]

    results = simulate(fn, ring=ring, inputs={r: args(r) for r in range(world)}, input_parties=world - N_COMPUTE,
                       timeout=120, party_names=party_names, result_ranks=result_ranks, transport_factory=recording)
    return results, [transports[r].received for r in range(world)]
