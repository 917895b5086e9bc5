"""Small helpers shared by the benchmark modules."""

from __future__ import annotations

SIZES = [10**4, 10**5, 10**6]


def size_id(n: int) -> str:
    """1e4, 1e5, 1e6 ... for test ids."""
    return f"{n:.0e}".replace("e+0", "e").replace("e+", "e")


def record_rate(benchmark, nbytes: int, key: str = "bytes_per_s_median") -> None:
    """Store nbytes / median seconds in extra_info (skipped when benchmarking is disabled)."""
    stats = getattr(benchmark, "stats", None)
    inner = getattr(stats, "stats", None) if stats is not None else None
    if inner is not None and inner.median > 0:
        benchmark.extra_info[key] = nbytes / inner.median
