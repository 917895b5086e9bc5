"""multi_lending as K bucket sessions on worker processes vs one session, end to end.

    python benchmarks/bucketed_join.py --rows 1000000 --workers 2 [--buckets K] [--no-baseline]

Three banks hold the ``smpc bench`` multi_lending books (``smpc_compare.workload.lending_tables``:
``--rows`` loans each). Two runs, one after the other on the same machine:

- baseline: the single session (``multi_lending``) with every party one worker process
  (``smpc.workers.ProcessEngine(workers=1)``, pipes between the processes);
- bucketed: ``smpc.workers.run_bucketed`` with ``--workers`` worker processes per party and
  ``--buckets`` sessions (default ``smpc.buckets.choose_buckets``).

Printed as JSON: wall seconds (bank-side preparation included), CPU seconds per worker, of
this driver process (the bucketed run's bank-side preparation and merge) and in all, bytes
sent per party, rounds (the longest chain of sessions on one worker plus the merge), every
session's rounds, bytes and padded rows, peak RSS per worker, the load average
before and after, and whether the result equals ``multi_lending_plain``'s. On a machine
shared with other work the wall times overstate the protocol's: read them with the CPU
seconds and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def baseline(tables: dict, params: dict, threads: int, timeout: float) -> dict:
    from smpc.analyses.fraud import merge_bank_results, multi_lending
    from smpc.analyses.registry import COMPUTE_RANKS, bank_layout
    from smpc.workers import ProcessEngine

    banks = list(tables)
    owners, names, _ = bank_layout(banks)
    engine = ProcessEngine(workers=1, threads=threads)
    session = {rank: {"table": tables[bank], "owners": owners, **params} for rank, bank in zip(owners, banks,
                                                                                                 strict=True)}
    start = time.monotonic()
    (out,) = engine.run(multi_lending, [session], world=len(names), ring=64, party_names=names,
                        result_ranks=sorted(set(COMPUTE_RANKS) | set(owners)), timeout=timeout)
    seconds = time.monotonic() - start
    return {
        "seconds": seconds,
        "result": merge_bank_results(out.results),
        "rounds": max(s["rounds"] for s in out.stats),
        "bytes_per_party": {names[r]: s["bytes_sent"] for r, s in enumerate(out.stats)},
        "peak_rss_per_worker": {f"{names[r]}/{w}": v for (r, w), v in engine.report.peak_rss.items()},
        "cpu_seconds_per_worker": {f"{names[r]}/{w}": v for (r, w), v in engine.report.cpu_seconds.items()},
    }


def bucketed(tables: dict, params: dict, workers: int, buckets: int | None, threads: int, timeout: float) -> dict:
    from smpc.workers import ProcessEngine, run_bucketed

    engine = ProcessEngine(workers=workers, threads=threads)
    start = time.monotonic()
    result, cost = run_bucketed("multi_lending", tables, params, workers=workers, buckets=buckets, engine=engine,
                                timeout=timeout)
    return {"seconds": time.monotonic() - start, "result": result, **cost}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=float, default=1e5, help="loans per bank (default 1e5)")
    p.add_argument("--workers", type=int, default=2, help="worker processes per party (default 2)")
    p.add_argument("--buckets", type=int, default=None, help="bucket sessions (default: choose_buckets)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a receive may wait")
    p.add_argument("--no-baseline", action="store_true", help="skip the single-session run")
    args = p.parse_args(argv)

    from smpc_compare import workload

    from smpc.analyses.fraud import multi_lending_plain

    rows = int(args.rows)
    tables = workload.lending_tables(args.seed, rows)
    params = workload.lending_params()
    plain = multi_lending_plain(tables, **params)
    out = {"rows_per_bank": rows, "banks": len(tables), "cpus": os.cpu_count(), "workers": args.workers,
           "threads_per_worker": args.threads, "load_average_start": list(os.getloadavg()), "runs": {}}
    from smpc.workers import ProcessEngine

    ProcessEngine().warm_up()  # the fork server's start and imports are no run's
    runs = [] if args.no_baseline else ["baseline"]
    runs.append("bucketed")
    for name in runs:
        load = list(os.getloadavg())
        driver = resource.getrusage(resource.RUSAGE_SELF)
        if name == "baseline":
            rec = baseline(tables, params, args.threads, args.timeout)
        else:
            rec = bucketed(tables, params, args.workers, args.buckets, args.threads, args.timeout)
        after = resource.getrusage(resource.RUSAGE_SELF)
        # this process is every bank's side (checks, hashing, buckets) and the merge
        rec["driver_cpu_seconds"] = after.ru_utime + after.ru_stime - driver.ru_utime - driver.ru_stime
        result = rec.pop("result")
        rec["equals_plaintext_twin"] = result == plain
        rec["flagged_count"] = result["flagged_count"]
        rec["cpu_seconds"] = sum(rec["cpu_seconds_per_worker"].values()) + rec["driver_cpu_seconds"]
        rec["load_average_before"], rec["load_average_after"] = load, list(os.getloadavg())
        out["runs"][name] = rec
        print(f"{name}: {rec['seconds']:.1f} s, cpu {rec['cpu_seconds']:.1f} s, equal {rec['equals_plaintext_twin']}",
              file=sys.stderr)
    if "baseline" in out["runs"]:
        out["speedup"] = out["runs"]["baseline"]["seconds"] / out["runs"]["bucketed"]["seconds"]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
