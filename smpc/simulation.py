"""Every party of a job in one process, each in its own thread: ``smpc.simulate`` over the
in-process transport, and ``run_parties``, which it is built on, over any transports."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from smpc.context import DEFAULT_TIMEOUT, Context
from smpc.errors import SmpcError
from smpc.sharing import N_COMPUTE
from smpc.transport.base import Transport
from smpc.transport.inprocess import InProcessNetwork


def run_parties(
    fn: Callable,
    world: int,
    transport_for: Callable[[int], Transport],
    inputs: Mapping[int, dict] | None = None,
    ring: int = 128,
    frac_bits: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    party_names: list[str] | None = None,
    result_ranks=None,
    **kwargs,
) -> list:
    """Run ``fn(ctx, **kwargs, **inputs[rank])`` once per rank of a ``world``-party job, each
    in its own thread over ``transport_for(rank)``, and return the per-rank results (index =
    rank).

    ``result_ranks`` sets ``ctx.result_ranks``, the ranks an analysis opens its results to
    (default: the compute parties). If any rank raises, it aborts the job on its transport
    (the others stop within moments, not at the timeout) and the error of the rank that
    failed first is re-raised (the others' errors are only its consequences).
    """
    inputs = inputs or {}
    results: list = [None] * world
    errors: list = [None] * world
    failed_first: list[int] = []
    lock = threading.Lock()

    def run(rank: int) -> None:
        transport = None
        try:
            transport = transport_for(rank)
            ctx = Context(
                rank, world, transport, ring=ring, frac_bits=frac_bits,
                timeout=timeout, party_names=party_names, result_ranks=result_ranks,
            )
            results[rank] = fn(ctx, **kwargs, **inputs.get(rank, {}))
        except BaseException as exc:  # noqa: BLE001 - every failure must abort the peers
            errors[rank] = exc
            with lock:  # the order of the aborts is the order of the failures
                failed_first.append(rank)
                if transport is not None:
                    transport.abort(type(exc).__name__)

    threads = [threading.Thread(target=run, args=(r,), name=f"smpc-party-{r}", daemon=True) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed_first:
        # a ProtocolTimeout is a PartyUnavailable too, so the error's type alone cannot tell
        # the root from its consequences: the order of the failures does
        raise errors[failed_first[0]]
    return results


def simulate(
    fn: Callable,
    parties: int = 3,
    ring: int = 128,
    frac_bits: int | None = None,
    inputs: dict | None = None,
    input_parties: int = 0,
    timeout: float = DEFAULT_TIMEOUT,
    party_names: list[str] | None = None,
    result_ranks=None,
    transport_factory: Callable[[InProcessNetwork, int], Transport] | None = None,
    **kwargs,
) -> list:
    """Run ``fn(ctx, **kwargs, **inputs[rank])`` once per party, each in its own thread, and
    return the per-party results (index = rank).

    Ranks 0..2 are the compute parties; ``input_parties`` extra ranks (3, 4, ...) own inputs or
    receive results without holding shares. ``result_ranks`` sets ``ctx.result_ranks``, the
    ranks an analysis opens its results to (default: the compute parties).
    ``transport_factory(network, rank)`` makes a rank's transport on the in-process network
    (default ``network.endpoint(rank)``; tests wrap it to record what a party receives). If
    any party raises, the job is aborted on every party and the error of the party that
    failed first is re-raised (``run_parties``).
    """
    if parties != N_COMPUTE:
        raise SmpcError(f"smpc runs with exactly {N_COMPUTE} compute parties (got parties={parties})")
    world = parties + input_parties
    inputs = inputs or {}
    unknown = set(inputs) - set(range(world))
    if unknown:
        raise SmpcError(f"inputs given for ranks {sorted(unknown)} that are not parties of this job")
    network = InProcessNetwork(world)
    make = transport_factory or InProcessNetwork.endpoint
    return run_parties(fn, world, lambda rank: make(network, rank), inputs, ring=ring, frac_bits=frac_bits,
                       timeout=timeout, party_names=party_names, result_ranks=result_ranks, **kwargs)
