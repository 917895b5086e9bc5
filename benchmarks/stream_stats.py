"""Statistics over large bank files read in batches: time and peak RSS per party.

Writes one Parquet file per bank (generated and written in batches, never whole in memory),
then measures, each in a fresh process so that its peak RSS is its own:

- ``party``: what one bank's party does with its rows: the analysis' input check and local
  aggregation over its file (``Analysis.check_input`` on a ``smpc.sources.TableSource``, the
  path the party service takes), per analysis;
- ``whole``: the same on the file read whole by pandas (the path before sources), for
  comparison (skipped with ``--no-whole``);
- ``analyze``: ``smpc analyze ANALYSIS`` end to end over the three files: one process that
  simulates all three parties (so its peak RSS bounds each party's from above).

Peak RSS is what each child process reports as its own VmHWM (Linux) when it is done. Run
from the repository root:

    python benchmarks/stream_stats.py --rows 10000000 --dir /tmp/stream-bench

and the table it prints goes into docs/performance.md. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BANKS = ("bank_a", "bank_b", "bank_c")
GRADES = np.array(["A", "B", "C", "D", "E"])
WRITE_BATCH = 1_000_000

ANALYSES = {
    "describe": {"columns": ["balance", "limit"], "decimals": 2, "bound": 1e9},
    "histogram": {"column": "balance", "edges": [-1e9, -1e6, 0, 1e3, 1e6, 1e9]},
    "default_rate": {"label": "default", "by": "grade"},
}


def write_bank(path: Path, rows: int, seed: int) -> None:
    """``rows`` loans (balance and limit with cents up to 1e9, 0/1 default, grade A-E),
    written one batch of ``WRITE_BATCH`` rows at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    schema = pa.schema([("balance", pa.float64()), ("limit", pa.float64()), ("default", pa.int64()),
                        ("grade", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        done = 0
        while done < rows:
            n = min(WRITE_BATCH, rows - done)
            balance = rng.integers(-100_000_000_000, 100_000_000_000, n) / 100  # cents, |x| <= 1e9
            limit = rng.integers(0, 50_000_000_000, n) / 100
            batch = pa.record_batch([pa.array(balance), pa.array(limit), pa.array(rng.integers(0, 2, n)),
                                     pa.array(GRADES[rng.integers(0, len(GRADES), n)])], schema=schema)
            writer.write_batch(batch)
            done += n


def measure(cmd: list[str]) -> dict:
    """Run ``cmd``; its wall time, exit code, peak RSS (bytes) and last stdout line."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    own = {}  # the child's last JSON line: its own VmHWM and, for a party, its time reading rows
    lines = [line for line in out.strip().splitlines() if line.startswith("{")]
    if lines:
        own = json.loads(lines[-1])
    return {"process_s": round(elapsed, 2), "rows_s": round(own["seconds"], 2) if "seconds" in own else None,
            "rc": proc.returncode, "peak_rss_bytes": own.get("peak_rss_bytes"),
            "stderr": err.strip().splitlines()[-1:] if proc.returncode else []}


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def party_main(path: str, bank: str, analysis_name: str, whole: bool) -> None:
    """One bank's check and local aggregation of its file, then its own peak RSS."""
    from smpc import analyses

    analysis = analyses.get(analysis_name)
    params = analysis.parse_params(ANALYSES[analysis_name])
    if whole:
        import pandas as pd

        table = pd.read_parquet(path, columns=analysis.columns(params))
    else:
        from smpc.sources import TableSource

        table = TableSource.of_file(Path(path), bank)
    start = time.perf_counter()
    analysis.check_input(table, bank, params)
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_bytes": peak_rss_bytes()}))


def analyze_main(argv: list[str]) -> None:
    """``smpc analyze`` in this process, then its peak RSS."""
    from smpc.cli import main

    code = main(["analyze", *argv])
    print(json.dumps({"rc": code, "peak_rss_bytes": peak_rss_bytes()}))
    sys.exit(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per bank")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/smpc-stream-bench"))
    parser.add_argument("--analyses", default="describe,histogram,default_rate")
    parser.add_argument("--no-whole", action="store_true", help="skip the whole-table (pandas) comparison")
    parser.add_argument("--no-analyze", action="store_true", help="skip the end-to-end smpc analyze runs")
    parser.add_argument("--party", nargs=4, metavar=("PATH", "BANK", "ANALYSIS", "WHOLE"), help=argparse.SUPPRESS)
    parser.add_argument("--analyze", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.party:
        party_main(*args.party[:3], args.party[3] == "1")
        return
    if args.analyze is not None:
        analyze_main(args.analyze)
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for i, bank in enumerate(BANKS):
        path = args.dir / f"{bank}-{args.rows}.parquet"
        if not path.exists():
            start = time.perf_counter()
            write_bank(path, args.rows, seed=i)
            print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - start:.1f} s",
                  file=sys.stderr)
        files[bank] = path
    me = [sys.executable, str(Path(__file__).resolve())]
    results = []
    for name in args.analyses.split(","):
        modes = ["party"] + ([] if args.no_whole else ["whole"])
        for mode in modes:
            r = measure([*me, "--party", str(files["bank_a"]), "bank_a", name, "1" if mode == "whole" else "0"])
            results.append({"analysis": name, "mode": mode, "rows_per_bank": args.rows, **r})
            print(json.dumps(results[-1]), flush=True)
        if not args.no_analyze:
            params = []
            for key, value in ANALYSES[name].items():
                params += ["--param", f"{key}={','.join(map(str, value)) if isinstance(value, list) else value}"]
            data = [a for bank, path in files.items() for a in ("--data", f"{bank}={path}")]
            r = measure([*me, "--analyze", name, *data, *params, "--json"])
            results.append({"analysis": name, "mode": "analyze (3 parties, 1 process)", "rows_per_bank": args.rows,
                            **r})
            print(json.dumps(results[-1]), flush=True)
    print("\n| analysis | what | rows per bank | check + aggregation (s) | process (s) | peak RSS (MiB) |\n"
          "|---|---|---:|---:|---:|---:|")
    for r in results:
        rss = "failed" if r["rc"] else f"{r['peak_rss_bytes'] / 2**20:.0f}"
        rows_s = "" if r["rows_s"] is None else r["rows_s"]
        print(f"| {r['analysis']} | {r['mode']} | {r['rows_per_bank']:.0e} | {rows_s} | {r['process_s']} | {rss} |")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
