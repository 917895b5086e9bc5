"""Comparisons in-process: x < y, x == y and the arithmetic-to-boolean conversion (A2B) on
secret vectors, three party threads, each op timed as its slowest party (``parties.py``).
Traffic per op from ``ctx.comm_stats()`` is stored in ``extra_info``."""

from __future__ import annotations

import pytest
from bench_helpers import SIZES, size_id
from parties import Parties
from test_rss import _run, _sharer

from smpc.protocols import boolean

# values of 64-bit-fitting magnitude: both rings compare on the low 64 bits
MODES = {"ring64": (64, None, 1e6), "ring128": (128, None, 1e6)}


def _lt(ctx, state):
    x, y = state
    x < y  # noqa: B015 - the comparison is the benchmarked work


def _eq(ctx, state):
    x, y = state
    x == y  # noqa: B015


def _a2b(ctx, state):
    x, _ = state
    boolean.bit_decompose(ctx, x.shares)


OPS = {"lt": _lt, "eq": _eq, "a2b": _a2b}


@pytest.mark.parametrize("n", SIZES, ids=size_id)
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("op", list(OPS))
def test_compare(benchmark, op, mode, n):
    ring, frac_bits, bound = MODES[mode]
    benchmark.group = f"compare {op}"
    benchmark.extra_info.update(op=op, mode=mode, ring=ring, n=n)
    with Parties(_sharer((n,), (n,), frac_bits, bound), OPS[op], ring=ring, frac_bits=frac_bits) as parties:
        _run(benchmark, parties, n, rounds=5)
