"""Drive the three compute parties of one ``smpc.simulate`` job op by op from the benchmark.

Why this shape: pytest-benchmark times a callable on the main thread, while an SPMD op only
completes when all three party threads have run it. ``Parties`` starts one simulate() job
whose party function waits for commands; each ``step()`` hands the same op to all three
parties and returns when the last one has finished, so one timed call is one op measured as
the max over parties (the side-by-side harness' definition), including its communication. Every party runs
exactly the same sequence of ops (the PRG streams and message tags stay in step), and setup
(key agreement, sharing the inputs) happens once, outside the timing.

The per-step overhead (two queue hand-offs per party) is ~0.1 ms; it is part of the
measured latency and matters only for the smallest sizes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import smpc
from smpc.sharing import N_COMPUTE

_STOP = object()


class PartyError(RuntimeError):
    pass


class Parties:
    """``setup(ctx) -> state`` runs once per party; ``op(ctx, state)`` runs on every ``step()``."""

    def __init__(self, setup: Callable, op: Callable, ring: int = 128, frac_bits: int | None = None,
                 timeout: float = 600.0):
        self._op = op
        self._timeout = timeout
        self._commands = [queue.SimpleQueue() for _ in range(N_COMPUTE)]
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self.last_stats: list[dict] = [{}] * N_COMPUTE
        self._failure: BaseException | None = None

        def party(ctx):
            try:
                state = setup(ctx)
                self._done.put((ctx.rank, None))
                while True:
                    cmd = self._commands[ctx.rank].get()
                    if cmd is _STOP:
                        return None
                    ctx.reset_comm_stats()
                    op(ctx, state)
                    self._done.put((ctx.rank, ctx.comm_stats()))
            except BaseException as exc:  # noqa: BLE001 - report it to the driver, then abort peers
                self._done.put((ctx.rank, exc))
                raise

        def run():
            try:
                smpc.simulate(party, ring=ring, frac_bits=frac_bits, timeout=timeout)
            except BaseException as exc:  # noqa: BLE001 - surfaced by step()/close()
                self._failure = exc

        self._thread = threading.Thread(target=run, name="smpc-bench-job", daemon=True)
        self._thread.start()
        self._collect()  # parties are set up

    def _collect(self) -> list[dict]:
        stats: list = [None] * N_COMPUTE
        for _ in range(N_COMPUTE):
            try:
                rank, got = self._done.get(timeout=self._timeout)
            except queue.Empty:
                raise PartyError(f"parties did not finish within {self._timeout} s") from None
            if isinstance(got, BaseException):
                raise PartyError(f"party {rank} failed: {got!r}") from got
            stats[rank] = got
        return stats

    def step(self) -> None:
        """Run the op once on all three parties; returns when the slowest one is done."""
        for q in self._commands:
            q.put(1)
        self.last_stats = self._collect()

    def comm_info(self, elements: int | None = None) -> dict:
        """Bytes and rounds of the last op from ``ctx.comm_stats()``, for ``extra_info``."""
        sent = [s["bytes_sent"] for s in self.last_stats]
        info = {
            "bytes_sent_per_party": sent,
            "bytes_sent_max": max(sent),
            "rounds": max(s["rounds"] for s in self.last_stats),
        }
        if elements:
            info["bytes_per_element_max"] = max(sent) / elements
        return info

    def close(self) -> None:
        for q in self._commands:
            q.put(_STOP)
        self._thread.join(self._timeout)
        if self._failure is not None:
            raise PartyError(f"simulate() failed: {self._failure!r}") from self._failure

    def __enter__(self) -> Parties:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
