"""Private-join building blocks and analyses, in-process: oblivious shuffle, oblivious sort
(shuffle + quicksort with opened comparisons) and multi_lending end to end.

Each timed op is the slowest party's time for it (``parties.py``); ``extra_info`` holds the
op's rounds and bytes sent per party from ``ctx.comm_stats()``.
"""

from __future__ import annotations

import pytest
from bench_helpers import size_id
from parties import Parties

from smpc import datasets
from smpc.analyses.fraud import multi_lending
from smpc.protocols.shuffle import shuffle
from smpc.protocols.sort import sort_rows
from smpc.ring import RING64
from smpc.sharing import ArithmeticShares, BooleanShares


def _random_rows(ctx, n: int, words: int, values: int):
    """Random boolean words (n, words) and ring64 values (n, values) as consistent replicated
    shares without an input round: share j is drawn from the stream of parties j-1 and j, so
    party i holds (s_i, s_{i+1}) = (its prev stream, its next stream). Random 64-bit keys are
    distinct with probability 1 - n^2/2^65 (the sort's precondition)."""

    def rss(width):
        return ctx.prg_prev.int64(n * width).reshape(n, width), ctx.prg_next.int64(n * width).reshape(n, width)

    w1, w2 = rss(words)
    v1, v2 = rss(values)
    return BooleanShares(w1, w2), ArithmeticShares(RING64, v1, v2)


def _run(benchmark, parties: Parties, elements: int, rounds: int) -> None:
    parties.step()  # warm-up
    benchmark.pedantic(parties.step, rounds=rounds, iterations=1)
    benchmark.extra_info.update(parties.comm_info(elements))


@pytest.mark.parametrize("n", [10**5, 10**6], ids=size_id)
def test_shuffle(benchmark, n):
    """Shuffle n rows of one 64-bit key word and two ring64 value columns (3 rounds)."""
    benchmark.group = "join: shuffle"
    benchmark.extra_info.update(n=n, columns="1 word + 2 ring64")

    def setup(ctx):
        return _random_rows(ctx, n, 1, 2)

    def op(ctx, state):
        shuffle(ctx, list(state))

    with Parties(setup, op, ring=64) as parties:
        _run(benchmark, parties, n, rounds=3 if n <= 10**5 else 2)


@pytest.mark.parametrize("words", [1, 2])
@pytest.mark.parametrize("n", [10**5], ids=size_id)
def test_sort(benchmark, n, words):
    """Sort n rows (distinct keys of 1 or 2 words, one ring64 payload column): shuffle,
    quicksort with opened comparisons, gather."""
    benchmark.group = "join: sort"
    benchmark.extra_info.update(n=n, key_words=words)

    def setup(ctx):
        return _random_rows(ctx, n, words, 1)

    def op(ctx, state):
        keys, values = state
        sort_rows(ctx, keys, [values])

    with Parties(setup, op, ring=64) as parties:
        _run(benchmark, parties, n, rounds=2)


def test_multi_lending_3x1e5(benchmark):
    """multi_lending end to end, three banks (the compute parties) of ~1e5 loans each:
    id checks and hashing, input, join, totals, thresholds, flags back to every bank."""
    benchmark.group = "join: analyses"
    tables = datasets.synthetic_consortium(3, 100_000, seed=1)
    rows = sum(len(t) for t in tables.values())
    benchmark.extra_info.update(rows_per_bank=[len(t) for t in tables.values()])
    names = list(tables)

    def setup(ctx):
        return tables[names[ctx.rank]]

    def op(ctx, table):
        multi_lending(ctx, table, [0, 1, 2], id="customer_id", balance="balance", balance_threshold=500_000.0,
                      min_lenders=3)

    with Parties(setup, op, ring=64) as parties:
        _run(benchmark, parties, rows, rounds=2)
