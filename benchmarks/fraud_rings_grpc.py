"""The fraud-ring analyses end to end over gRPC (mutual TLS on loopback), one process per bank.

    python benchmarks/fraud_rings_grpc.py --rows 100000 [--reps 3] [--warmup 1] [--threads 1]
        [--analyses shared_attribute_links,...]

Three banks hold ``smpc.datasets`` synthetic applications (shared_attribute_links on phone,
velocity for bank_a) or transfers (mule_fan_in, and ``mule_fan_in:window`` with a sliding
window of 2 days), ``--rows`` rows each; each bank is one of the three compute parties
(``smpc_compare.grpc_parties``). Per analysis: ``--warmup``
untimed runs, then ``--reps`` timed runs (a run's time is the slowest party's, from a
barrier to its result); printed as JSON: median seconds, bytes sent and rounds per party,
peak RSS per party, CPU seconds per party (wall times on a loaded machine overstate the
protocol's), the load average before and after, and whether the result equals the
plaintext twin. Each party process runs ``--threads`` torch intra-op threads (default 1, as
``smpc bench``: three parties on two cores with two threads each spend most of their time
at torch's thread barriers). ``stages`` gives the last timed run's wall and CPU seconds per
stage on party 0: "prepare" (the bank's checks, merging and hashing, up to the group-by),
then the group-by's own stages (``smpc.grouping``), then "finish" (the result dict).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

PARAMS = {
    "shared_attribute_links": {"attribute": "phone", "id": "customer_id", "min_ids": 5, "min_banks": 2},
    "velocity": {"requester": "bank_a", "id": "customer_id", "time": "date", "window_days": 3},
    "mule_fan_in": {"receiver": "receiver", "receiver_bank": "receiver_bank", "sender": "sender",
                    "victim": "victim", "min_senders": 3},
    "mule_fan_in:window": {"receiver": "receiver", "receiver_bank": "receiver_bank", "sender": "sender",
                           "victim": "victim", "min_senders": 3, "time": "date", "window_days": 2},
}


def analysis(name: str) -> str:
    """The catalogue name of a benchmark entry ("mule_fan_in:window" runs mule_fan_in)."""
    return name.split(":")[0]


def tables_for(name: str, rows: int, seed: int):
    from smpc import datasets

    if analysis(name) == "mule_fan_in":
        return datasets.synthetic_transfers(3, rows, seed=seed)[0]
    return datasets.synthetic_applications(3, rows, seed=seed)[0]


class StageClock:
    """Wall and CPU seconds between the stage marks of ``smpc.grouping``'s meter (a private
    class, wrapped here for timing only: the rounds and bytes it counts are unchanged)."""

    def __init__(self):
        from smpc import grouping

        self.times: dict[str, tuple[float, float]] = {}
        self._last = (0.0, 0.0)
        clock = self
        meter = grouping._Meter
        init, mark = meter.__init__, meter.mark

        def timed_init(self, ctx):
            clock.lap("prepare")
            init(self, ctx)

        def timed_mark(self, stage):
            clock.lap(stage)
            mark(self, stage)

        meter.__init__, meter.mark = timed_init, timed_mark

    def start(self) -> None:
        self.times = {}
        self._last = (time.perf_counter(), time.process_time())

    def lap(self, stage: str) -> None:
        now = (time.perf_counter(), time.process_time())
        wall, cpu = self.times.get(stage, (0.0, 0.0))
        self.times[stage] = (round(wall + now[0] - self._last[0], 2), round(cpu + now[1] - self._last[1], 2))
        self._last = now


def party(rank: int, conn, certs: str, analyses: list[str], rows: int, seed: int, reps: int, warmup: int,
          threads: int) -> None:
    from smpc_compare.procs import peak_rss_bytes, reset_peak_rss, set_threads

    set_threads(threads)
    import torch
    from smpc_compare.grpc_parties import NAMES, PartyNode

    from smpc import analyses as catalogue
    from smpc.context import Context

    clock = StageClock()
    node = PartyNode(rank, Path(certs))
    conn.send(node.port)
    node.connect(conn.recv())
    out = {}
    for name in analyses:
        table = tables_for(name, rows, seed)[NAMES[rank]]
        fn = catalogue.get(analysis(name)).fn
        runs = []
        for rep in range(warmup + reps):
            transport = node.open_job(f"{name}-{rep}")
            ctx = Context(rank, 3, transport, ring=64, timeout=600, party_names=NAMES, result_ranks=[0, 1, 2])
            others = [p for p in range(3) if p != rank]
            ctx.exchange("barrier", sends={p: torch.zeros(1, dtype=torch.int64) for p in others}, recv_from=others)
            ctx.reset_comm_stats()
            reset_peak_rss()
            t0, c0 = time.perf_counter(), time.process_time()
            clock.start()
            result = fn(ctx, table, [0, 1, 2], **PARAMS[name])
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            clock.lap("finish")
            stats = ctx.comm_stats()
            node.close_job(transport)
            runs.append({"seconds": seconds, "cpu_seconds": cpu, "bytes_sent": stats["bytes_sent"],
                         "rounds": stats["rounds"], "peak_rss": peak_rss_bytes(), "result": result,
                         "stages": dict(clock.times)})
        out[name] = runs[warmup:]
    conn.send(out)
    node.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=1e5)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per party process (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--analyses", default=",".join(PARAMS))
    args = parser.parse_args(argv)
    from smpc_compare.grpc_parties import make_certs

    from smpc import analyses as catalogue

    rows = int(args.rows)
    names = args.analyses.split(",")
    load_before = [round(x, 1) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certs(Path(tmp))
        ctx = mp.get_context("spawn")
        pipes, procs = [], []
        for rank in range(3):
            here, there = ctx.Pipe()
            p = ctx.Process(target=party, args=(rank, there, str(certs), names, rows, args.seed, args.reps,
                                                        args.warmup, args.threads))
            p.start()
            pipes.append(here)
            procs.append(p)
        ports = [c.recv() for c in pipes]
        for rank, c in enumerate(pipes):
            c.send({peer: f"127.0.0.1:{ports[peer]}" for peer in range(3) if peer != rank})
        results = [c.recv() for c in pipes]
        for p in procs:
            p.join()
    report = {"rows_per_bank": rows, "banks": 3, "reps": args.reps, "warmup": args.warmup,
              "torch_threads_per_party": args.threads, "cpus": os.cpu_count(),
              "load_average_before": load_before, "load_average": [round(x, 1) for x in os.getloadavg()],
              "analyses": {}}
    for name in names:
        per_party = [r[name] for r in results]
        seconds = [max(p[k]["seconds"] for p in per_party) for k in range(args.reps)]
        got = [p[-1]["result"] for p in per_party]
        plain = catalogue.get(analysis(name)).run_plaintext(tables_for(name, rows, args.seed), **PARAMS[name])
        if "by_bank" in plain:
            merged = {**got[0], "by_bank": {b: v for g in got for b, v in g["by_bank"].items()}}
        else:
            merged = got[0]
        report["analyses"][name] = {
            "median_s": statistics.median(seconds), "seconds": seconds,
            "cpu_s_per_party": [round(p[-1]["cpu_seconds"], 2) for p in per_party],
            "bytes_sent_per_party": [p[-1]["bytes_sent"] for p in per_party],
            "rounds_per_party": [p[-1]["rounds"] for p in per_party],
            "peak_rss_mb_per_party": [round(p[-1]["peak_rss"] / 2**20) for p in per_party],
            "equals_plaintext_twin": merged == plain,
            "stages_party0": per_party[0][-1]["stages"],
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
