"""Bucket sessions on worker pools: ``run_bucketed`` splits a join analysis into K bucket
sessions (``smpc.buckets``) and runs them on an ``Engine``.

An engine runs independent MPC sessions, each over every rank of the job, and returns each
rank's result; how it places them is its own business behind one method, ``Engine.run``:

- ``InProcessEngine``: the sessions one after another, every rank a thread of this process
  (``smpc.simulation.run_parties``), as ``smpc.simulate`` does.
- ``ProcessEngine(workers=N)``: N worker processes per rank; worker w of rank i talks to
  worker w of every other rank over its own pipe (``smpc.transport.pipes``), and runs the
  buckets it is handed one after another, each in a fresh ``Context`` (fresh pairwise keys,
  hence fresh randomness) with its own tag prefix, so two sessions never mix. A worker that
  fails or dies ends the whole job with its error or ``PartyUnavailable``: its peers see the
  closed pipe at once, the driver sees the dead process, every worker is stopped, and no
  result is returned; nothing waits longer than the timeout.

An engine that runs the same workers elsewhere (Ray actors) implements ``Engine.run`` with
the same contract: sessions are independent, results come back per session and rank, and
any failure aborts the job without a partial result.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait

from smpc.allocator import release_freed
from smpc.context import DEFAULT_TIMEOUT, Context
from smpc.errors import InputError, PartyUnavailable, ProtocolTimeout, SmpcError
from smpc.simulation import run_parties
from smpc.transport.inprocess import InProcessNetwork
from smpc.transport.pipes import PipeTransport, PrefixedTransport


@dataclass
class SessionResult:
    """One session's outcome: ``results[rank]``, ``stats[rank]`` (``Context.comm_stats``),
    the ``worker`` slot it ran on and the ``seconds`` it took."""

    results: list
    stats: list
    worker: int = 0
    seconds: float = 0.0


@dataclass
class EngineReport:
    """What an engine measured besides the results: peak RSS (bytes) of every worker process
    (``peak_rss[(rank, worker)]``) and the CPU seconds it used (``cpu_seconds``, same keys);
    both empty for in-process engines."""

    peak_rss: dict = field(default_factory=dict)
    cpu_seconds: dict = field(default_factory=dict)


class Engine(ABC):
    """Runs independent MPC sessions of one job (see the module docstring).

    >>> isinstance(InProcessEngine(), Engine)
    True
    """

    workers: int = 1
    report: EngineReport

    @abstractmethod
    def run(self, fn: Callable, sessions: Sequence[Mapping[int, dict]], *, world: int, ring: int,
            party_names: list[str], result_ranks: Sequence[int], timeout: float = DEFAULT_TIMEOUT,
            on_event: Callable[[str, int], None] | None = None) -> list[SessionResult]:
        """Run ``fn(ctx, **sessions[b][rank])`` for every session b on every rank (0..world-1)
        and return one ``SessionResult`` per session, in order. ``on_event("started" or
        "done", b)`` is called as sessions start and finish. Any rank's failure aborts the
        job: the first error is raised and no result is returned."""


def _session(ctx: Context, fn: Callable, kwargs: dict):
    return fn(ctx, **kwargs), ctx.comm_stats()


class InProcessEngine(Engine):
    """Every session in turn, every rank a thread of this process.

    >>> InProcessEngine().workers
    1
    """

    def __init__(self):
        self.workers = 1
        self.report = EngineReport()

    def run(self, fn, sessions, *, world, ring, party_names, result_ranks, timeout=DEFAULT_TIMEOUT, on_event=None):
        out = []
        for b, kwargs in enumerate(sessions):
            if on_event is not None:
                on_event("started", b)
            start = time.monotonic()
            network = InProcessNetwork(world)

            def endpoint(rank: int, network=network, b=b) -> PrefixedTransport:
                return PrefixedTransport(network.endpoint(rank), f"b{b}/")

            got = run_parties(_session, world, endpoint,
                              {r: {"fn": fn, "kwargs": dict(kwargs.get(r, {}))} for r in range(world)}, ring=ring,
                              timeout=timeout, party_names=party_names, result_ranks=result_ranks)
            out.append(SessionResult([g[0] for g in got], [g[1] for g in got], 0, time.monotonic() - start))
            if on_event is not None:
                on_event("done", b)
        return out


def _usage() -> tuple[int, float]:
    """(peak RSS in bytes, CPU seconds) of this process."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_maxrss * 1024, use.ru_utime + use.ru_stime  # Linux reports KiB


def _worker_main(rank: int, world: int, peers: dict, commands, options: dict) -> None:
    """A worker process: run the sessions the driver sends, one at a time, until told to
    stop or the driver goes away."""
    import torch

    torch.set_num_threads(int(options.get("threads", 1)))
    transport = PipeTransport(rank, world, peers)
    try:
        while True:
            try:
                msg = commands.recv()
            except (EOFError, OSError):
                return  # the driver is gone: so is the job
            if msg[0] == "stop":
                return
            _, b, fn, kwargs = msg
            commands.send(("started", b, os.getpid()))
            start = time.monotonic()
            try:
                ctx = Context(rank, world, PrefixedTransport(transport, f"b{b}/"), ring=options["ring"],
                              timeout=options["timeout"], party_names=options["party_names"],
                              result_ranks=options["result_ranks"])
                result = fn(ctx, **kwargs)
                commands.send(("done", b, result, ctx.comm_stats(), time.monotonic() - start, _usage()))
                del result
                release_freed()
            except BaseException as exc:  # noqa: BLE001 - every failure must reach the peers and the driver
                transport.abort(type(exc).__name__)
                try:
                    commands.send(("error", b, exc if isinstance(exc, SmpcError) else SmpcError(repr(exc))))
                except (OSError, ValueError):
                    pass
                return
    finally:
        transport.close()


class ProcessEngine(Engine):
    """``workers`` worker processes per rank, started per ``run`` and stopped after it (see
    the module docstring). ``threads``: torch threads per worker. With the default start
    method every worker is forked from one server process that imported ``preload`` once
    (the analyses, torch), so a worker starts in milliseconds and shares those pages.

    >>> ProcessEngine(workers=2).workers
    2
    """

    def __init__(self, workers: int = 2, threads: int = 1, start_method: str = "forkserver",
                 preload: Sequence[str] = ("smpc.workers", "smpc.analyses")):
        if workers < 1:
            raise InputError(f"workers must be at least 1, got {workers}")
        self.workers = int(workers)
        self.threads = int(threads)
        self.start_method = start_method
        self.preload = list(preload)
        self.report = EngineReport()
        self.pids: dict[tuple[int, int], int] = {}
        """{(rank, worker): process id} of the running job's workers (for operators and tests)."""

    def _context(self):
        mp = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            mp.set_forkserver_preload(self.preload)
        return mp

    def warm_up(self) -> None:
        """Start the server the workers are forked from (and its imports) now, not in the
        first ``run``: for timings that should not include it."""
        p = self._context().Process(target=os.getpid, daemon=True)
        p.start()
        p.join()

    def run(self, fn, sessions, *, world, ring, party_names, result_ranks, timeout=DEFAULT_TIMEOUT, on_event=None):
        mp = self._context()
        slots = min(self.workers, max(1, len(sessions)))
        options = {"ring": ring, "timeout": timeout, "party_names": list(party_names),
                   "result_ranks": list(result_ranks), "threads": self.threads}
        procs: dict[tuple[int, int], multiprocessing.Process] = {}
        commands: dict[tuple[int, int], object] = {}
        try:
            for w in range(slots):
                ends: dict[int, dict] = {r: {} for r in range(world)}
                for i in range(world):
                    for j in range(i + 1, world):
                        ends[i][j], ends[j][i] = mp.Pipe(duplex=True)
                for r in range(world):
                    mine, theirs = mp.Pipe(duplex=True)
                    p = mp.Process(target=_worker_main, args=(r, world, ends[r], theirs, options),
                                   name=f"smpc-worker-{r}-{w}", daemon=True)
                    p.start()
                    theirs.close()
                    procs[(r, w)], commands[(r, w)] = p, mine
                    self.pids[(r, w)] = p.pid
                for conns in ends.values():  # only the workers may hold the pipes: a dead one must close them
                    for c in conns.values():
                        c.close()
            return self._drive(fn, sessions, world, slots, procs, commands, timeout, on_event)
        finally:
            for conn in commands.values():
                try:
                    conn.send(("stop",))
                except (OSError, ValueError):
                    pass
            for p in procs.values():
                p.join(timeout=5)
                if p.is_alive():
                    p.kill()
                    p.join(timeout=5)
            for conn in commands.values():
                conn.close()
            self.pids = {}

    def _drive(self, fn, sessions, world, slots, procs, commands, timeout, on_event):
        results: list[SessionResult | None] = [None] * len(sessions)
        pending = list(range(len(sessions)))
        running: dict[int, dict] = {}  # slot -> {"bucket", "start", "got": {rank: (result, stats)}}
        names = {v: k for k, v in commands.items()}
        sentinels = {p.sentinel: k for k, p in procs.items()}

        def assign(w: int) -> None:
            if not pending:
                return
            b = pending.pop(0)
            running[w] = {"bucket": b, "start": time.monotonic(), "got": {}}
            for r in range(world):
                try:
                    commands[(r, w)].send(("run", b, fn, dict(sessions[b].get(r, {}))))
                except (OSError, ValueError):
                    self._died((r, w), running)

        for w in range(slots):
            assign(w)
        deadline = time.monotonic() + timeout
        while running:
            ready = wait(list(commands.values()) + list(sentinels), timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                raise ProtocolTimeout(f"bucket sessions: no worker reported within {timeout:g} s")
            for item in ready:
                if item in sentinels:
                    self._died(sentinels[item], running)
                    continue
                key = names[item]
                try:
                    msg = item.recv()
                except (EOFError, OSError):
                    self._died(key, running)
                rank, w = key
                if msg[0] == "started":
                    if rank == 0 and on_event is not None:
                        on_event("started", msg[1])
                    continue
                if msg[0] == "error":
                    self._failed(msg[2], procs, running)
                _, b, result, stats, seconds, (rss, cpu) = msg
                self.report.peak_rss[key] = max(self.report.peak_rss.get(key, 0), rss)
                self.report.cpu_seconds[key] = cpu
                state = running[w]
                state["got"][rank] = (result, stats)
                if len(state["got"]) == world:
                    got = state["got"]
                    results[b] = SessionResult([got[r][0] for r in range(world)], [got[r][1] for r in range(world)],
                                               w, time.monotonic() - state["start"])
                    del running[w]
                    if on_event is not None:
                        on_event("done", b)
                    assign(w)
                deadline = time.monotonic() + timeout
        return results

    def _died(self, key: tuple[int, int], running: dict) -> None:
        rank, w = key
        where = f" during bucket {running[w]['bucket']}" if w in running else ""
        raise PartyUnavailable(f"worker {w} of party {rank} ended{where}: the job is aborted, nothing was revealed "
                               "beyond the buckets' flags already returned to their banks", peer=rank)

    def _failed(self, exc: BaseException, procs: dict, running: dict) -> None:
        # a peer's PartyUnavailable is usually the consequence of a worker that died: name that one
        if isinstance(exc, PartyUnavailable):
            dead = wait([p.sentinel for p in procs.values()], timeout=0.5)
            for key, p in procs.items():
                if p.sentinel in dead and p.exitcode not in (0, None):
                    self._died(key, running)
        raise exc


# ----- the bucketed run ---------------------------------------------------------------------
def bucketed_analyses() -> dict:
    """{analysis name: ``smpc.buckets.BucketedAnalysis``} of the analyses with a bucketed form.

    >>> sorted(bucketed_analyses())
    ['multi_lending']
    """
    from smpc.analyses.fraud import MULTI_LENDING_BUCKETED

    return {"multi_lending": MULTI_LENDING_BUCKETED}


def run_bucketed(name: str, tables: Mapping, params: Mapping, *, workers: int = 1, buckets: int | None = None,
                 engine: Engine | None = None, ring: int | None = None, timeout: float = DEFAULT_TIMEOUT,
                 result_ranks: Sequence[int] | None = None, progress: Callable[[float, str], None] | None = None,
                 on_event: Callable[[str, int], None] | None = None) -> tuple[dict, dict]:
    """(result, cost) of analysis ``name`` over local ``tables`` ({bank: DataFrame}) as
    ``Analysis.run_local`` returns them, with its join split into ``buckets`` sessions run on
    ``workers`` worker processes per party (``ProcessEngine``; ``engine`` overrides).
    ``progress(fraction, stage)`` hears every finished bucket; ``on_event("started" or
    "done", bucket)`` every bucket's start and end.

    ``buckets`` defaults to ``smpc.buckets.choose_buckets(largest bank's rows, workers)``;
    with one bucket, or for an analysis without a bucketed form, this is ``run_local``: the
    single session, unchanged. Cost adds "buckets", "workers", "sessions" (rounds, bytes and
    padded rows per bucket, and the worker it ran on), "merge" (the merge session),
    "phase_seconds" (wall time of the banks' preparation, the sessions and the merge),
    "peak_rss_per_worker" and "cpu_seconds_per_worker"; "rounds" is the longest chain a worker ran (its sessions' rounds
    one after another) plus the merge, "bytes" all sessions' bytes.

    >>> import pandas as pd
    >>> t = {b: pd.DataFrame({"id": ["1", "2", b], "bal": [5.0, 1.0, 2.0]}) for b in ("bank_a", "bank_b")}
    >>> p = dict(id="id", balance="bal", balance_threshold=9.0, min_lenders=2)
    >>> result, cost = run_bucketed("multi_lending", t, p, buckets=2, engine=InProcessEngine())
    >>> result["flagged_count"], result["by_bank"]["bank_a"], cost["buckets"]
    (2, {'flagged_ids': ['1', '2']}, 2)
    """
    from smpc.analyses import get
    from smpc.analyses.registry import COMPUTE_RANKS, bank_layout, merge_by_bank
    from smpc.buckets import choose_buckets

    if workers < 1:
        raise InputError(f"{name}: workers must be at least 1, got {workers}")
    analysis = get(name)
    spec = bucketed_analyses().get(analysis.name)
    rows = max((len(t) for t in tables.values()), default=0)
    k = choose_buckets(rows, workers) if buckets is None else int(buckets)
    if k < 1:
        raise InputError(f"{name}: buckets must be at least 1, got {k}")
    if spec is None and k > 1 and buckets is not None:
        raise InputError(f"{name} does not join rows, so it has no bucket sessions: run it without --buckets")
    if spec is None or k == 1:
        result, cost = analysis.run_local(tables, params, ring=ring, timeout=timeout, result_ranks=result_ranks,
                                          progress=progress)
        return result, {**cost, "buckets": 1, "workers": 1}
    banks = list(tables)
    if not banks:
        raise InputError(f"{name}: no input tables")
    owners, names, extra = bank_layout(banks)
    world = len(names)
    if result_ranks is None:
        result_ranks = sorted(set(COMPUTE_RANKS) | set(owners))
    clock = time.monotonic()
    prepared = {}
    for i, (rank, bank) in enumerate(zip(owners, banks, strict=True)):
        prepared[rank] = spec.prepare(tables[bank], bank, i, len(owners), k, **params)
    public = spec.public(len(owners), **params)
    sessions = []
    for b in range(k):
        per_rank = {}
        for rank in range(world):
            keys = values = None
            if rank in prepared:
                keys, values = prepared[rank][1].keys[b], prepared[rank][1].values[b]
            per_rank[rank] = {"owners": owners, "keys": keys, "values": values, **public}
        sessions.append(per_rank)
    engine = engine or (InProcessEngine() if workers == 1 else ProcessEngine(workers))
    done = [0]

    def events(kind: str, b: int) -> None:
        if on_event is not None:
            on_event(kind, b)
        if progress is not None and kind == "done":
            done[0] += 1
            progress(0.05 + 0.85 * done[0] / k, f"bucket {b + 1} of {k} done ({done[0]} of {k})")

    prepare_seconds, clock = time.monotonic() - clock, time.monotonic()
    if progress is not None:
        progress(0.05, f"{k} buckets on {engine.workers} worker(s) per party")
    outcome = engine.run(spec.session, sessions, world=world, ring=ring or analysis.ring, party_names=names,
                         result_ranks=result_ranks, timeout=timeout, on_event=events)
    sessions_seconds, clock = time.monotonic() - clock, time.monotonic()
    network = InProcessNetwork(world)
    merged = run_parties(
        lambda ctx: (spec.merge(ctx, owners, [s.results[ctx.rank]["shared"] for s in outcome]
                                if ctx.is_compute else None, **params), ctx.comm_stats()),
        world, lambda rank: PrefixedTransport(network.endpoint(rank), "merge/"), ring=ring or analysis.ring,
        timeout=timeout, party_names=names, result_ranks=result_ranks)
    merge_seconds = time.monotonic() - clock
    results = [None] * world
    for rank, bank in zip(owners, banks, strict=True):
        opened = merged[rank][0]
        if opened is not None:
            ids, bb = prepared[rank]
            own = [s.results[rank]["own"] for s in outcome]
            results[rank] = spec.finish(ids, bb, own, opened, bank, **params)
    result = next((r for r in results if r is not None), None)
    if result is None:
        raise SmpcError(f"{name}: no rank received a result")
    if progress is not None:
        progress(1.0, "done")
    per_worker: dict[int, int] = {}
    for s in outcome:
        per_worker[s.worker] = per_worker.get(s.worker, 0) + max(st["rounds"] for st in s.stats)
    merge_stats = [m[1] for m in merged]
    merge_rounds = max(st["rounds"] for st in merge_stats)
    bytes_per_party = {names[r]: sum(s.stats[r]["bytes_sent"] for s in outcome) + merge_stats[r]["bytes_sent"]
                       for r in range(world)}
    cost = {
        "rounds": max(per_worker.values()) + merge_rounds,
        "bytes": sum(bytes_per_party.values()),
        "bytes_per_party": bytes_per_party,
        "buckets": k,
        "workers": engine.workers,
        "sessions": [{"rounds": max(st["rounds"] for st in s.stats), "bytes": sum(st["bytes_sent"] for st in s.stats),
                      "rows": sum(len(p[1].keys[b]) for p in prepared.values()), "worker": s.worker,
                      "seconds": s.seconds} for b, s in enumerate(outcome)],
        "merge": {"rounds": merge_rounds, "bytes": sum(st["bytes_sent"] for st in merge_stats)},
        "phase_seconds": {"prepare": prepare_seconds, "sessions": sessions_seconds, "merge": merge_seconds},
        "peak_rss_per_worker": {f"{names[r]}/{w}": v for (r, w), v in sorted(engine.report.peak_rss.items())},
        "cpu_seconds_per_worker": {f"{names[r]}/{w}": v for (r, w), v in sorted(engine.report.cpu_seconds.items())},
    }
    return merge_by_bank(result, results), cost


__all__ = [
    "Engine",
    "EngineReport",
    "InProcessEngine",
    "ProcessEngine",
    "SessionResult",
    "bucketed_analyses",
    "run_bucketed",
]
