"""Joint default rate and mean credit amount across three banks, computed on secret shares.

The German credit data (examples/data/german_credit.csv, 1,000 loans) is split across three
banks. Each bank secret-shares two integer columns -- a 0/1 default flag and the credit amount
in DM -- and the three compute parties (here: the banks themselves, simulated in one process)
reveal only the consortium's default rate and mean credit amount. The plaintext answer is
printed beside the secure one.

Leakage: each bank's row count (the shape of its input) and the two results.
Run: make demo   (or: .venv/bin/python examples/joint_default_rate.py)
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch

import smpc

DATA = Path(__file__).resolve().parent / "data" / "german_credit.csv"
BANKS = ["bank_a", "bank_b", "bank_c"]


def consortium_statistics(ctx, defaults=None, amounts=None):
    """SPMD job run by every bank: share, add up, reveal two numbers."""
    total_defaults = None
    total_amount = None
    rows = 0
    for bank in range(3):
        # integer mode (frac_bits=0): flags and whole DM amounts add up exactly
        d = smpc.share(ctx, defaults if ctx.rank == bank else None, owner=bank, bound=1, frac_bits=0)
        a = smpc.share(ctx, amounts if ctx.rank == bank else None, owner=bank, bound=1e7, frac_bits=0)
        rows += d.shape[0]  # row counts are public: they are the shapes
        total_defaults = d.sum() if total_defaults is None else total_defaults + d.sum()
        total_amount = a.sum() if total_amount is None else total_amount + a.sum()
    default_rate = total_defaults / rows
    mean_amount = total_amount / rows
    return {
        "rows": rows,
        "default_rate": float(default_rate.reveal()),
        "mean_credit_amount": float(mean_amount.reveal()),
        "comm": ctx.comm_stats(),
    }


def main() -> None:
    frame = pd.read_csv(DATA)
    frame["default"] = (frame["creditability"] == "bad").astype("int64")
    parts = [frame.iloc[i::3] for i in range(3)]  # bank i holds every third loan
    inputs = {
        r: {
            "defaults": torch.tensor(part["default"].to_numpy()),
            "amounts": torch.tensor(part["credit_amount"].to_numpy()),
        }
        for r, part in enumerate(parts)
    }
    start = time.perf_counter()
    results = smpc.simulate(consortium_statistics, inputs=inputs, party_names=BANKS)
    elapsed = time.perf_counter() - start
    secure = results[0]
    plain_rate = frame["default"].mean()
    plain_mean = frame["credit_amount"].mean()
    split = ", ".join(f"{b} {len(p)} rows" for b, p in zip(BANKS, parts, strict=True))
    print("German credit data split across three banks:", split)
    print(f"{'statistic':<22}{'secure (smpc)':>18}{'plaintext (pandas)':>22}{'abs. difference':>18}")
    rate_diff = abs(secure["default_rate"] - plain_rate)
    print(f"{'default rate':<22}{secure['default_rate']:>18.9f}{plain_rate:>22.9f}{rate_diff:>18.2e}")
    print(
        f"{'mean credit amount':<22}{secure['mean_credit_amount']:>18.6f}{plain_mean:>22.6f}"
        f"{abs(secure['mean_credit_amount'] - plain_mean):>18.2e}"
    )
    for rank, res in enumerate(results):
        comm = res["comm"]
        print(f"{BANKS[rank]} sent {comm['bytes_sent']:,} bytes in {comm['rounds']} rounds")
    print(f"ring128, 3 compute parties in-process, {elapsed * 1e3:.0f} ms in all")
    assert abs(secure["default_rate"] - plain_rate) < 1e-6
    assert abs(secure["mean_credit_amount"] - plain_mean) < 1e-5


if __name__ == "__main__":
    main()
