"""Comparisons and levels of the quicksort's pivot rules, counted by running the real
``smpc.protocols.sort.sort_permutation`` with its secure comparison replaced by a plain one.

The index logic (which rows a level compares, where they move, which rows pivot next) is
the library's own; only the circuit is swapped: ``_gather_chunks`` hands the level's row
pairs over, ``_lt_start`` passes them through and ``_less_than_flat`` answers with numpy's
``<`` on the plaintext ranks, counting the comparisons (m) and the levels (calls). The
result is checked to be sorted. Runs in plaintext and in seconds, so pivot rules and
parameters can be tuned on 1e4 to 5.5e6 rows before any secure run.

    PYTHONPATH=. python benchmarks/sort_pivots.py --n 1e4 1e5 1e6 5.5e6 --seeds 3
    PYTHONPATH=. python benchmarks/sort_pivots.py --params '{"sample": 0, "small": 8}' --set TAIL=0
    PYTHONPATH=. python benchmarks/sort_pivots.py --spread 6 --set SAMPLE=21 ROOT_FROM=4096

(``--params``: keyword arguments of ``sort_permutation``; ``--set``: module constants. The
former 3-pivot rule is counted by pointing PYTHONPATH at a checkout that has it, with
--params '{"pivots": 3, "small": 8}'.) Medians of 3 orders, this checkout's defaults:
1.10, 1.09, 1.10, 1.10 n log2 n in 19, 24, 28, 31 levels at 1e4, 1e5, 1e6, 5.5e6 rows;
3 random pivots 1.61, 1.67, 1.74, 1.70 in 13, 16, 21, 23 levels; one random pivot with
all-pairs finishing at 8 rows 1.17, 1.24, 1.29, 1.26 in 26, 35, 46, 50 levels.

Output: one line per n with the medians over the seeds of comparisons / (n log2 n) and of
the levels (rounds = levels x (7 + ceil(log2 W))).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics

import numpy as np
import torch

from smpc.protocols import sort
from smpc.sharing import BooleanShares


def count(n: int, seed: int, params: dict, spread: float | None = None, trace: bool = False) -> tuple[int, int]:
    """(comparisons, levels) of sorting n distinct random keys with ``params``."""
    ranks = np.random.default_rng(seed).permutation(n).astype(np.int64)
    calls: list[int] = []

    def gather(key_first, key_second, idx_a, idx_b):
        return (key_first[0].numpy(), idx_a.numpy(), idx_b.numpy()), sort._padded_rows(idx_a.numel())

    def start(ctx, size, get, step, column=None):
        return get

    def less_than(ctx, state, w, m, step, open_result=False):
        keys, a, b = state
        calls.append(m)
        if trace:
            print(f"  level {len(calls) - 1}: {m} comparisons, {np.unique(a[:m]).size} rows")
        return keys[a[:m]] < keys[b[:m]]

    saved = sort._gather_chunks, sort._lt_start, sort._less_than_flat, getattr(sort, "SAMPLE_SPREAD", None)
    sort._gather_chunks, sort._lt_start, sort._less_than_flat = gather, start, less_than
    if spread is not None:
        sort.SAMPLE_SPREAD = spread
    try:
        keys = torch.from_numpy(ranks).reshape(n, 1)
        sigma = sort.sort_permutation(None, BooleanShares(keys, torch.zeros_like(keys)), **params).numpy()
    finally:
        sort._gather_chunks, sort._lt_start, sort._less_than_flat = saved[:3]
        if saved[3] is not None:
            sort.SAMPLE_SPREAD = saved[3]
    if not np.array_equal(ranks[sigma], np.arange(n)):
        raise AssertionError("the quicksort did not sort")
    return sum(calls), len(calls)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", nargs="+", type=float, default=[1e4, 1e5, 1e6, 5.5e6])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--params", default="{}", help="keyword arguments of sort_permutation, as JSON")
    ap.add_argument("--trace", action="store_true", help="print every level's comparisons and rows")
    ap.add_argument("--spread", type=float, default=None, help="override sort.SAMPLE_SPREAD")
    ap.add_argument("--set", nargs="*", default=[], help="NAME=VALUE: override a constant of smpc.protocols.sort")
    args = ap.parse_args()
    params = json.loads(args.params)
    for item in args.set:
        name, value = item.split("=")
        setattr(sort, name, int(value) if value.lstrip("-").isdigit() else float(value))
    for n in (int(x) for x in args.n):
        runs = [count(n, seed, params, args.spread, args.trace) for seed in range(args.seeds)]
        per = statistics.median(c / (n * math.log2(n)) for c, _ in runs)
        levels = statistics.median(lv for _, lv in runs)
        print(f"n={n:.1e} params={params} spread={args.spread} comparisons/(n log2 n)={per:.3f} "
              f"levels={levels} (all: {sorted(lv for _, lv in runs)})", flush=True)


if __name__ == "__main__":
    main()
