"""The fraud-ring analyses end to end over gRPC (mutual TLS on loopback), one process per bank.

    python benchmarks/fraud_rings_grpc.py --rows 100000 [--reps 3] [--analyses shared_attribute_links,...]

Three banks hold ``smpc.datasets`` synthetic applications (shared_attribute_links on phone,
velocity for bank_a) or transfers (mule_fan_in, and ``mule_fan_in:window`` with a sliding
window of 2 days), ``--rows`` rows each; each bank is one of
the three compute parties (``smpc_compare.grpc_parties``). Per analysis: a warm-up run, then
``--reps`` timed runs (a run's time is the slowest party's, from a barrier to its result);
printed as JSON: median seconds, bytes sent and rounds per party, peak RSS per party, and
CPU seconds per party (wall times on a loaded machine overstate the protocol's), and whether
the result equals the plaintext twin.
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


def party(rank: int, conn, certs: str, analyses: list[str], rows: int, seed: int, reps: int) -> None:
    import torch
    from smpc_compare.grpc_parties import NAMES, PartyNode
    from smpc_compare.procs import peak_rss_bytes, reset_peak_rss

    from smpc import analyses as catalogue
    from smpc.context import Context

    node = PartyNode(rank, Path(certs))
    conn.send(node.port)
    node.connect(conn.recv())
    out = {}
    for name in analyses:
        table = tables_for(name, rows, seed)[NAMES[rank]]
        fn = catalogue.get(analysis(name)).fn
        runs = []
        for rep in range(reps + 1):
            transport = node.open_job(f"{name}-{rep}")
            ctx = Context(rank, 3, transport, ring=64, timeout=600, party_names=NAMES, result_ranks=[0, 1, 2])
            others = [p for p in range(3) if p != rank]
            ctx.exchange("barrier", sends={p: torch.zeros(1, dtype=torch.int64) for p in others}, recv_from=others)
            ctx.reset_comm_stats()
            reset_peak_rss()
            t0, c0 = time.perf_counter(), time.process_time()
            result = fn(ctx, table, [0, 1, 2], **PARAMS[name])
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            stats = ctx.comm_stats()
            node.close_job(transport)
            runs.append({"seconds": seconds, "cpu_seconds": cpu, "bytes_sent": stats["bytes_sent"],
                         "rounds": stats["rounds"], "peak_rss": peak_rss_bytes(), "result": result})
        out[name] = runs[1:]
    conn.send(out)
    node.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=1e5)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--analyses", default=",".join(PARAMS))
    args = parser.parse_args(argv)
    from smpc_compare.grpc_parties import make_certs

    from smpc import analyses as catalogue

    rows = int(args.rows)
    names = args.analyses.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certs(Path(tmp))
        ctx = mp.get_context("spawn")
        pipes, procs = [], []
        for rank in range(3):
            here, there = ctx.Pipe()
            p = ctx.Process(target=party, args=(rank, there, str(certs), names, rows, args.seed, args.reps))
            p.start()
            pipes.append(here)
            procs.append(p)
        ports = [c.recv() for c in pipes]
        for rank, c in enumerate(pipes):
            c.send({peer: f"127.0.0.1:{ports[peer]}" for peer in range(3) if peer != rank})
        results = [c.recv() for c in pipes]
        for p in procs:
            p.join()
    report = {"rows_per_bank": rows, "banks": 3, "reps": args.reps, "cpus": os.cpu_count(),
              "load_average": [round(x, 1) for x in os.getloadavg()], "analyses": {}}
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
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
