"""Division, reciprocal, sqrt and rsqrt of secrets: every element checked against the exact
result of the encoded inputs on bank-scale magnitudes (ring128), and against the real float64
inputs where they are shared finely enough for 1e-6 to be possible; ring64 within its
documented bound or refused; bytes and rounds equal to the documented formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import smpc
from smpc.errors import RangeError
from smpc.protocols import division, normalise, rounds


def encoded(values, frac_bits: int) -> torch.Tensor:
    """What the parties hold: inputs rounded to the fixed-point grid."""
    return torch.round(torch.as_tensor(values, dtype=torch.float64) * 2.0**frac_bits) / 2.0**frac_bits


def check(got, expected, rel: float, frac_bits: int, units: float = 1.0, what: str = ""):
    """Every element within rel * |expected| + units * 2^-frac_bits; returns the worst relative
    error beyond the absolute allowance (for messages)."""
    err = (got - expected).abs()
    allowed = rel * expected.abs() + units * 2.0**-frac_bits
    bad = err > allowed
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {len(got)} elements off; first at {i}: expected "
            f"{float(expected[i])!r}, got {float(got[i])!r} (allowed {float(allowed[i]):.3g})"
        )


def f64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def log_uniform(gen, lo, hi, n):
    return 10.0 ** gen.uniform(np.log10(lo), np.log10(hi), n)


def test_division_relative_error_on_1e5_bank_scale_pairs():
    """x in [-1e12, 1e12], y log-uniform in [1e-3, 1e9], ring128 defaults: every one of 1e5
    quotients within 1e-6 relative (and within the documented 2^-30 relative + 1 unit)."""
    gen = np.random.default_rng(2024)
    n = 100_000
    x = torch.tensor(gen.uniform(-1e12, 1e12, n))
    y = torch.tensor(log_uniform(gen, 1e-3, 1e9, n))

    def job(ctx, x=None, y=None):
        q = smpc.share(ctx, x, owner=0) / smpc.share(ctx, y, owner=1)
        return q.frac_bits, q.reveal()

    frac, got = smpc.simulate(job, inputs={0: {"x": x}, 1: {"y": y}})[0]
    assert frac == 31  # the default output precision for these bounds
    expected = encoded(x, 20) / encoded(y, 20)
    check(got, expected, 2.0**-30, frac, what="documented bound")
    # 1e-6 relative on every element: the output grid allows it down to |q| ~ 1e-3
    assert float(expected.abs().min()) > 2.0**-frac / (1e-6 - 2.0**-30)
    check(got, expected, 1e-6, frac, units=0.0, what="1e-6 relative")


def test_division_against_the_real_inputs_when_divisors_are_shared_finely():
    """The 1e-6 target against float64 of the raw x and y, not the encoded ones: at the
    default 20 bits y = 1e-3 itself is off by 5e-4 relative, so y is shared at 31 fractional
    bits (1e9 x 2^31 < 2^61), as the README tells a user who needs that accuracy."""
    gen = np.random.default_rng(2025)
    n = 20_000
    x = torch.tensor(np.concatenate([gen.uniform(-1e12, 1e12, n), [1e12, -1e12, 1.0, -3.5]]))
    y = torch.tensor(np.concatenate([log_uniform(gen, 1e-3, 1e9, n), [1e-3, 1e9, 1e-3, 2e-3]]))

    def job(ctx, x=None, y=None):
        q = smpc.share(ctx, x, owner=0) / smpc.share(ctx, y, owner=1, bound=1e9, frac_bits=31)
        return q.frac_bits, q.reveal()

    frac, got = smpc.simulate(job, inputs={0: {"x": x}, 1: {"y": y}})[0]
    expected = x / y
    assert float(expected.abs().min()) > 2.0**-frac / (1e-6 - 2.0**-30)  # the output grid allows it
    check(got, expected, 1e-6, frac, units=0.0, what="1e-6 relative to the real quotient")


def edge_divisors() -> torch.Tensor:
    ulp = 2.0**-20
    powers = [2.0**k for k in range(-10, 31)]
    values = [1e-3, 1e9, 1e-3 + ulp, 1e9 - 1, ulp, 2 * ulp, 3 * ulp, 2.0**40]
    for p in powers:
        values += [p, p + ulp, p - ulp]
    values = [v for v in values if v >= ulp]
    return f64(values + [-v for v in values])


def test_division_at_the_edges():
    """Divisors at 1e-3 and 1e9, powers of two and their +-1 ulp neighbours, one ulp, the
    bound, all with both signs; numerators of both signs from 0 to 1e12."""
    y = edge_divisors()
    m = len(y)
    numerators = f64([1e12, -1e12, 1.0, -1.0, 0.0, 123456.789, -2.0**-20, 7.0 * 2.0**30])
    x = numerators.repeat_interleave(m)
    y = y.repeat(len(numerators))

    def job(ctx, x=None, y=None):
        a = smpc.share(ctx, x, owner=0)
        b = smpc.share(ctx, y, owner=1)
        q = a / b
        return q.frac_bits, q.reveal(), a.div(b, frac_bits=40).reveal()

    frac, got, got40 = smpc.simulate(job, inputs={0: {"x": x}, 1: {"y": y}})[0]
    expected = encoded(x, 20) / encoded(y, 20)
    check(got, expected, 2.0**-30, frac, what="default precision")
    check(got40, expected, 2.0**-30, 40, what="40 fractional bits")
    assert bool((got[x == 0] == 0).all())


def test_zero_divisor_gives_zero_and_lower_bound_sets_the_public_bound():
    def job(ctx):
        a = smpc.share(ctx, f64([5.0, -7.0, 0.0, 1e12]), owner=0)
        b = smpc.share(ctx, f64([0.0, 0.0, 0.0, 0.0]), owner=1)
        c = smpc.share(ctx, f64([4.0, 0.5, 2.0, 1e9]), owner=2, bound=1e9)
        q = a / b
        r = a.div(c, lower=1e-3)
        return q.reveal(), q.bound, r.bound, r.frac_bits, r.reveal()

    zero, honest_bound, declared_bound, frac, r = smpc.simulate(job)[0]
    assert zero.abs().max() == 0
    assert honest_bound >= 2.0**40 * 2.0**20  # |x| / one ulp: always true
    assert 2.0**40 / 1e-3 <= declared_bound < 2.0**40 / 1e-3 * (1 + 1e-6)
    assert frac == 37  # the most that keeps 1.1e15 truncatable (2^49.97 * 2^37 < 2^87)
    check(r, f64([1.25, -14.0, 0.0, 1000.0]), 2.0**-30, frac)


def test_lower_bound_is_validated():
    def job(ctx, lower):
        a = smpc.share(ctx, f64([1.0]), owner=0)
        b = smpc.share(ctx, f64([2.0]), owner=1, bound=10.0)
        return a.div(b, lower=lower)

    for lower in (0.0, -1.0, float("nan"), 11.0):
        with pytest.raises(RangeError):
            smpc.simulate(job, lower=lower)


def test_reciprocal_and_public_numerator():
    gen = np.random.default_rng(5)
    y = torch.tensor(log_uniform(gen, 1e-3, 1e9, 4000) * gen.choice([-1.0, 1.0], 4000))

    def job(ctx, y=None):
        b = smpc.share(ctx, y, owner=1)
        r = b.reciprocal()
        c = 0.3 / b
        return r.frac_bits, r.reveal(), c.frac_bits, c.reveal()

    frac, r, cfrac, c = smpc.simulate(job, inputs={1: {"y": y}})[0]
    ye = encoded(y, 20)
    check(r, 1 / ye, 2.0**-30, frac, what="reciprocal")
    check(c, encoded(0.3, 20) / ye, 2.0**-30, cfrac, what="0.3 / y")


def test_sqrt_relative_error_from_1e_3_to_1e12():
    gen = np.random.default_rng(7)
    y = torch.tensor(np.concatenate([log_uniform(gen, 1e-3, 1e12, 20_000), [1e-3, 1e12, 1.0, 2.0, 0.5]]))

    def job(ctx, y=None):
        b = smpc.share(ctx, y, owner=0, bound=1e12)
        s = b.sqrt()
        return s.frac_bits, s.reveal(), b.rsqrt().reveal()

    frac, s, rs = smpc.simulate(job, inputs={0: {"y": y}})[0]
    ye = encoded(y, 20)
    check(s, ye.sqrt(), 1e-8, frac, what="sqrt documented")
    check(s, ye.sqrt(), 1e-6, frac, units=0.0, what="sqrt 1e-6 relative")
    check(rs, 1 / ye.sqrt(), 1e-7, frac, what="rsqrt documented")


def test_sqrt_against_the_real_inputs_from_1e_3_to_1e12():
    """1e-6 relative to sqrt of the raw inputs. No one precision holds the whole range (1e12 at
    over 22 fractional bits exceeds the 62 bits sqrt normalises, and 20 bits put 2.4e-4 of
    rounding error on sqrt(1e-3)), so small values are shared at 40 bits, large ones at 20."""
    gen = np.random.default_rng(8)
    small = torch.tensor(np.concatenate([log_uniform(gen, 1e-3, 1e3, 5000), [1e-3, 1e3, 0.1]]))
    large = torch.tensor(np.concatenate([log_uniform(gen, 1e3, 1e12, 5000), [1e3, 1e12, 999_999.5]]))

    def job(ctx, small=None, large=None):
        a = smpc.share(ctx, small, owner=0, bound=1e3, frac_bits=40)
        b = smpc.share(ctx, large, owner=0, bound=1e12, frac_bits=20)
        sa, sb = a.sqrt(), b.sqrt()
        return sa.frac_bits, sa.reveal(), sb.frac_bits, sb.reveal()

    fa, got_small, fb, got_large = smpc.simulate(job, inputs={0: {"small": small, "large": large}})[0]
    check(got_small, small.sqrt(), 1e-6, fa, units=0.0, what="sqrt on [1e-3, 1e3] at 40 bits")
    check(got_large, large.sqrt(), 1e-6, fb, units=0.0, what="sqrt on [1e3, 1e12] at 20 bits")


def test_sqrt_special_values_and_odd_fractional_bits():
    y = f64([0.0, -4.0, -2.0**-21, 2.0**-21, 4.0, 2.0**30, 3.0 * 2.0**-21, 1e6])

    def job(ctx, y=None):
        b = smpc.share(ctx, y, owner=0, frac_bits=21, bound=2.0**31)
        return b.sqrt().reveal(), b.rsqrt().reveal(), b.sqrt().frac_bits

    s, rs, frac = smpc.simulate(job, inputs={0: {"y": y}})[0]
    ye = encoded(y, 21)
    pos = ye > 0
    assert bool((s[~pos].abs() <= 2.0**-frac).all()) and bool((rs[~pos].abs() <= 2.0**-frac).all())
    check(s[pos], ye[pos].sqrt(), 1e-8, frac)
    check(rs[pos], 1 / ye[pos].sqrt(), 1e-7, frac)


def test_ring64_meets_its_documented_bound_or_refuses():
    """ring64 lifts its shares into ring128 exactly, so the same error bounds hold at the
    output precision that fits 64 bits; what does not fit is refused before any message."""
    gen = np.random.default_rng(64)
    n = 5000
    x = torch.tensor(gen.uniform(-2e9, 2e9, n))
    y = torch.tensor(log_uniform(gen, 1e-3, 1e6, n) * gen.choice([-1.0, 1.0], n))

    def job(ctx, x=None, y=None):
        a = smpc.share(ctx, x, owner=0)
        b = smpc.share(ctx, y, owner=1)
        q, ql = a / b, a.div(b, lower=1e-3)
        s = smpc.share(ctx, None if y is None else y.abs(), owner=1).sqrt()
        return (q.frac_bits, q.reveal()), (ql.frac_bits, ql.reveal()), (s.frac_bits, s.reveal())

    (f1, q1), (f2, q2), (f3, s) = smpc.simulate(job, ring=64, inputs={0: {"x": x}, 1: {"y": y}})[0]
    xe, ye = encoded(x, 16), encoded(y, 16)
    assert (f1, f2) == (14, 21)  # 2^47 * 2^14 and 2^41 * 2^21 fit 64 bits with a bit to spare
    check(q1, xe / ye, 2.0**-30, f1, what="ring64 division")
    check(q2, xe / ye, 2.0**-30, f2, what="ring64 division, lower=1e-3")
    check(s, ye.abs().sqrt(), 1e-8, f3, what="ring64 sqrt")

    def too_precise(ctx):
        a = smpc.share(ctx, f64([1.0]), owner=0)
        return a.div(smpc.share(ctx, f64([3.0]), owner=1), frac_bits=30)

    with pytest.raises(RangeError, match="do not fit ring64"):
        smpc.simulate(too_precise, ring=64)

    def too_large(ctx):
        a = smpc.share(ctx, f64([1.0]), owner=0, frac_bits=40, bound=2.0**30)
        return a.reciprocal()

    with pytest.raises(RangeError, match="62 bits"):
        smpc.simulate(too_large, ring=128)


@pytest.mark.parametrize("ring", [64, 128])
@pytest.mark.parametrize("name", ["divide", "reciprocal", "sqrt", "rsqrt"])
def test_bytes_and_rounds_equal_the_documented_formulas(ring, name):
    n = 300
    gen = np.random.default_rng(1)
    x = torch.tensor(gen.uniform(-1e6, 1e6, n))
    y = torch.tensor(log_uniform(gen, 1e-3, 1e6, n))

    def job(ctx, x=None, y=None):
        a = smpc.share(ctx, x, owner=0)
        b = smpc.share(ctx, y, owner=1)
        ctx.reset_comm_stats()
        out = {"divide": lambda: a / b, "reciprocal": b.reciprocal, "sqrt": b.sqrt, "rsqrt": b.rsqrt}[name]()
        stats = ctx.comm_stats()
        return out.frac_bits, stats["rounds"], stats["bytes_sent"]

    got = smpc.simulate(job, ring=ring, inputs={0: {"x": x}, 1: {"y": y}})
    frac = got[0][0]
    f = 20 if ring == 128 else 16
    items = 0
    if name == "divide":
        items = len(division.plan_scaling(frac, 4)[1])  # f_out + f_y - f_x
    elif name == "reciprocal":
        items = len(division.plan_scaling(frac + f, 2)[1])
    rounds, per_element = division.cost_per_element(name, ring, items)
    assert [g[1] for g in got] == [rounds] * 3
    assert [g[2] for g in got] == [n * b for b in per_element]


def test_shapes_broadcasting_and_result_parties():
    """Shapes are kept, a divisor broadcasts against the numerator, and a result party (rank 3,
    no shares) gets the same metadata and the revealed value."""
    x = f64([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]])
    y = f64([2.0, -4.0, 8.0])

    def job(ctx, x=None, y=None):
        a = smpc.share(ctx, x, owner=0)
        b = smpc.share(ctx, y, owner=1)
        q = a / b
        s = b.sqrt()
        return q.frac_bits, q.bound, q.reveal(to=3), s.frac_bits, s.bound

    got = smpc.simulate(job, inputs={0: {"x": x}, 1: {"y": y}}, input_parties=1)
    assert len({(g[0], g[1], g[3], g[4]) for g in got}) == 1  # every rank agrees on the metadata
    frac, _, q, _, _ = got[3]
    assert q.shape == (2, 3)
    check(q.reshape(-1), (x / y).reshape(-1), 2.0**-30, frac)
    assert got[0][2] is None


def test_mixed_precisions_keep_the_documented_bound():
    """Integer-mode counts and other fractional widths: the final mantissa never drops below
    32 bits, so 2^-30 relative holds whatever the planner picks."""
    gen = np.random.default_rng(3)
    cnt = f64(gen.integers(0, 10**6, 2000))
    tot = f64(gen.integers(1, 10**7, 2000))
    fx = f64(gen.uniform(-1e6, 1e6, 2000))

    def job(ctx, cnt=None, tot=None, fx=None):
        a = smpc.share(ctx, cnt, owner=0, frac_bits=0, bound=2**40)
        b = smpc.share(ctx, tot, owner=1, frac_bits=0, bound=2**40)
        c = smpc.share(ctx, fx, owner=2, frac_bits=23, bound=2**30)
        return [(r.frac_bits, r.reveal()) for r in (a / b, c / b, a.div(c, lower=1e-3))]

    got = smpc.simulate(job, inputs={0: {"cnt": cnt}, 1: {"tot": tot}, 2: {"fx": fx}})[0]
    fxe = encoded(fx, 23)
    expected = [cnt / tot, fxe / tot, cnt / fxe]
    for (frac, q), exact, what in zip(got, expected, ["int/int", "f23/int", "int/f23"], strict=True):
        check(q, exact, 2.0**-30, frac, what=what)


def test_onehot_position_is_the_xor_of_set_bit_positions():
    """The 16-bit lookup (byte XOR + byte parities) equals the XOR of the positions of the set
    bits on arbitrary words (shares are arbitrary, only their XOR is one-hot)."""
    gen = torch.Generator().manual_seed(11)
    words = torch.randint(-(2**63), 2**63 - 1, (4000,), generator=gen, dtype=torch.int64)
    words = torch.cat([words, torch.tensor([0, 1, -1, -(2**63), 2**62, 255, 1 << 40])])
    onehots = torch.tensor([1 << i for i in range(63)] + [-(2**63)], dtype=torch.int64)
    for w in (words, onehots):
        expected = []
        for v in w.tolist():
            acc = 0
            for i in range(64):
                if (v >> i) & 1:
                    acc ^= i
            expected.append(acc)
        assert normalise._onehot_position(w).tolist() == expected


def test_table_index_fields_merge_and_match_bits():
    """Adjacent fields of one word merge into one extraction; the index equals the one made
    from separate bit sharings (b_0 + 2 b_1 + ...)."""
    from smpc.sharing import BooleanShares

    gen = torch.Generator().manual_seed(3)
    word = BooleanShares(*(torch.randint(0, 128, (50,), generator=gen, dtype=torch.int64) for _ in range(2)))
    flag = BooleanShares(*(torch.randint(0, 2, (50,), generator=gen, dtype=torch.int64) for _ in range(2)))
    parts = [rounds.Field(word, 4), rounds.Field(word, 5), flag, rounds.Field(word, 0, 2)]
    fields = rounds._fields(parts)
    assert [(f.shift, f.width) for f in fields] == [(4, 2), (0, 1), (0, 2)]
    for pick in (lambda w: w.first, lambda w: w.second):
        w, fl = pick(word), pick(flag)
        expected = ((w >> 4) & 1) | (((w >> 5) & 1) << 1) | ((fl & 1) << 2) | ((w & 3) << 3)
        assert torch.equal(rounds._index_of(fields, pick), expected)


def test_table_and_truncated_products_are_the_same_protocol_on_both_kernel_paths(aes_width):
    """``Table`` and ``Mul`` run party by party with fixed pairwise keys: the C path (AES
    computed in the kernels) sends exactly the messages of the torch path, and the shares
    reconstruct T[index] (tables over 1, 2 and 3 bits, two outputs) and the truncated sum of
    products (floor or one more)."""
    from types import SimpleNamespace

    from smpc.prg import PRG
    from smpc.ring import RING128, use_c_kernels
    from smpc.sharing import ArithmeticShares, BooleanShares

    n = 777
    gen = torch.Generator().manual_seed(5)
    keys = [bytes([7 + k]) * 16 for k in range(3)]  # key k: parties k and k + 1

    def share_bits(values):  # a boolean sharing: party i holds (s_i, s_(i+1))
        s = [torch.randint(0, 256, (n,), generator=gen) for _ in range(2)]
        s.append(values ^ s[0] ^ s[1])
        return [BooleanShares(s[i], s[(i + 1) % 3]) for i in range(3)]

    def share_arith(values: list[int]):
        m = 1 << 128
        a = [[int(v) for v in torch.randint(-(2**62), 2**62, (n,), generator=gen)] for _ in range(2)]
        s = [[x % m for x in a[0]], [x % m for x in a[1]]]
        s.append([(v - x - y) % m for v, x, y in zip(values, s[0], s[1], strict=True)])
        t = [RING128.from_ints(col) for col in s]
        return [ArithmeticShares(RING128, t[i], t[(i + 1) % 3]) for i in range(3)]

    word_values = torch.randint(0, 64, (n,), generator=gen)
    flag_values = torch.randint(0, 2, (n,), generator=gen)
    word, flag = share_bits(word_values), share_bits(flag_values)
    x_values = [int(v) for v in torch.randint(-(2**60), 2**60, (n,), generator=gen)]
    y_values = [int(v) for v in torch.randint(-(2**19), 2**19, (n,), generator=gen)]
    xs, ys = share_arith(x_values), share_arith(y_values)
    cases = [
        ([lambda i: rounds.Field(word[i], 3)], (word_values >> 3) & 1),
        ([lambda i: rounds.Field(word[i], 1, 2)], (word_values >> 1) & 3),
        ([lambda i: rounds.Field(word[i], 4, 2), lambda i: flag[i]], ((word_values >> 4) & 3) | (flag_values << 2)),
    ]

    def run():
        ctxs = [SimpleNamespace(rank=i, prg_next=PRG(keys[i]), prg_prev=PRG(keys[i - 1])) for i in range(3)]
        messages, results = [], []
        ops = [
            (lambda i, k=k, parts=parts: rounds.Table([p(i) for p in parts], tables[k], RING128, sender=k))
            for k, (parts, _) in enumerate(cases)
        ] + [
            lambda i: rounds.Mul([(xs[i], ys[i])], trunc=23),
            lambda i: rounds.Mul([(xs[i], ys[i])]),
            lambda i: rounds.And((word[i], flag[i]), (flag[i], word[i].lshift(3))),
        ]
        for op in ops:
            prepared = [op(i).prepare(ctxs[i]) for i in range(3)]
            for p in prepared:
                messages += [p.sends[peer].clone() for peer in sorted(p.sends)]
            # copied before any finish, as a transport does (senders reuse their buffers)
            got = [{peer: prepared[peer].sends[i].clone() for peer in p.expect} for i, p in enumerate(prepared)]
            results.append([p.finish(g) for p, g in zip(prepared, got, strict=True)])
        return messages, results

    tables = [[[int(v) for v in torch.randint(-(2**62), 2**62, (1 << k + 1,), generator=gen)] for _ in range(2)]
              for k in range(3)]
    paths = {}
    for path in ("c", "torch"):
        previous = use_c_kernels(path == "c")
        try:
            paths[path] = run()
        finally:
            use_c_kernels(previous)
    for a, b in zip(paths["c"][0], paths["torch"][0], strict=True):
        assert torch.equal(a, b), "the kernel paths send different messages"

    def opened(shares):
        assert all(torch.equal(shares[i].second, shares[(i + 1) % 3].first) for i in range(3))
        total = RING128.add(RING128.add(shares[0].first, shares[1].first), shares[2].first)
        return RING128.to_ints(total, signed=False)

    for path, (_, results) in paths.items():
        for (_, index), got, table_pair in zip(cases, results, tables, strict=False):
            for t, table in enumerate(table_pair):
                want = [table[i] % (1 << 128) for i in index.tolist()]
                assert opened([g[t] for g in got]) == want, path
        exact = [x * y for x, y in zip(x_values, y_values, strict=True)]
        assert opened(results[4]) == [v % (1 << 128) for v in exact], path
        for got, v in zip(opened(results[3]), exact, strict=True):
            assert (got - (v >> 23)) % (1 << 128) in (0, 1), path
        for k, want in enumerate((word_values & flag_values, flag_values & (word_values << 3))):
            parties = [r[k] for r in results[5]]
            assert all(torch.equal(parties[i].second, parties[(i + 1) % 3].first) for i in range(3))
            assert torch.equal(parties[0].first ^ parties[1].first ^ parties[2].first, want), path


def test_leading_position_kernel_matches_the_lookup():
    """``xor_positions`` (C) equals ``_onehot_position`` of w ^ (w >> 1) and of w."""
    from smpc.ring import c_kernels

    kernels = c_kernels()
    if kernels is None:
        pytest.skip("C kernels not built")
    gen = torch.Generator().manual_seed(13)
    w = torch.randint(-(2**63), 2**63 - 1, (5000,), generator=gen, dtype=torch.int64)
    for leading, v in ((1, w ^ (w >> 1)), (0, w)):
        out = torch.empty_like(w)
        kernels.xor_positions(out.data_ptr(), w.data_ptr(), w.numel(), leading)
        assert torch.equal(out, normalise._onehot_position(v))
    assert torch.equal(normalise._leading_position(w), normalise._onehot_position(w ^ (w >> 1)))


@pytest.mark.parametrize("ring", [64, 128])
def test_division_and_reciprocal_on_both_kernel_paths(ring, kernel_path):
    """The torch path (no C kernels, PRG draws through ``cryptography``) and the C path (AES
    in the kernels) both meet the documented bound."""
    gen = np.random.default_rng(7)
    n = 3000
    x = torch.tensor(gen.uniform(-1e6, 1e6, n))
    y = torch.tensor(log_uniform(gen, 1e-2, 1e6, n) * gen.choice([-1.0, 1.0], n))

    def job(ctx, x=None, y=None):
        a, b = smpc.share(ctx, x, owner=0), smpc.share(ctx, y, owner=1)
        q, r = a / b, b.reciprocal()
        return q.frac_bits, q.reveal(), r.frac_bits, r.reveal()

    fq, q, fr, r = smpc.simulate(job, ring=ring, inputs={0: {"x": x}, 1: {"y": y}})[0]
    f = 20 if ring == 128 else 16
    check(q, encoded(x, f) / encoded(y, f), 2.0**-30, fq, what=f"divide, {kernel_path} path")
    check(r, 1 / encoded(y, f), 2.0**-30, fr, what=f"reciprocal, {kernel_path} path")


def test_prefix_or_level_kernel_matches_its_definition():
    """``por_terms`` (one level of ``boolean.prefix_or`` with the AES kernels) equals the
    torch path's term a1 & (b1 ^ b2) ^ a2 & b1 ^ a1 ^ b1 (b = a >> s) XOR the two keystreams, with and
    without the ones' complement applied first."""
    from smpc.prg import PRG
    from smpc.protocols.fused import aes_kernels

    kernels = aes_kernels()
    if kernels is None:
        pytest.skip("no AES kernels here")
    gen = torch.Generator().manual_seed(9)
    n = 5000
    a1, a2 = (torch.randint(-(2**63), 2**63 - 1, (n,), generator=gen, dtype=torch.int64) for _ in range(2))
    k1, k2 = bytes([1]) * 16, bytes([2]) * 16
    for shift in (1, 8, 32):
        for ones in (0, 1):
            u1, u2 = (a1 ^ (a1 >> 63), a2 ^ (a2 >> 63)) if ones else (a1, a2)
            b1, b2 = u1 >> shift, u2 >> shift
            p1, p2 = PRG(k1), PRG(k2)
            p1.bytes(24)
            want = (u1 & (b1 ^ b2)) ^ (u2 & b1) ^ u1 ^ b1 ^ p1.int64(n) ^ p2.int64(n)
            z = torch.empty(n, dtype=torch.int64)
            kernels.por_terms(z.data_ptr(), a1.data_ptr(), a2.data_ptr(), n, shift, ones, k1, 3, k2, 0)
            assert torch.equal(z, want), (shift, ones)
