"""Run an SPMD function for every party in one process (threads over the in-process transport)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from smpc.context import DEFAULT_TIMEOUT, Context
from smpc.errors import PartyUnavailable, SmpcError
from smpc.sharing import N_COMPUTE
from smpc.transport.inprocess import InProcessNetwork


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
    **kwargs,
) -> list:
    """Run ``fn(ctx, **kwargs, **inputs[rank])`` once per party, each in its own thread, and
    return the per-party results (index = rank).

    Ranks 0..2 are the compute parties; ``input_parties`` extra ranks (3, 4, ...) own inputs or
    receive results without holding shares. ``result_ranks`` sets ``ctx.result_ranks``, the
    ranks an analysis opens its results to (default: the compute parties). If any party
    raises, the job is aborted on every party (they stop within moments, not at the
    timeout) and the error of the party that failed first is re-raised (the others' errors
    are only its consequences).
    """
    if parties != N_COMPUTE:
        raise SmpcError(f"smpc runs with exactly {N_COMPUTE} compute parties (got parties={parties})")
    world = parties + input_parties
    inputs = inputs or {}
    unknown = set(inputs) - set(range(world))
    if unknown:
        raise SmpcError(f"inputs given for ranks {sorted(unknown)} that are not parties of this job")
    network = InProcessNetwork(world)
    results: list = [None] * world
    errors: list = [None] * world

    def run(rank: int) -> None:
        try:
            ctx = Context(
                rank, world, network.endpoint(rank), ring=ring, frac_bits=frac_bits,
                timeout=timeout, party_names=party_names, result_ranks=result_ranks,
            )
            results[rank] = fn(ctx, **kwargs, **inputs.get(rank, {}))
        except BaseException as exc:  # noqa: BLE001 - every failure must abort the peers
            errors[rank] = exc
            network.abort(rank, type(exc).__name__)

    threads = [threading.Thread(target=run, args=(r,), name=f"smpc-party-{r}", daemon=True) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = [e for e in errors if e is not None]
    if failed:
        # the root is the error of the rank that aborted the job first; the others' errors are
        # its consequences (a ProtocolTimeout is a PartyUnavailable too, so type alone cannot tell)
        first = network._abort.rank if network._abort is not None else None
        root = errors[first] if first is not None and errors[first] is not None else None
        if root is None:
            root = next((e for e in failed if not isinstance(e, PartyUnavailable)), failed[0])
        raise root
    return results
