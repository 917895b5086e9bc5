"""A scaling model of bucketed multi_lending, fitted on one measured run of
``benchmarks/bucketed_join.py`` and checked against others.

    python benchmarks/bucketed_model.py bucketed-1e6.json                      # fit, table
    python benchmarks/bucketed_model.py bucketed-1e6.json --check bucketed-1e7.json

From the measured bucket sessions it takes, per party: CPU seconds per padded row (workers'
CPU over the rows they joined), bytes per row, and the quicksort's rounds per log2 of the
rows (rounds outside the sort: 34 + ceil(log2 N), asserted in tests/test_buckets.py); from
the driver, the banks' preparation (checks, merging, hashing, bucketing) in seconds per
input row. A session of N padded rows then costs, per party,

    t(N) = cpu_per_row * N * log2(N) / log2(N0) * share   (computation; share = processes per core)
         + W * bytes_per_row * N * log2(N) / log2(N0) / link   (the party's link, shared by W workers)
         + rounds(N) * RTT                                (latency, not overlapped)

and a job of n rows per bank on W workers per party takes the banks' preparation plus
ceil(K / W) such sessions one after another (K = ``choose_buckets(n, W)``, N = banks *
``pad_rows(n, K)``, n counting distinct customers: a bank's loans are merged per customer
first), plus the merge (1 round). Nothing overlaps in the model (an upper estimate).

``--check`` replays another run's structure (its K, workers, padded rows per session and
input rows, all public) on the measured machine (``--cores``, no network) with the costs
fitted on the first run, and prints the prediction next to what that run measured. The
projection table is printed as Markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from smpc.buckets import choose_buckets, pad_rows

OUTSIDE_SORT_ROUNDS = 34


def fit(run: dict, input_rows: int) -> dict:
    """Per-row costs of one measured bucketed run (its JSON's ``runs["bucketed"]``)."""
    sessions = run["sessions"]
    n0 = sum(s["rows"] for s in sessions) / len(sessions)
    workers = run["cpu_seconds_per_worker"]
    parties = len(run["bytes_per_party"])
    cpu = sum(workers.values()) / parties  # one party's workers' CPU
    rows = sum(s["rows"] for s in sessions)
    sort_rounds = [s["rounds"] - OUTSIDE_SORT_ROUNDS - math.ceil(math.log2(s["rows"])) for s in sessions]
    return {
        "n0": n0,
        "cpu_per_row": cpu / rows,
        "bytes_per_row": sum(s["bytes"] for s in sessions) / parties / rows,
        "sort_rounds_per_log2": sum(sort_rounds) / len(sort_rounds) / math.log2(n0),
        "prepare_per_input_row": run["phase_seconds"]["prepare"] / input_rows,
    }


def session(model: dict, n: float, workers: int, link_bps: float, rtt: float, core_share: float = 1.0) -> dict:
    scale = math.log2(n) / math.log2(model["n0"])
    cpu = model["cpu_per_row"] * n * scale * core_share
    sent = model["bytes_per_row"] * n * scale
    rounds = OUTSIDE_SORT_ROUNDS + math.ceil(math.log2(n)) + model["sort_rounds_per_log2"] * math.log2(n)
    wire = workers * sent * 8 / link_bps if link_bps else 0.0
    return {"seconds": cpu + wire + rounds * rtt, "bytes": sent, "rounds": rounds}


def job(model: dict, rows: int, banks: int, workers: int, link_bps: float, rtt: float,
        core_share: float = 1.0) -> dict:
    """A projected job of ``rows`` distinct customers per bank (the banks' preparation runs
    at each bank in parallel, on its own machine: one bank's rows)."""
    k = choose_buckets(rows, workers)
    n = banks * pad_rows(rows, k)
    one = session(model, n, workers, link_bps, rtt, core_share)
    chain = -(-k // workers)
    return {"buckets": k, "rows": n, "seconds": model["prepare_per_input_row"] * rows + chain * one["seconds"] + rtt,
            "bytes_per_party": k * one["bytes"], "rounds": chain * one["rounds"] + 1}


def replay(model: dict, data: dict, cores: float) -> dict:
    """The model's figures for a measured run's structure on ``cores`` cores, no network:
    every bank's preparation in the one driver process, then the sessions, every party's
    workers sharing the cores."""
    run = data["runs"]["bucketed"]
    w, k = data["workers"], run["buckets"]
    share = data["banks"] * w / cores
    one = session(model, sum(s["rows"] for s in run["sessions"]) / len(run["sessions"]), w, 0.0, 0.0, share)
    chain = -(-k // w)
    prepare = model["prepare_per_input_row"] * data["rows_per_bank"] * data["banks"]
    return {"prepare": prepare, "sessions": chain * one["seconds"], "seconds": prepare + chain * one["seconds"],
            "rounds": chain * one["rounds"] + 1, "bytes_per_party": k * one["bytes"]}


def _load(path: str | None) -> dict:
    text = open(path).read() if path else sys.stdin.read()
    return json.loads(text[text.index("{"):])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", nargs="?", help="bucketed_join.py's output to fit on (default: stdin)")
    p.add_argument("--check", action="append", default=[], help="another run's output to predict and compare")
    p.add_argument("--cores", type=float, default=2.0, help="cores of the measured machine (default 2)")
    args = p.parse_args(argv)
    data = _load(args.json)
    model = fit(data["runs"]["bucketed"], data["rows_per_bank"] * data["banks"])
    print(f"fit on {data['rows_per_bank']:.0e} rows per bank: {model}")
    print()
    print("| run | rows per bank | K | prepare | sessions | total | bytes per party | rounds |")
    print("|---|---|---|---|---|---|---|---|")
    for path in [args.json, *args.check]:
        other = _load(path)
        run = other["runs"]["bucketed"]
        pred = replay(model, other, args.cores)
        sent = max(run["bytes_per_party"].values())
        label = "fitted on" if path == args.json else "check"
        print(f"| {label}: model | {other['rows_per_bank']:.0e} | {run['buckets']} | {pred['prepare']:.0f} s | "
              f"{pred['sessions']:.0f} s | {pred['seconds']:.0f} s | {pred['bytes_per_party'] / 1e9:.2f} GB | "
              f"{pred['rounds']:.0f} |")
        print(f"| {label}: measured | {other['rows_per_bank']:.0e} | {run['buckets']} | "
              f"{run['phase_seconds']['prepare']:.0f} s | {run['phase_seconds']['sessions']:.0f} s | "
              f"{run['seconds']:.0f} s | {sent / 1e9:.2f} GB | {run['rounds']} |")
    banks = data["banks"]
    print()
    print("| customers per bank | workers per party | link | K | rows per session | time | bytes per party | rounds |")
    print("|---|---|---|---|---|---|---|---|")
    for rows in (10**7, 10**8):
        for workers in (8, 16, 32):
            for gbit in (1, 10):
                r = job(model, rows, banks, workers, gbit * 1e9, 0.020)
                print(f"| {rows:.0e} | {workers} | {gbit} Gbit/s, 20 ms | {r['buckets']} | {r['rows']:,} | "
                      f"{r['seconds'] / 60:.1f} min | {r['bytes_per_party'] / 1e9:.0f} GB | {r['rounds']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
