"""Division, reciprocal, square root, exp, log and sigmoid of secrets, in-process: three party
threads of one ``smpc.simulate`` job, each timed op = the slowest party's time for it (see
``parties.py``). Inputs are the issue's bank-scale ranges (x in [-1e12, 1e12], y log-uniform
in [1e-3, 1e9], sqrt on [1e-3, 1e12]); ``extra_info`` holds bytes per party, bytes per
element and rounds from ``ctx.comm_stats()``.

Aim on the 2-core development machine: division of 1e5 in <= 300 ms.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bench_helpers import size_id
from parties import Parties

import smpc

N = 10**5


def _inputs(kind: str, n: int, seed: int) -> torch.Tensor:
    gen = np.random.default_rng(seed)
    if kind == "numerator":
        return torch.tensor(gen.uniform(-1e12, 1e12, n))
    if kind == "divisor":
        return torch.tensor(10.0 ** gen.uniform(-3, 9, n))
    if kind == "radicand":
        return torch.tensor(10.0 ** gen.uniform(-3, 12, n))
    return torch.tensor(gen.uniform(-30, 30, n))  # exp / sigmoid arguments


def _setup(n: int):
    def setup(ctx):
        x = smpc.share(ctx, _inputs("numerator", n, 1) if ctx.rank == 0 else None, owner=0)
        y = smpc.share(ctx, _inputs("divisor", n, 2) if ctx.rank == 1 else None, owner=1)
        r = smpc.share(ctx, _inputs("radicand", n, 3) if ctx.rank == 2 else None, owner=2, bound=1e12)
        z = smpc.share(ctx, _inputs("argument", n, 4) if ctx.rank == 0 else None, owner=0, bound=44.0)
        return {"x": x, "y": y, "r": r, "z": z}

    return setup


OPS = {
    "divide": lambda s: s["x"] / s["y"],
    "reciprocal": lambda s: s["y"].reciprocal(),
    "sqrt": lambda s: s["r"].sqrt(),
    "rsqrt": lambda s: s["r"].rsqrt(),
    "exp": lambda s: s["z"].exp(),
    "log": lambda s: s["y"].log(),
    "sigmoid": lambda s: s["z"].sigmoid(),
}


@pytest.mark.parametrize("n", [N], ids=size_id)
@pytest.mark.parametrize("op", list(OPS))
def test_nonlinear(benchmark, op, n):
    """One op on n secrets (ring128 defaults)."""
    fn = OPS[op]
    benchmark.group = "division and functions (ring128)"
    benchmark.extra_info.update(op=op, n=n, ring=128)
    with Parties(_setup(n), lambda ctx, state: fn(state), ring=128) as parties:
        parties.step()  # warm-up: first touches of buffers
        benchmark.pedantic(parties.step, rounds=5, iterations=1)
        benchmark.extra_info.update(parties.comm_info(n))
