"""Run an SPMD function on every rank over the in-process transport while recording what each
rank receives: for tests of what a party sees (privacy, leakage, who gets which messages)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch

from smpc.context import Context
from smpc.errors import PartyUnavailable
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
    """Run ``fn(ctx, **args(rank))`` on every rank in its own thread; return (results, the
    messages each rank received). ``result_ranks``: the job's recipients (``ctx.result_ranks``;
    default the compute parties). A failing rank aborts the others; the first error that is
    not a consequence (``PartyUnavailable``) is re-raised."""
    network = InProcessNetwork(world)
    transports = [RecordingTransport(network, r) for r in range(world)]
    results: list = [None] * world
    errors: list = []

    def run(rank):
        try:
            ctx = Context(rank, world, transports[rank], ring=ring, timeout=120, party_names=party_names,
                          result_ranks=result_ranks)
            results[rank] = fn(ctx, **args(rank))
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
            network.abort(rank, type(exc).__name__)

    threads = [threading.Thread(target=run, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise next((e for e in errors if not isinstance(e, PartyUnavailable)), errors[0])
    return results, [t.received for t in transports]
