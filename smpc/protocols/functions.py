"""exp, log and the logistic sigmoid of secrets, for statistics and logistic regression.

All three split their argument the way a floating-point library does, on the boolean
decomposition, so that accuracy does not depend on where the value lies:

- exp(x) = 2^t with t = x log2(e) = n + f: the integer part n comes from the bits of t (an
  exact power-of-two factor, as in ``division``), the fraction f in [0, 1) goes through a
  degree-8 near-minimax polynomial for 2^f (error 1.1e-12). x is clamped to [-44, 44]:
  below, exp(x) < 2^-63 is returned as 0; above, the result saturates at exp(44) ~ 1.3e19.
- log(y) = log(y_n) + (m + 1 - f) log(2) with y = y_n 2^(m+1) (the ``normalise``
  normalisation): a degree-10 polynomial for log on [1/2, 1] (error 9.5e-10) plus the
  exponent term from the same tables.
- sigmoid(z) = 1 / (1 + u) for z >= 0 and u / (1 + u) for z < 0, with u = exp(-|z|) in
  (0, 1]: never overflows, and the quotient needs no normalisation (1 + u in (1, 2]).

Magnitudes: internal truncations act on values below 2^82 in Z_2^128 (failure <= 2^-45
each; 12 per element for exp, 21 for sigmoid, 11 for log). ring64 secrets are lifted into
Z_2^128 exactly (one more round for exp and sigmoid). Costs:
``smpc.protocols.division.cost_per_element``.
"""

from __future__ import annotations

import math

import numpy as np

from smpc.errors import RangeError
from smpc.protocols import boolean
from smpc.protocols.division import goldschmidt_gen, output_frac_bits
from smpc.protocols.local import (
    affine,
    bit_table,
    const_tensor,
    embed_unsigned,
    extract_bit,
    flatten,
    sum_shares,
    to_ctx_ring,
)
from smpc.protocols.normalise import (
    MANTISSA_BITS,
    lift_ops,
    lifted,
    normalise,
    pair_table,
    power_factor,
    require_normalisable,
    scale_items,
)
from smpc.protocols.polynomial import chebyshev_coefficients, polynomial, powers_gen
from smpc.protocols.rounds import And, Mul, Protocol, Table, drive, parallel
from smpc.ring import RING128
from smpc.sharing import ArithmeticShares

LOG2E = 1.0 / math.log(2.0)
EXP_CLAMP = 44.0
"""exp's argument is clamped to [-44, 44]: t = x log2(e) stays within (-64, 64)."""

_T_BITS = 55  # fractional bits of the 64-bit t = x log2(e) that is decomposed
_T_HI_BITS = 75  # fractional bits of the ring128 t whose fraction feeds the polynomial
_EXP_DEGREE = 8
_EXP2_POLY = chebyshev_coefficients(lambda t: 2.0**t, 0.0, 1.0, _EXP_DEGREE)  # 2^f, f in [0, 1]
_EXP2_NEG_POLY = chebyshev_coefficients(lambda t: 2.0**-t, 0.0, 1.0, _EXP_DEGREE)  # 2^-f
_LOG_DEGREE = 10
_LOG_POLY = chebyshev_coefficients(np.log, 0.5, 1.0, _LOG_DEGREE)  # log y_n, y_n in [1/2, 1]


EXP_MAX_FRAC_BITS = 40
"""The most fractional bits exp and sigmoid take. t = x log2(e) multiplies x by log2(e)
encoded at _T_HI_BITS - f_x bits, so that constant's error, times |x| <= 44, grows with f_x:
ln 2 x 22 x 2^(f_x - 75) is 4.4e-10 relative at 40 bits (within exp's 1e-9) but 7e-9 at 44
and all of it at 55. ``SecretTensor.exp`` truncates finer inputs to 40 bits first."""


def fits_exp(bound: float, frac_bits: int) -> bool:
    """Whether x (|x| <= bound at frac_bits) can be split: x +- 44 must fit 62 bits, and x
    must have at most EXP_MAX_FRAC_BITS fractional bits."""
    return bound * 2.0**frac_bits + EXP_CLAMP * 2.0**frac_bits < 2.0**62 and frac_bits <= EXP_MAX_FRAC_BITS


# ----- the split t = x log2(e) = n + f ----------------------------------------------------


class _Split:
    """Boolean facts about t = x log2(e) (each in bit 0 of a word): the bits n0..n5 of
    n = floor(t) mod 64, the sign s of t, ``below`` [x < 44] and ``valid`` [-44 <= x < 44];
    ``lift`` the carries that lift x + 44 into ring128 (ring64 only)."""

    def __init__(self, ctx, x: ArithmeticShares, f_x: int):
        n = x.numel()
        ring = x.ring
        self.f_x = f_x
        self.clamp = round(EXP_CLAMP * 2.0**f_x)
        # |t| < 63.5 * 2^55 < 2^62 for |x| < 44: its low 64 bits are its value; beyond 44 the
        # product wraps, but then `valid` is 0 and the bits are not used
        t_lo = x.mul_public(const_tensor(ring, round(LOG2E * 2.0 ** (_T_BITS - f_x)), n))
        below = x.add_public(ctx.rank, const_tensor(ring, -self.clamp, n))
        above = x.add_public(ctx.rank, const_tensor(ring, self.clamp, n))
        stacked = ArithmeticShares.cat([t_lo, below, above], 0)
        if ring.bits == 64:
            bits, c1, c2 = boolean.a2b_with_carries(ctx, stacked)
        else:
            bits, c1, c2 = boolean.bit_decompose(ctx, stacked), None, None
        t_bits, b_bits, a_bits = (bits.getitem(slice(k * n, (k + 1) * n)) for k in range(3))
        self.n_bits = [extract_bit(t_bits, _T_BITS + i) for i in range(6)]
        self.sign = t_bits.rshift(63)
        self.below = b_bits.rshift(63)  # x - 44 < 0
        self.valid = self.below.xor(a_bits.rshift(63))  # [x < 44] ^ [x < -44]
        sl = slice(2 * n, 3 * n)
        self.lift = None if c1 is None else [c1.getitem(sl), c2.getitem(sl), a_bits.rshift(63)]
        self.above_shares = above

    def tables(self, items: list[tuple[list[int], int]], inverted: bool) -> list:
        """Round-1 tables: n * 2^P (for the fraction), the factors 2^low5 (and 2^(31 - low5)
        with ``inverted``) gated by ``valid``, and the items' tables over (n5, s)."""
        n_bits, s, valid = self.n_bits, self.sign, self.valid
        both = (False, True) if inverted else (False,)
        frac = [
            bit_table(2, lambda b0, b1: (b0 + 2 * b1) << MANTISSA_BITS),
            bit_table(2, lambda b2, b3: (4 * b2 + 8 * b3) << MANTISSA_BITS),
            bit_table(2, lambda b4, ok: (16 * b4) << MANTISSA_BITS),
            bit_table(2, lambda b5, sg: (32 * b5 - 64 * sg) << MANTISSA_BITS),
        ]
        low4 = [bit_table(2, lambda b4, ok, inv=inv: ok * power_factor(b4, 4, inv)) for inv in both]
        return [
            Table(n_bits[0:2], [frac[0], *[pair_table(0, inv) for inv in both]], RING128, 0),
            Table(n_bits[2:4], [frac[1], *[pair_table(2, inv) for inv in both]], RING128, 1),
            Table([n_bits[4], valid], [frac[2], *low4], RING128, 2),
            Table([n_bits[5], s], [frac[3], *[t for t, _ in items]], RING128, 0),
        ]


def _fraction_gen(ctx, x: ArithmeticShares, split: _Split, extra_ops: list) -> Protocol:
    """Round 1 (ring64: 2): the tables of the split plus ``extra_ops``; v = 2 f - 1 at P bits.
    Returns (v, table results, extra results)."""
    f_x = split.f_x
    hi = round(LOG2E * 2.0 ** (_T_HI_BITS - f_x))  # t at 75 fractional bits: < 2^81 if valid
    n = x.numel()
    ops = list(extra_ops)
    if split.lift is None:
        ops.append(Mul([], add=x.mul_public(const_tensor(RING128, hi, n)), trunc=_T_HI_BITS - MANTISSA_BITS))
        got = yield ops
        t = got[-1]
    else:
        ops.append(Table(split.lift, [boolean.lift_table()], RING128, 1))
        got = yield ops
        x128 = embed_unsigned(split.above_shares).add(got[-1][0])
        x128 = x128.add_public(ctx.rank, const_tensor(RING128, -split.clamp, n))
        (t,) = yield [Mul([], add=x128.mul_public(const_tensor(RING128, hi, n)), trunc=_T_HI_BITS - MANTISSA_BITS)]
    return t, got[: len(extra_ops)]


def exp_items(f_out: int):
    """The final products of exp: e^x = 2^f 2^n with n = low5 + 32 n5 - 64 s, sub-range
    r = n5 + 2 s, E = 2^f at P bits."""
    return scale_items([f_out - MANTISSA_BITS + 32 * n5 - 64 * s for s in (0, 1) for n5 in (0, 1)], MANTISSA_BITS + 32)


def exp(ctx, x: ArithmeticShares, f_x: int, f_out: int) -> ArithmeticShares:
    """e^x for a secret x (f_x fractional bits; |x| + 44 must fit 62 bits), result at f_out
    bits; x is clamped to [-44, 44] (see module docstring).
    Cost: 14 rounds (ring64: 15); ``cost_per_element("exp", ...)`` bytes per element.
    Error: |e' - e^x| <= 1e-9 e^x + 1 ulp for |x| < 44 (polynomial 1.1e-12, the fraction of
    t at 2^-38, log2(e) to 2^-(76 - f_x) with f_x <= EXP_MAX_FRAC_BITS; measured 5e-12 at 20
    bits). Wrong with probability <= 2^-40."""
    shape = x.shape
    x = flatten(x)
    split = _Split(ctx, x, f_x)
    items = exp_items(f_out)
    saturate = round(math.exp(EXP_CLAMP) * 2.0**f_out)

    def protocol() -> Protocol:
        tables = split.tables(items, inverted=False)
        sat_op = Table([split.below], [[saturate, 0]], RING128, 2)
        t, got = yield from _fraction_gen(ctx, x, split, [*tables, sat_op])
        (nf01, g01), (nf23, g23), (nf4, g4), (nf5, *tops), (sat,) = got
        f = t.sub(sum_shares([nf01, nf23, nf4, nf5]))  # t - n, at P bits, in [0, 1)
        v = affine(ctx, f, 2, -(1 << MANTISSA_BITS))

        def factors() -> Protocol:
            a, *b = yield [Mul([(g01, g23)]), *[Mul([(g4, top)]) for top in tops]]
            return (yield [Mul([(a, bi)]) for bi in b])

        powers, fs = yield from parallel(powers_gen(v, _EXP_DEGREE), factors())
        (e2f,) = yield [polynomial(ctx, powers, _EXP2_POLY, MANTISSA_BITS)]
        parts = yield [Mul([(e2f, fi)], trunc=d) for fi, (_, d) in zip(fs, items, strict=True)]
        return sum_shares([*parts, sat])

    q = drive(ctx, protocol(), "exp")
    return to_ctx_ring(ctx, q).reshape(shape)


def sigmoid(ctx, z: ArithmeticShares, f_z: int, f_out: int) -> ArithmeticShares:
    """1 / (1 + e^-z) for a secret z (f_z fractional bits; |z| + 44 must fit 62 bits),
    result at f_out <= 38 bits.
    Cost: 18 rounds (ring64: 19); ``cost_per_element("sigmoid", ...)`` bytes per element.
    Error: |s' - s| <= 2.5e-10 s + 2^-37 + 1 ulp, so <= 3e-10 + 1 ulp absolute (Goldschmidt
    2^-32 relative; u = e^-|z| is kept at 37 bits); for |z| >= 44 the result is 0 or 1 (the
    true value is within 8e-20). Wrong with probability <= 2^-40 per element."""
    shape = z.shape
    z = flatten(z)
    n = z.numel()
    split = _Split(ctx, z, f_z)
    u_bits = MANTISSA_BITS - 1  # u in (0, 1] at 37 bits, so that 1 + u in (1, 2] reads as (1/2, 1] at 38
    # z >= 0 (s = 0): u = 2^-t = 2^(31 - low5) 2^-(32 n5 + 31) 2^-f
    # z < 0  (s = 1): u = 2^t  = 2^low5 2^(32 n5 - 64) 2^f
    pos_offsets = [u_bits - MANTISSA_BITS - 32 * n5 - 31 for n5 in (0, 1)]
    neg_offsets = [u_bits - MANTISSA_BITS + 32 * n5 - 64 for n5 in (0, 1)]
    items = [([1 if (r == n5) else 0 for r in range(4)], -o) for n5, o in enumerate(pos_offsets)]
    items += [([1 if (r == 2 + n5) else 0 for r in range(4)], -o) for n5, o in enumerate(neg_offsets)]

    def protocol() -> Protocol:
        tables = split.tables(items, inverted=True)
        # [z < 0]: the sign of t where |z| < 44 (valid), else [z < 44] (t wraps beyond)
        negative = bit_table(3, lambda s, ok, lt: (s if ok else lt) << u_bits)
        sign_op = Table([split.sign, split.valid, split.below], [negative], RING128, 2)
        t, got = yield from _fraction_gen(ctx, z, split, [*tables, sign_op])
        (nf01, g01, h01), (nf23, g23, h23), (nf4, g4, h4), (nf5, *tops), (s_arith,) = got
        f = t.sub(sum_shares([nf01, nf23, nf4, nf5]))
        v = affine(ctx, f, 2, -(1 << MANTISSA_BITS))

        def factors() -> Protocol:
            # z >= 0 uses 2^(31 - low5) (h), z < 0 uses 2^low5 (g)
            a_neg, a_pos, *b = yield [
                Mul([(g01, g23)]), Mul([(h01, h23)]), *[Mul([(h4, tp)]) for tp in tops[:2]],
                *[Mul([(g4, tp)]) for tp in tops[2:]],
            ]
            return (yield [Mul([(a_pos, b[0])]), Mul([(a_pos, b[1])]), Mul([(a_neg, b[2])]), Mul([(a_neg, b[3])])])

        powers, fs = yield from parallel(powers_gen(v, _EXP_DEGREE), factors())
        e_pos, e_neg = yield [
            polynomial(ctx, powers, _EXP2_NEG_POLY, MANTISSA_BITS), polynomial(ctx, powers, _EXP2_POLY, MANTISSA_BITS)
        ]
        parts = yield [
            Mul([(e_pos, fs[0])], trunc=items[0][1]), Mul([(e_pos, fs[1])], trunc=items[1][1]),
            Mul([(e_neg, fs[2])], trunc=items[2][1]), Mul([(e_neg, fs[3])], trunc=items[3][1]),
        ]
        u_pos, u_neg = parts[0].add(parts[1]), parts[2].add(parts[3])
        one = const_tensor(RING128, 1 << u_bits, n)
        d = u_pos.add(u_neg).add_public(ctx.rank, one)  # 1 + u, read as (1 + u) / 2 at 38 bits
        num = u_neg.sub(s_arith).add_public(ctx.rank, one)  # 1 (z >= 0) or u (z < 0), halved alike
        return (yield from goldschmidt_gen(ctx, d, num, None, f_out, in_bits=MANTISSA_BITS))

    q = drive(ctx, protocol(), "sigmoid")
    return to_ctx_ring(ctx, q).reshape(shape)


def log(ctx, y: ArithmeticShares, f_y: int, f_out: int) -> ArithmeticShares:
    """Natural logarithm of a secret y > 0 (f_y fractional bits, fitting 62 bits), result at
    f_out bits. log(0) returns log(2^-f_y) (one unit in the last place) and a negative y
    gives log|y|: a secret cannot be refused without revealing it.
    Cost: 22 rounds; ``cost_per_element("log", ...)`` bytes per element.
    Error: |l' - log y| <= 2e-9 + 2 ulp (polynomial 9.5e-10, the mantissa at 2^-38).
    Wrong with probability <= 2^-41 per element."""
    shape = y.shape
    y = flatten(y)
    n = y.numel()
    (ny,) = normalise(ctx, [y])
    m = ny.exp_bits
    ln2 = math.log(2.0)

    def exponent_table(i: int) -> list[int]:  # (m_i 2^i + m_(i+1) 2^(i+1)) ln2 at f_out bits
        return bit_table(2, lambda b0, b1: round((b0 * (1 << i) + b1 * (1 << (i + 1))) * ln2 * 2.0**f_out))

    def protocol() -> Protocol:
        first = bit_table(3, lambda s, b0, b1: (1 - 2 * s) * power_factor(b0, 0, True) * power_factor(b1, 1, True))
        got = yield [
            Table([ny.sign, m[0], m[1]], [first], RING128, 0),
            Table(m[0:2], [exponent_table(0)], RING128, 1),
            Table(m[2:4], [pair_table(2, True), exponent_table(2)], RING128, 2),
            Table(m[4:6], [pair_table(4, True), exponent_table(4)], RING128, 0),
            And((ny.nonzero, ny.sign)),
            *lift_ops(ny, 1),
        ]
        (f01,), (e01,), (f23, e23), (f45, e45), (both,) = got[0:5]
        nonzero = ny.nonzero.xor(ny.sign).xor(both)
        yi = lifted(y, got[5] if ny.lift is not None else None)
        a, b, (zero_fix,) = yield [
            Mul([(yi, f01)]), Mul([(f23, f45)]), Table([nonzero], [[1 << (MANTISSA_BITS - 1), 0]], RING128, 1)
        ]
        (y_n,) = yield [Mul([(a, b)], trunc=64 - MANTISSA_BITS)]
        y_n = y_n.add(zero_fix)  # y = 0: y_n = 1/2 and m = 0, so log(0) = log(2^-f_y)
        v = affine(ctx, y_n, 4, -(3 << MANTISSA_BITS))
        powers = yield from powers_gen(v, _LOG_DEGREE)
        (p,) = yield [polynomial(ctx, powers, _LOG_POLY, f_out)]
        constant = round((1 - f_y) * ln2 * 2.0**f_out)
        return sum_shares([p, e01, e23, e45]).add_public(ctx.rank, const_tensor(RING128, constant, n))

    q = drive(ctx, protocol(), "log")
    return to_ctx_ring(ctx, q).reshape(shape)



def _require_exp_range(bound: float, frac_bits: int, what: str) -> None:
    if not fits_exp(bound, frac_bits):
        raise RangeError(
            f"{what}: |value| up to {bound:.4g} at {frac_bits} fractional bits is too large to split (|x| + 44 "
            f"must fit 62 bits, at most {EXP_MAX_FRAC_BITS} fractional bits): declare a tighter bound or use "
            "fewer fractional bits"
        )


def plan_exp(ring, ctx_frac, bound_x, f_x, frac_bits=None) -> tuple[int, float]:
    """(fractional bits, public bound e^min(bound, 44)) of exp(x)."""
    _require_exp_range(bound_x, f_x, "exp")
    bound = math.exp(min(bound_x, EXP_CLAMP))
    f = output_frac_bits(ring, ctx_frac, bound, frac_bits, what="exp")
    return f, bound * (1 + 1e-9) + 2.0**-f


def plan_sigmoid(ring, ctx_frac, bound_z, f_z, frac_bits=None) -> tuple[int, float]:
    """(fractional bits <= 38, public bound 1) of sigmoid(z)."""
    _require_exp_range(bound_z, f_z, "sigmoid")
    f = output_frac_bits(ring, ctx_frac, 1.0, frac_bits, most=MANTISSA_BITS, what="sigmoid")
    if f > MANTISSA_BITS:
        raise RangeError(f"sigmoid: at most {MANTISSA_BITS} fractional bits (its internal precision), not {f}")
    return f, 1.0


def plan_log(ring, ctx_frac, bound_y, f_y, frac_bits=None) -> tuple[int, float]:
    """(fractional bits, public bound max(f ln 2, ln bound) + 1e-6) of log(y)."""
    require_normalisable(bound_y, f_y, "log")
    bound = max(f_y * math.log(2.0), math.log(max(bound_y, 1.0))) + 1e-6
    f = output_frac_bits(ring, ctx_frac, bound, frac_bits, what="log")
    return f, bound + 2.0**-f
