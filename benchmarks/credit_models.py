"""auc_ks and the secure logistic fit as three party processes over gRPC with mutual TLS.

    python benchmarks/credit_models.py                      # auc_ks 3 x 1e5 rows, fit 3 x 1e4 x 10
    python benchmarks/credit_models.py --auc-rows 1e4 --fit-rows 2e3 --reps 1   # quick

Each party is an OS process with the production transport (``smpc_compare.grpc_parties``:
``GrpcTransport`` over mutual TLS on loopback, without the job service's policy and audit).
Every bank generates its own rows from a seed, so no rows cross a pipe: auc_ks gets a bureau
score of 300..850 in whole points (heavy ties) and a default flag drawn from it; the fit gets
10 features (standard normal, a 0/1 flag, a balance up to 1e6 with its declared bound) and a
label drawn from a logistic model. A run is timed from a barrier to the end of the analysis
on each party (the slowest party's time is the run's); bytes and rounds are the parties'
``ctx.comm_stats()``; peak RSS is each party's high-water mark during the run (Linux
``clear_refs``). Prints one JSON line per workload: median seconds over ``--reps``, per-party
bytes, rounds and peak RSS, and the result (checked against the plaintext twin / a float64
Newton fit, so a fast wrong answer cannot pass).
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

FIT_FEATURES = 10


def auc_table(bank: int, rows: int, seed: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng([seed, bank])
    score = rng.integers(300, 851, rows)
    flag = (rng.random(rows) < 1 / (1 + np.exp((680 - score) / 60))).astype(int)  # higher: riskier
    return pd.DataFrame({"score": score, "default": flag})


def fit_rows(bank: int, rows: int, seed: int):
    """(features (rows, 10), bounds (10,), labels (rows,))."""
    import numpy as np

    rng = np.random.default_rng([seed, 100 + bank])
    x = rng.normal(size=(rows, FIT_FEATURES))
    x[:, 8] = (rng.random(rows) < 0.3).astype(float)
    x[:, 9] = np.minimum(np.exp(rng.normal(10, 1.0, rows)), 1e6).round(2)
    bounds = np.array([8.0] * 8 + [1.0, 1e6])
    beta = np.array([0.5, -0.4, 0.3, 0.0, 0.2, -0.1, 0.25, -0.3, 0.7, 2e-5])
    lin = -1.0 + x @ beta
    y = (rng.random(rows) < 1 / (1 + np.exp(-lin))).astype(float)
    return x, bounds, y


def _run_auc(ctx, rank, args):
    from smpc.analyses.discrimination import auc_ks

    table = auc_table(rank, args["rows"], args["seed"])
    return auc_ks(ctx, table, [0, 1, 2], score="score", label="default", score_decimals=0, score_bound=1000.0)


def _run_fit(ctx, rank, args):
    from smpc.stats.logistic import fit_logistic
    from smpc.stats.rows import share_rows

    x, bounds, y = fit_rows(rank, args["rows"], args["seed"])
    features, counts = share_rows(ctx, [0, 1, 2], x / bounds, width=FIT_FEATURES, bound=1.0, frac_bits=30,
                                  name="features")
    label, _ = share_rows(ctx, [0, 1, 2], y, width=1, bound=1.0, frac_bits=0, name="label")
    fit = fit_logistic(features, label.reshape(-1), scale=1.0 / bounds, rows=sum(counts))
    return {"coefficients": fit.coefficients.tolist(), "std_errors": fit.std_errors.tolist(),
            "iterations": fit.iterations}


WORKLOADS = {"auc_ks": (_run_auc, 64), "logistic": (_run_fit, 128)}


def party(rank: int, conn, certs: str) -> None:
    from smpc_compare.grpc_parties import NAMES, PartyNode
    from smpc_compare.procs import die_with_parent, peak_rss_bytes, reset_peak_rss, set_threads

    die_with_parent()
    set_threads(1)
    import torch

    from smpc.context import Context

    node = PartyNode(rank, Path(certs))
    conn.send(node.port)
    node.connect(conn.recv())
    while True:
        msg = conn.recv()
        if msg is None:
            node.stop()
            return
        name, job_id, args = msg
        run, ring = WORKLOADS[name]
        transport = node.open_job(job_id)
        try:
            ctx = Context(rank, 3, transport, ring=ring, timeout=600.0, party_names=NAMES)
            others = [p for p in range(3) if p != rank]
            ctx.exchange("barrier", sends={p: torch.zeros(1, dtype=torch.int64) for p in others}, recv_from=others)
            ctx.reset_comm_stats()
            reset_peak_rss()
            start = time.perf_counter()
            result = run(ctx, rank, args)
            seconds = time.perf_counter() - start
            stats = ctx.comm_stats()
            conn.send({"seconds": seconds, "bytes_sent": stats["bytes_sent"], "rounds": stats["rounds"],
                       "peak_rss": peak_rss_bytes(), "result": result})
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which stops the run
            transport.abort(str(exc), type(exc).__name__)
            conn.send({"error": f"{type(exc).__name__}: {exc}"})
        finally:
            node.close_job(transport)


def check(name: str, args: dict, result) -> dict:
    """The secure result against its plaintext reference (raises if they differ)."""
    import numpy as np

    if name == "auc_ks":
        from smpc.analyses.discrimination import auc_ks_plain

        tables = {f"bank_{r}": auc_table(r, args["rows"], args["seed"]) for r in range(3)}
        plain = auc_ks_plain(tables, score="score", label="default", score_decimals=0, score_bound=1000.0)
        assert result == plain, (result, plain)
        return {"auc": result["auc"], "ks": result["ks"], "rows": result["rows"]}
    parts = [fit_rows(r, args["rows"], args["seed"]) for r in range(3)]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[2] for p in parts])
    d = np.column_stack([np.ones(len(x)), x / parts[0][1]])
    b = np.zeros(d.shape[1])
    for _ in range(50):
        mu = 1 / (1 + np.exp(-d @ b))
        b += np.linalg.solve(d.T @ (d * (mu * (1 - mu))[:, None]), d.T @ (y - mu))
    unit = np.concatenate([[1.0], 1 / parts[0][1]])
    coef = b * unit
    error = float(np.max(np.abs(np.asarray(result["coefficients"]) - coef)))
    assert error < 1e-4, error
    return {"iterations": result["iterations"], "max_coefficient_error": error}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--auc-rows", type=float, default=1e5, help="auc_ks rows per bank (default 1e5)")
    parser.add_argument("--fit-rows", type=float, default=1e4, help="logistic rows per bank (default 1e4)")
    parser.add_argument("--reps", type=int, default=3, help="timed runs per workload (default 3; median shown)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=sorted(WORKLOADS), help="one workload")
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
        sizes = {"auc_ks": int(args.auc_rows), "logistic": int(args.fit_rows)}
        for name in [args.only] if args.only else list(WORKLOADS):
            job = {"rows": sizes[name], "seed": args.seed}
            runs = []
            for rep in range(args.reps):
                for pipe in pipes:
                    pipe.send((name, f"{name}-{rep}", job))
                got = [pipe.recv() for pipe in pipes]
                failed = [g["error"] for g in got if "error" in g]
                if failed:
                    raise SystemExit(f"{name}: {failed[0]}")
                runs.append(got)
            summary = check(name, job, runs[-1][0]["result"])
            print(json.dumps({
                "workload": name,
                "rows_per_bank": sizes[name],
                **({"features": FIT_FEATURES} if name == "logistic" else {}),
                "median_s": statistics.median(max(g["seconds"] for g in run) for run in runs),
                "seconds": [round(max(g["seconds"] for g in run), 3) for run in runs],
                "bytes_sent_per_party": [g["bytes_sent"] for g in runs[-1]],
                "rounds": max(g["rounds"] for g in runs[-1]),
                "peak_rss_mb_per_party": [round(g["peak_rss"] / 2**20, 1) for g in runs[-1]],
                **summary,
            }), flush=True)
        for pipe in pipes:
            pipe.send(None)
        for proc in procs:
            proc.join(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
