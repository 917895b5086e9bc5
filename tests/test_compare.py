"""Comparisons, equality, selection and min/max: exact on every element, over both rings,
with bytes and rounds asserted (the conformance style of tests/test_conformance.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import smpc
from smpc.fixedpoint import DEFAULTS

RINGS = [64, 128]


def encoded(values: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """What the parties actually compare: inputs rounded to the fixed-point grid."""
    return torch.round(values.double() * 2.0**frac_bits) / 2.0**frac_bits


def adversarial_pairs(n: int, bound: float, frac_bits: int, seed: int):
    """Random pairs plus equal values, +-1 ulp neighbours, zeros, sign flips and the bound."""
    gen = np.random.default_rng(seed)
    ulp = 2.0**-frac_bits
    x = gen.uniform(-bound, bound, n)
    y = gen.uniform(-bound, bound, n)
    k = n // 8
    y[:k] = x[:k]  # equal
    y[k : 2 * k] = x[k : 2 * k] + ulp  # one ulp apart, both directions
    y[2 * k : 3 * k] = x[2 * k : 3 * k] - ulp
    x[3 * k : 4 * k] = 0.0
    y[4 * k : 5 * k] = -x[4 * k : 5 * k]
    x[5 * k] = bound
    y[5 * k] = -bound
    x[5 * k + 1] = -bound
    y[5 * k + 1] = bound
    x = np.clip(x, -bound, bound)
    y = np.clip(y, -bound, bound)
    return torch.tensor(x), torch.tensor(y)


@pytest.mark.parametrize("ring", RINGS)
def test_comparisons_exact_on_adversarial_pairs(ring):
    frac = DEFAULTS[ring].frac_bits
    bound = DEFAULTS[ring].bound / 2  # the difference of two inputs must fit 64 bits
    x, y = adversarial_pairs(100_000, bound, frac, seed=ring)

    def job(ctx, x=None, y=None):
        a = smpc.share(ctx, x, owner=0, bound=bound)
        b = smpc.share(ctx, y, owner=1, bound=bound)
        return [t.reveal() for t in (a < b, a <= b, a > b, a >= b, a == b, a != b, a < 0.0)]

    got = smpc.simulate(job, ring=ring, inputs={0: {"x": x}, 1: {"y": y}})[2]
    xe, ye = encoded(x, frac), encoded(y, frac)
    expected = [xe < ye, xe <= ye, xe > ye, xe >= ye, xe == ye, xe != ye, xe < 0]
    names = ["<", "<=", ">", ">=", "==", "!=", "< 0"]
    for name, g, e in zip(names, got, expected, strict=True):
        wrong = int((g != e.double()).sum())
        assert wrong == 0, f"{name}: {wrong} wrong elements on ring{ring}"
        assert set(torch.unique(g).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("ring", RINGS)
def test_integer_mode_comparisons_near_the_64_bit_limit(ring, kernel_path):
    bound = 2.0**61  # differences up to 2^62 < 2^63
    gen = np.random.default_rng(7)
    x = torch.tensor(gen.integers(-(2**61), 2**61, 20_000), dtype=torch.int64)
    y = x.clone()
    y[5000:10000] += 1
    y[10000:] = torch.tensor(gen.integers(-(2**61), 2**61, 10_000), dtype=torch.int64)

    def job(ctx, x=None, y=None):
        a = smpc.share(ctx, x, owner=0, bound=bound, frac_bits=0)
        b = smpc.share(ctx, y, owner=2, bound=bound, frac_bits=0)
        return (a < b).reveal(), (a == b).reveal()

    lt, eq = smpc.simulate(job, ring=ring, inputs={0: {"x": x}, 2: {"y": y}})[1]
    assert torch.equal(lt, (x < y).double())
    assert torch.equal(eq, (x == y).double())


@pytest.mark.parametrize("shape", [(1,), (31,), (33,), (65,), (3, 7, 5)])
def test_packed_trees_on_sizes_that_do_not_fill_words(shape, kernel_path):
    """The carry and equality trees pad to whole words and interleave words pairwise: every
    element must come back from its own position, for any size and shape."""
    gen = np.random.default_rng(sum(shape))
    x = torch.tensor(gen.integers(-(2**40), 2**40, shape), dtype=torch.int64)
    y = torch.where(torch.tensor(gen.random(shape) < 0.3), x, torch.tensor(gen.integers(-(2**40), 2**40, shape)))
    y.view(-1)[0] = x.view(-1)[0] - 1

    def job(ctx, x=None, y=None):
        a = smpc.share(ctx, x, owner=0, bound=2.0**41, frac_bits=0)
        b = smpc.share(ctx, y, owner=1, bound=2.0**41, frac_bits=0)
        return (a < b).reveal(), (a == b).reveal(), (a >= b).reveal()

    lt, eq, ge = smpc.simulate(job, ring=64, inputs={0: {"x": x}, 1: {"y": y}})[0]
    assert lt.shape == shape
    assert torch.equal(lt, (x < y).double())
    assert torch.equal(eq, (x == y).double())
    assert torch.equal(ge, (x >= y).double())


@pytest.mark.parametrize("ring", RINGS)
def test_bit_decomposition_is_exact_on_both_kernel_paths(ring, kernel_path):
    """The Sklansky adder (C kernels and torch path): every bit of x mod 2^64, and the two
    carries out of bit 63 that lift ring64 shares into ring128."""
    from smpc.protocols import boolean

    gen = np.random.default_rng(11)
    x = torch.tensor(gen.integers(-(2**62), 2**62, 2049), dtype=torch.int64)
    x[:6] = torch.tensor([0, -1, 1, -(2**62), 2**62 - 1, -(2**61)])

    def job(ctx, x=None):
        a = smpc.share(ctx, x, owner=0, bound=2.0**62, frac_bits=0)
        bits, c1, c2 = boolean.a2b_with_carries(ctx, a.shares)
        return bits, c1, c2, a.shares

    res = smpc.simulate(job, ring=ring, inputs={0: {"x": x}})
    bits = res[0][0].first ^ res[1][0].first ^ res[2][0].first  # party i holds (b_i, b_i+1)
    assert torch.equal(bits, x)
    if ring == 64:  # shares as unsigned words sum to bits + 2^64 (c1 + c2)
        carries = (res[0][1].first ^ res[1][1].first ^ res[2][1].first) + (
            res[0][2].first ^ res[1][2].first ^ res[2][2].first)
        words = [res[r][3].first.tolist() for r in range(3)]
        for i in range(0, 2049, 97):
            total = sum(w[i] % 2**64 for w in words)
            assert total == (int(x[i]) % 2**64) + 2**64 * int(carries[i])


def test_comparison_beyond_64_bits_is_refused():
    def job(ctx):
        a = smpc.share(ctx, torch.zeros(3, dtype=torch.float64) if ctx.rank == 0 else None, owner=0, bound=2.0**50)
        return a < 1.0

    with pytest.raises(smpc.RangeError, match="64 bits"):
        smpc.simulate(job, ring=128)


@pytest.mark.parametrize("ring", RINGS)
def test_bytes_and_rounds_of_less_than_and_equality(ring):
    n = 1000
    word = 8
    elem = 8 if ring == 64 else 16

    def job(ctx):
        a = smpc.share(ctx, torch.linspace(-5, 5, n, dtype=torch.float64) if ctx.rank == 0 else None, owner=0, bound=10)
        b = smpc.share(ctx, torch.linspace(5, -5, n, dtype=torch.float64) if ctx.rank == 1 else None, owner=1, bound=10)
        ctx.reset_comm_stats()
        _ = a < b
        lt = ctx.comm_stats()
        ctx.reset_comm_stats()
        _ = a == b
        return lt, ctx.comm_stats()

    stats = smpc.simulate(job, ring=ring)
    # <: carry-save AND (n words), g (n padded to 32: 1024 words), the carry tree (1024 words
    # halving over 6 levels: 1024 + 512 + ... + 32), then bit injection (2 rounds, 1 ring
    # element per party)
    padded = 1024
    boolean_words = n + padded + sum(padded >> k for k in range(6))
    for rank, (lt, eq) in enumerate(stats):
        # bit injection: party 0 sends in its first round only, party 2 talks in its second
        # only, party 1 in both (the critical path is 10 rounds)
        assert lt["rounds"] == (10 if rank == 1 else 9)
        inject = elem
        assert lt["bytes_sent"] == boolean_words * word + n * inject
        # ==: party 0 shares s0+s1 (2 words), the AND tree (n padded to 64: 1024 words,
        # halved at each of 6 levels: 512 + 256 + ... + 16), bit injection
        assert eq["rounds"] == (9 if rank == 1 else 8)
        first = 2 * word if rank == 0 else 0
        tree_words = sum(padded >> k for k in range(1, 7))
        assert eq["bytes_sent"] == n * (first + inject) + tree_words * word


def test_less_than_on_a_million_elements_takes_at_most_12_rounds():
    n = 1_000_000

    def job(ctx, x=None):
        a = smpc.share(ctx, x, owner=0, bound=1e6)
        ctx.reset_comm_stats()
        flags = a < 0.0
        rounds = ctx.comm_stats()["rounds"]
        return rounds, flags.sum().reveal()

    x = torch.linspace(-1e6, 1e6, n, dtype=torch.float64)
    rounds, count = smpc.simulate(job, inputs={0: {"x": x}})[0]
    assert rounds <= 12
    assert int(count) == int((encoded(x, 20) < 0).sum())


@pytest.mark.parametrize("ring", RINGS)
def test_where_abs_relu_minimum_maximum(ring):
    frac = DEFAULTS[ring].frac_bits
    gen = np.random.default_rng(3)
    x = torch.tensor(gen.uniform(-1e4, 1e4, 5000))
    y = torch.tensor(gen.uniform(-1e4, 1e4, 5000))

    def job(ctx, x=None, y=None):
        a = smpc.share(ctx, x, owner=0, bound=1e4)
        b = smpc.share(ctx, y, owner=1, bound=1e4)
        return [
            smpc.where(a < b, a, b).reveal(),
            smpc.where(a < b, 1.5, -2.25).reveal(),
            a.abs().reveal(),
            a.relu().reveal(),
            smpc.minimum(a, b).reveal(),
            smpc.maximum(a, b).reveal(),
        ]

    got = smpc.simulate(job, ring=ring, inputs={0: {"x": x}, 1: {"y": y}})[0]
    xe, ye = encoded(x, frac), encoded(y, frac)
    expected = [
        torch.where(xe < ye, xe, ye),
        torch.where(xe < ye, 1.5, -2.25).double(),
        xe.abs(),
        xe.clamp(min=0),
        torch.minimum(xe, ye),
        torch.maximum(xe, ye),
    ]
    for g, e in zip(got, expected, strict=True):
        assert torch.equal(g, e)


@pytest.mark.parametrize("ring", RINGS)
def test_min_max_argmax_reductions(ring):
    frac = DEFAULTS[ring].frac_bits
    gen = np.random.default_rng(11)
    x = torch.tensor(gen.uniform(-1e5, 1e5, (37, 5)))  # odd length exercises the leftovers

    def job(ctx, x=None):
        a = smpc.share(ctx, x, owner=0, bound=1e5)
        return [a.max().reveal(), a.min().reveal(), a.max(dim=0).reveal(), a.min(dim=1).reveal(),
                a.argmax(dim=0).reveal(), a.argmin().reveal()]

    mx, mn, mx0, mn1, amx0, amn = smpc.simulate(job, ring=ring, inputs={0: {"x": x}})[0]
    xe = encoded(x, frac)
    assert float(mx) == float(xe.max()) and float(mn) == float(xe.min())
    assert torch.equal(mx0, xe.max(dim=0).values)
    assert torch.equal(mn1, xe.min(dim=1).values)
    assert torch.equal(xe[amx0.long(), torch.arange(5)], xe.max(dim=0).values)
    assert float(xe.reshape(-1)[int(amn)]) == float(xe.min())


@pytest.mark.parametrize("ring", RINGS)
@pytest.mark.parametrize("frac", [0, 20])
def test_public_operands_off_the_grid_compare_exactly(ring, frac):
    """x < 0.7 for x = 0.69999981 (the grid point just below 0.7) is 1: a public operand is not
    rounded to the nearest grid point before comparing. Secrets sit on and next to the
    grid points around each constant; constants sit on, between and off the grid."""
    ulp = 2.0**-frac
    constants = [0.7, 0.3, 1e-7, -1e-7, -0.3, 0.5, 2.5, -2.5, 3.0, 0.0, 1234.56789, -1e6 - 0.5]
    x = []
    for c in constants:
        below = np.floor(c / ulp) * ulp
        x += [below - ulp, below, below + ulp, below + 2 * ulp]
    x = torch.tensor(x, dtype=torch.float64)
    c = torch.tensor([v for v in constants for _ in range(4)], dtype=torch.float64)

    def job(ctx, x=None):
        a = smpc.share(ctx, x, owner=0, bound=2e6, frac_bits=frac)
        return [t.reveal() for t in (a < c, a <= c, a > c, a >= c, a == c, a != c, a < 0.7, a == 2.5)]

    got = smpc.simulate(job, ring=ring, inputs={0: {"x": x}})[1]
    expected = [x < c, x <= c, x > c, x >= c, x == c, x != c, x < 0.7, x == 2.5]
    for name, g, e in zip(["<", "<=", ">", ">=", "==", "!=", "< 0.7", "== 2.5"], got, expected, strict=True):
        assert torch.equal(g, e.double()), (name, g, e)


def test_derived_conditions_select_and_reductions_take_negative_dims():
    """`where` takes every comparison's result (<=, >=, != included); max/argmax accept
    negative dims like torch; an empty reduction and a bad dim are refused clearly."""
    a_vals = torch.tensor([[1.0, 5.0, 3.0], [4.0, 2.0, 0.0]], dtype=torch.float64)
    b_vals = torch.tensor([[2.0, 2.0, 3.0], [1.0, 2.0, 9.0]], dtype=torch.float64)

    def job(ctx, a=None, b=None):
        x = smpc.share(ctx, a, owner=0, bound=10)
        y = smpc.share(ctx, b, owner=1, bound=10)
        picks = [smpc.where(cond, x, y).reveal() for cond in (x <= y, x >= y, x != y)]
        return picks, x.max(dim=-1).reveal(), x.argmax(dim=-1).reveal(), x.min(dim=-2).reveal()

    picks, mx, amx, mn = smpc.simulate(job, inputs={0: {"a": a_vals}, 1: {"b": b_vals}})[0]
    for got, cond in zip(picks, (a_vals <= b_vals, a_vals >= b_vals, a_vals != b_vals), strict=True):
        assert torch.equal(got, torch.where(cond, a_vals, b_vals))
    assert torch.equal(mx, a_vals.max(dim=-1).values)
    assert torch.equal(amx, a_vals.argmax(dim=-1).double())
    assert torch.equal(mn, a_vals.min(dim=-2).values)

    def empty(ctx):
        return smpc.share(ctx, torch.zeros(0, dtype=torch.float64) if ctx.rank == 0 else None, owner=0, bound=1).max()

    with pytest.raises(smpc.InputError, match="empty"):
        smpc.simulate(empty)

    def bad_dim(ctx):
        return smpc.share(ctx, a_vals if ctx.rank == 0 else None, owner=0, bound=10).max(dim=2)

    with pytest.raises(smpc.SmpcError, match="dim 2 is out of range"):
        smpc.simulate(bad_dim)


def test_argmax_reaches_an_input_party_that_holds_no_shares():
    values = torch.tensor([1.0, 5.0, 3.0, -2.0], dtype=torch.float64)

    def job(ctx, x=None):
        a = smpc.share(ctx, x, owner=0, bound=10)
        return a.argmax().reveal(), a.argmin().reveal()

    # rank 0 is the input party (no shares); ranks 1..3 compute
    for got in smpc.simulate(job, input_parties=1, inputs={0: {"x": values}}):
        assert (float(got[0]), float(got[1])) == (1.0, 3.0)


def test_abs_holds_for_every_value_a_comparison_holds_on_ring64():
    """abs multiplies by a +-1 sign, so it accepts the same bound as < (2^62 - 2^10 integers)."""
    big = 2**62 - 2**10
    values = np.array([big, -big, 0, 1, -1, big - 1, -(big - 1)], dtype=object)

    def job(ctx, x=None):
        a = smpc.share(ctx, x, owner=0, bound=float(big), frac_bits=0)
        return a.abs().reveal_exact(), a.relu().reveal_exact()

    got_abs, got_relu = smpc.simulate(job, ring=64, inputs={0: {"x": values}})[0]
    assert list(got_abs) == [abs(v) for v in values]
    assert list(got_relu) == [max(v, 0) for v in values]
