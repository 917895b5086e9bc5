"""Local ring kernels (one party, no communication): elementwise ops, matmul, PRG throughput.

Inputs come from a fixed-key PRG so every run times the same bit patterns.
"""

from __future__ import annotations

import pytest
from bench_helpers import SIZES, record_rate, size_id

from smpc.prg import PRG
from smpc.ring import RING64, RING128

RINGS = {"ring64": RING64, "ring128": RING128}


def _random(ring, shape, seed: int):
    return ring.random(PRG(bytes([seed]) * 16), shape)


def _warm(fn, times: int = 2) -> None:
    for _ in range(times):
        fn()


# ----- elementwise -----------------------------------------------------------------------
ELEMENTWISE = {
    "mul": lambda r, a, b, c, d: r.mul(a, b),
    "add": lambda r, a, b, c, d: r.add(a, b),
    "rss_product": lambda r, a, b, c, d: r.rss_product(a, b, c, d),
}


@pytest.mark.parametrize("c_kernels", ["c", "torch"], indirect=True)
@pytest.mark.parametrize("n", SIZES, ids=size_id)
@pytest.mark.parametrize("op", list(ELEMENTWISE))
@pytest.mark.parametrize("ring_name", list(RINGS))
def test_ring_elementwise(benchmark, ring_name, op, n, c_kernels):
    """x op y on n ring elements (fresh output, as the protocols use them)."""
    ring = RINGS[ring_name]
    args = [_random(ring, (n,), seed) for seed in range(1, 5)]
    fn = ELEMENTWISE[op]
    benchmark.group = f"ring {op}"
    benchmark.extra_info.update(ring=ring_name, op=op, n=n, impl=c_kernels)
    _warm(lambda: fn(ring, *args))
    benchmark(fn, ring, *args)
    record_rate(benchmark, n, key="elements_per_s_median")


# ----- matmul ----------------------------------------------------------------------------
MATMUL_SHAPES = {
    "1e6x8@8x8": (10**6, 8, 8),
    "256x256@256x256": (256, 256, 256),
    "1000x1000@1000x1000": (1000, 1000, 1000),
}


@pytest.mark.parametrize("shape", list(MATMUL_SHAPES))
@pytest.mark.parametrize("ring_name", list(RINGS))
def test_ring_matmul(benchmark, ring_name, shape):
    """Exact matmul mod 2^k of uniformly random ring matrices (the worst case for limbs)."""
    ring = RINGS[ring_name]
    n, k, m = MATMUL_SHAPES[shape]
    a = _random(ring, (n, k), 1)
    b = _random(ring, (k, m), 2)
    benchmark.group = "ring matmul"
    benchmark.extra_info.update(ring=ring_name, shape=shape, n=n, k=k, m=m)
    _warm(lambda: ring.matmul(a, b), 1)
    benchmark.pedantic(ring.matmul, args=(a, b), rounds=5, iterations=1)


# ----- PRG -------------------------------------------------------------------------------
@pytest.mark.parametrize("n", SIZES, ids=size_id)
def test_prg_int64(benchmark, n):
    """n uniformly random int64 values from AES-128-CTR; extra_info holds bytes per second."""
    prg = PRG(bytes(16))
    benchmark.group = "prg"
    benchmark.extra_info.update(n=n, bytes=8 * n)
    _warm(lambda: prg.int64(n))
    benchmark(prg.int64, n)
    record_rate(benchmark, 8 * n)
