"""3-party replicated-secret-sharing ops, in-process: three party threads of one
``smpc.simulate`` job, each timed op = the slowest party's time for it (see ``parties.py``).

Each benchmark stores the op's traffic from ``ctx.comm_stats()`` in ``extra_info``: bytes sent
per party, their maximum, bytes per element and rounds.
"""

from __future__ import annotations

import pytest
import torch
from bench_helpers import SIZES, size_id
from parties import Parties

import smpc

# (ring, frac_bits or None for the ring's fixed-point default, input bound) per mode. ring64
# fixed point has no safe product at its 16 default fractional bits (README), so it is
# benchmarked in integer mode only; its truncation uses small values.
MUL_MODES = {
    "ring64-int": (64, 0, 2.0**20),
    "ring128-int": (128, 0, 1e9),
    "ring128-fixed": (128, None, 1e6),
}


def _data(shape, bound: float, integral: bool, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * bound
    return x.round() if integral else x


def _sharer(x_shape, y_shape, frac_bits, bound):
    """setup(ctx): party 0 shares x, party 1 shares y (y_shape None: x only)."""

    def setup(ctx):
        integral = frac_bits == 0
        x = _data(x_shape, bound, integral, 1) if ctx.rank == 0 else None
        sx = smpc.share(ctx, x, owner=0, bound=bound, frac_bits=frac_bits)
        if y_shape is None:
            return sx, None
        y = _data(y_shape, bound, integral, 2) if ctx.rank == 1 else None
        return sx, smpc.share(ctx, y, owner=1, bound=bound, frac_bits=frac_bits)

    return setup


def _run(benchmark, parties: Parties, elements: int, rounds: int | None = None) -> None:
    for _ in range(1 if rounds else 2):  # warm-up: first touches of buffers, BLAS thread start
        parties.step()
    if rounds is None:
        benchmark(parties.step)
    else:
        benchmark.pedantic(parties.step, rounds=rounds, iterations=1)
    benchmark.extra_info.update(parties.comm_info(elements))


def _mul(ctx, state):
    x, y = state
    x * y


@pytest.mark.parametrize("n", SIZES, ids=size_id)
@pytest.mark.parametrize("mode", list(MUL_MODES))
def test_rss_mul(benchmark, mode, n):
    """x * y on secret vectors of n elements (fixed point includes the fused truncation)."""
    ring, frac_bits, bound = MUL_MODES[mode]
    benchmark.group = "rss mul"
    benchmark.extra_info.update(mode=mode, ring=ring, n=n)
    with Parties(_sharer((n,), (n,), frac_bits, bound), _mul, ring=ring, frac_bits=frac_bits) as parties:
        _run(benchmark, parties, n)


MATMUL_MODES = {
    "ring64-int": (64, 0, 2.0**12),
    "ring128-fixed": (128, None, 1e3),
}
MATMUL_SHAPES = {**{f"{size_id(n)}x8@8x8": (n, 8, 8) for n in SIZES}, "256x256@256x256": (256, 256, 256),
                 "1000x1000@1000x1000": (1000, 1000, 1000)}


def _matmul(ctx, state):
    x, y = state
    x @ y


@pytest.mark.parametrize("shape", list(MATMUL_SHAPES))
@pytest.mark.parametrize("mode", list(MATMUL_MODES))
def test_rss_matmul(benchmark, mode, shape):
    """x @ y on secret matrices; the tall n x 8 shapes are the "many rows, few features" case."""
    ring, frac_bits, bound = MATMUL_MODES[mode]
    n, k, m = MATMUL_SHAPES[shape]
    benchmark.group = "rss matmul"
    benchmark.extra_info.update(mode=mode, ring=ring, shape=shape, n=n, k=k, m=m)
    setup = _sharer((n, k), (k, m), frac_bits, bound)
    with Parties(setup, _matmul, ring=ring, frac_bits=frac_bits) as parties:
        _run(benchmark, parties, n * m, rounds=3 if k >= 1000 else None)


TRUNC_MODES = {
    # 100 * 2^16 < 2^23, ring64's truncation-safe range at 2^-40 failure probability
    "ring64-fixed": (64, 16, 100.0),
    "ring128-fixed": (128, 20, 1e6),
}


def _truncate(ctx, state):
    x, _ = state
    x.truncate(8)


@pytest.mark.parametrize("n", SIZES, ids=size_id)
@pytest.mark.parametrize("mode", list(TRUNC_MODES))
def test_rss_truncate(benchmark, mode, n):
    """Probabilistic truncation by 8 bits (re-randomise, reshare and shift in one round)."""
    ring, frac_bits, bound = TRUNC_MODES[mode]
    benchmark.group = "rss truncate"
    benchmark.extra_info.update(mode=mode, ring=ring, n=n)
    with Parties(_sharer((n,), None, frac_bits, bound), _truncate, ring=ring, frac_bits=frac_bits) as parties:
        _run(benchmark, parties, n)
