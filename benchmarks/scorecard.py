"""scorecard as three party processes over gRPC with mutual TLS: 3 banks x 1e4 rows x 10 features.

    python benchmarks/scorecard.py                  # 3 x 1e4 rows, 10 features, 3 timed runs
    python benchmarks/scorecard.py --rows 2e3 --reps 1   # quick

Each party is an OS process with the production transport (``smpc_compare.grpc_parties``:
``GrpcTransport`` over mutual TLS on loopback, without the job service's policy and audit).
Every bank generates its own loan book from a seed: 7 numeric features (3 binned at public
cut points, 4 at quantile:5 cut points found by secure selection) and 3 categorical ones,
and a default flag drawn from a logistic model of them. A run is timed from a barrier to the
end of the analysis on each party (the slowest party's time is the run's); bytes and rounds
are the parties' ``ctx.comm_stats()``; peak RSS is each party's high-water mark during the
run. Prints a JSON line of median seconds over ``--reps``, per-party bytes, rounds and peak RSS,
then one of the check against the plaintext twin (coefficients within 1e-4, standard errors
within 1e-3 relative, every point equal, the AUC exactly that of the opened coefficients'
scores), so a fast wrong answer cannot pass.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

NUMERIC = [f"x{j}" for j in range(7)]
CATEGORICAL = ["grade", "region", "channel"]
KEYS = {"grade": list("ABCDEFG"), "region": ["north", "south", "east", "west", "centre"], "channel": ["web", "branch",
                                                                                                   "broker"]}


def loans(bank: int, rows: int, seed: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng([seed, bank])
    frame = pd.DataFrame({c: rng.normal(size=rows).round(4) for c in NUMERIC})
    for c, keys in KEYS.items():
        frame[c] = rng.choice(keys, size=rows)
    grade = frame["grade"].map({k: i for i, k in enumerate(KEYS["grade"])}).to_numpy()
    linear = -1.2 + frame[NUMERIC].to_numpy() @ np.array([0.5, -0.4, 0.3, 0.1, 0.2, -0.3, 0.25]) + 0.2 * (grade - 3)
    frame["default"] = (rng.random(rows) < 1 / (1 + np.exp(-linear))).astype(int)
    return frame


def params() -> dict:
    out = {"label": "default", "columns": ",".join(NUMERIC + CATEGORICAL), "min_cell_size": 20}
    for c in NUMERIC[:3]:
        out[f"edges.{c}"] = "-1,-0.5,0,0.5,1"
    for c in NUMERIC[3:]:
        out.update({f"bins.{c}": "quantile:5", f"bound.{c}": 10.0, f"decimals.{c}": 4})
    for c, keys in KEYS.items():
        out[f"categories.{c}"] = ",".join(keys)
    return out


def party(rank: int, conn, certs: str) -> None:
    from smpc_compare.grpc_parties import NAMES, PartyNode
    from smpc_compare.procs import die_with_parent, peak_rss_bytes, reset_peak_rss, set_threads

    die_with_parent()
    set_threads(1)
    import torch

    from smpc import analyses
    from smpc.context import Context

    card = analyses.get("scorecard")
    node = PartyNode(rank, Path(certs))
    conn.send(node.port)
    node.connect(conn.recv())
    while True:
        msg = conn.recv()
        if msg is None:
            node.stop()
            return
        job_id, args = msg
        transport = node.open_job(job_id)
        try:
            ctx = Context(rank, 3, transport, ring=128, timeout=600.0, party_names=NAMES)
            others = [p for p in range(3) if p != rank]
            ctx.exchange("barrier", sends={p: torch.zeros(1, dtype=torch.int64) for p in others}, recv_from=others)
            ctx.reset_comm_stats()
            reset_peak_rss()
            table = loans(rank, args["rows"], args["seed"])
            start = time.perf_counter()
            result = card.fn(ctx, table, [0, 1, 2], **card.parse_params(params()))
            seconds = time.perf_counter() - start
            stats = ctx.comm_stats()
            conn.send({"seconds": seconds, "bytes_sent": stats["bytes_sent"], "rounds": stats["rounds"],
                       "peak_rss": peak_rss_bytes(), "result": result})
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which stops the run
            transport.abort(str(exc), type(exc).__name__)
            conn.send({"error": f"{type(exc).__name__}: {exc}"})
        finally:
            node.close_job(transport)


def check(args: dict, result: dict) -> dict:
    """The secure scorecard against its plaintext twin (raises if they differ)."""
    from smpc import analyses

    tables = {f"bank_{r}": loans(r, args["rows"], args["seed"]) for r in range(3)}
    plain = analyses.get("scorecard").run_plaintext(tables, **params())
    error = max(abs(result["coefficients"][k]["estimate"] - v["estimate"]) for k, v in plain["coefficients"].items())
    se = max(abs(result["coefficients"][k]["std_error"] / v["std_error"] - 1) for k, v in plain["coefficients"].items())
    assert error < 1e-4 and se < 1e-3, (error, se)
    assert result["points"] == plain["points"] and result["base_points"] == plain["base_points"]
    # the secure sort is exact: the AUC of the opened coefficients' scores, recomputed in the clear
    import numpy as np

    from smpc.analyses.discrimination import _plain_sums
    from smpc.analyses.scorecards import _score_units

    features = NUMERIC + CATEGORICAL
    beta = np.array([result["coefficients"][k]["estimate"] for k in ["intercept", *features]])
    pooled = [t for t in tables.values()]
    x = np.vstack([np.column_stack([_woe_of(t[f], result["features"][f]) for f in features]) for t in pooled])
    y = np.concatenate([t["default"].to_numpy() for t in pooled])
    n, p, twice_u, _ = _plain_sums(_score_units(x, beta), y)
    assert result["auc"] == twice_u / (2 * p * (n - p)), (result["auc"], twice_u / (2 * p * (n - p)))
    # against the float64 fit: scores of distinct bin patterns closer than the coefficients'
    # 1e-7 differences may swap, so the AUCs agree to about 1e-8 here, not bit for bit
    return {"iterations": result["iterations"], "auc": result["auc"], "ks": result["ks"],
            "auc_minus_float64_fit_auc": result["auc"] - plain["auc"],
            "max_coefficient_error": error, "max_std_error_rel": se}


def _woe_of(values, feature):
    import numpy as np

    bins = feature["bins"]
    woe = np.array([b["woe"] for b in bins])
    if "categories" in bins[0]:
        where = {k: i for i, b in enumerate(bins) for k in b["categories"]}
        return woe[[where[v] for v in values]]
    return woe[np.searchsorted([b["upper"] for b in bins[:-1]], values.to_numpy(dtype=float), side="right")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=float, default=1e4, help="rows per bank (default 1e4)")
    parser.add_argument("--reps", type=int, default=3, help="timed runs (default 3; median shown)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    from smpc_compare.grpc_parties import make_certs

    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certs(Path(tmp) / "certs")
        pipes, procs = [], []
        for rank in range(3):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=party, args=(rank, theirs, str(certs)), daemon=True)
            proc.start()
            pipes.append(ours)
            procs.append(proc)
        ports = [p.recv() for p in pipes]
        for rank, pipe in enumerate(pipes):
            pipe.send({peer: f"127.0.0.1:{ports[peer]}" for peer in range(rank + 1, 3)})
        job = {"rows": int(args.rows), "seed": args.seed}
        runs = []
        for rep in range(args.reps):
            for pipe in pipes:
                pipe.send((f"scorecard-{rep}", job))
            got = [pipe.recv() for pipe in pipes]
            failed = [g["error"] for g in got if "error" in g]
            if failed:
                raise SystemExit(f"scorecard: {failed[0]}")
            runs.append(got)
        timing = {
            "workload": "scorecard", "rows_per_bank": job["rows"], "features": len(NUMERIC) + len(CATEGORICAL),
            "median_s": statistics.median(max(g["seconds"] for g in run) for run in runs),
            "seconds": [round(max(g["seconds"] for g in run), 3) for run in runs],
            "bytes_sent_per_party": [g["bytes_sent"] for g in runs[-1]],
            "rounds": max(g["rounds"] for g in runs[-1]),
            "peak_rss_mb_per_party": [round(g["peak_rss"] / 2**20, 1) for g in runs[-1]],
        }
        print(json.dumps(timing), flush=True)
        print(json.dumps({"check": check(job, runs[-1][0]["result"])}), flush=True)
        for pipe in pipes:
            pipe.send(None)
        for proc in procs:
            proc.join(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
