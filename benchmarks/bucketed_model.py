"""A first scaling model of bucketed multi_lending, from one measured run of
``benchmarks/bucketed_join.py`` (its JSON on stdin or as the argument).

    python benchmarks/bucketed_model.py /tmp/bucketed-1e6.json

From the measured bucket sessions it takes, per party: CPU seconds per padded row (workers'
CPU over the rows they joined), bytes per row, and the quicksort's rounds per log2 of the
rows (rounds outside the sort: 34 + ceil(log2 N), asserted in tests/test_buckets.py). A
session of N padded rows then costs, per party,

    t(N) = cpu_per_row * N * log2(N) / log2(N0)          (computation, one core per worker)
         + W * bytes_per_row * N * log2(N) / log2(N0) / link   (the party's link, shared by W workers)
         + rounds(N) * RTT                                (latency, not overlapped)

and a job of n rows per bank on W workers per party takes K/W such sessions one after another
(K = ``choose_buckets(n, W)``, N = banks * ``pad_rows(n, K)``, n counting distinct
customers: a bank's loans are merged per customer first), plus the merge (1 round).
Nothing overlaps in the model (an upper estimate). Its check is the measured run itself,
replayed with the machine's cores shared by every worker (``--cores``) and no network.
Printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from smpc.buckets import choose_buckets, pad_rows


def fit(run: dict) -> dict:
    sessions = run["sessions"]
    n0 = sum(s["rows"] for s in sessions) / len(sessions)
    workers = run["cpu_seconds_per_worker"]
    parties = len(run["bytes_per_party"])
    cpu = sum(workers.values()) / parties  # one party's workers' CPU
    rows = sum(s["rows"] for s in sessions)
    sort_rounds = [s["rounds"] - 34 - math.ceil(math.log2(s["rows"])) for s in sessions]
    return {
        "n0": n0,
        "cpu_per_row": cpu / rows,
        "bytes_per_row": sum(s["bytes"] for s in sessions) / parties / rows,
        "sort_rounds_per_log2": sum(sort_rounds) / len(sort_rounds) / math.log2(n0),
    }


def session(model: dict, n: float, workers: int, link_bps: float, rtt: float, core_share: float = 1.0) -> dict:
    scale = math.log2(n) / math.log2(model["n0"])
    cpu = model["cpu_per_row"] * n * scale * core_share
    sent = model["bytes_per_row"] * n * scale
    rounds = 34 + math.ceil(math.log2(n)) + model["sort_rounds_per_log2"] * math.log2(n)
    wire = workers * sent * 8 / link_bps if link_bps else 0.0
    return {"seconds": cpu + wire + rounds * rtt, "bytes": sent, "rounds": rounds}


def job(model: dict, rows: int, banks: int, workers: int, link_bps: float, rtt: float,
        core_share: float = 1.0) -> dict:
    k = choose_buckets(rows, workers)
    n = banks * pad_rows(rows, k)
    one = session(model, n, workers, link_bps, rtt, core_share)
    chain = -(-k // workers)
    return {"buckets": k, "rows": n, "seconds": chain * one["seconds"] + rtt,
            "bytes_per_party": k * one["bytes"], "rounds": chain * one["rounds"] + 1}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", nargs="?", help="bucketed_join.py's output (default: stdin)")
    p.add_argument("--cores", type=float, default=2.0, help="cores of the measured machine (default 2)")
    args = p.parse_args(argv)
    text = open(args.json).read() if args.json else sys.stdin.read()
    data = json.loads(text[text.index("{"):])
    run = data["runs"]["bucketed"]
    model = fit(run)
    banks = data["banks"]
    w = data["workers"]
    share = banks * w / args.cores  # every party's workers on the measured machine's cores
    k = run["buckets"]
    one = session(model, model["n0"], w, 0.0, 0.0, share)
    chain = -(-k // w)
    check = {"seconds": chain * one["seconds"], "rounds": chain * one["rounds"] + 1,
             "bytes_per_party": k * one["bytes"]}
    print(f"fit: {model}")
    print(f"check, the measured run replayed ({w} workers per party on {args.cores:g} cores, no network): "
          f"model {check['seconds']:.0f} s of sessions vs measured {run['phase_seconds']['sessions']:.0f} s; "
          f"rounds {check['rounds']:.0f} vs {run['rounds']}; bytes per party {check['bytes_per_party'] / 1e9:.2f} GB "
          f"vs {max(run['bytes_per_party'].values()) / 1e9:.2f} GB")
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
