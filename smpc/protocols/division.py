"""Reciprocal, division, square root and inverse square root of secrets of any magnitude.

Why not CrypTen's way: a Newton iteration started from a guess tuned for [0.1, 10] diverges
or is wrong by percents for divisors outside that range. Here every operand is first
*normalised* by its secret bit length, as a floating-point unit would: the leading one of
|v| is found on the boolean decomposition and v is scaled by an exact power of two into
[1/2, 1]. The iteration then always starts from the same interval, and the scale comes back
as an exact power of two at the end. The same holds for every divisor that fits 62 bits.

Pipeline of ``divide`` (the others reuse its pieces)::

    rounds  1-8   A2B of [x, y] (ring64: with the carries that lift shares to ring128)
    rounds  9-14  prefix-OR from the top of |v| - [v < 0] (local ones' complement); the
                  one-hot of its leading one; the 6 bits a (of x), m (of y) of its position
                  (local: one 16-bit lookup per share, ``normalise._onehot_position``); [y != 0] and
                  the sign bits (local)
    round  15     table B2A (``rounds.Table``: a three-party OT over a table, indexed by bit
                  fields of the exponent words) of pairs of exponent bits: the exact
                  factors 2^(63-a), 2^(63-m) as products of three table outputs each, a
                  table over two bits giving a product of two factors in one go; the sign of
                  y as the factor +-45 2^P of Goldschmidt's start; a boolean adder starts on
                  e' = a + (63 - m) (4 rounds, 1-byte words)
    rounds 16-17  x' = x 2^(63-a) and y' = y 2^(63-m), |x'|, |y'| in [2^63, 2^64]: exact
                  products, then one truncation to P = 38 (``MANTISSA_BITS``) fractional
                  bits: x_n, y_n
    rounds 18-21  Goldschmidt: r0 = sign(y) 45/16 - 15/8 y_n (|1 - y_n r0| <= 1/16), then
                  N <- N (2 - D), D <- D (2 - D) three times: M = x_n / y_n (1 - eps),
                  0 <= eps <= 2^-32
    rounds 19-21  (alongside) table B2A of the bits of e' and of its two top bits:
                  F_i = [y != 0] 2^(e' mod 32) T_i[e' >> 5], exact
    round  22     q = sum_i M F_i, truncated by the item's right shift or exact (left)

Why the sub-ranges: the quotient's binary exponent a - m spans 2 x 63 values and no single
truncated product can hold a 38-bit mantissa shifted by all of them below 2^82. Splitting e'
by its two top bits leaves shifts by e' mod 32 < 32 within each range, so each truncated
product stays below 2^70, and left shifts need no truncation at all (``plan_scaling``
picks the mantissa precision P' that needs the fewest products; a range whose values are
below one unit is dropped).

Magnitudes and failure probability: every probabilistic truncation acts on a value below
2^82 in Z_2^128 (shown at each step), so each fails with probability <= 2^-45; division,
sqrt and log do 11 of them per element, exp 12, sigmoid 21: <= 2^-40 per element in every
case (<= 2^-41 for division). Everything else is exact. ring64 secrets are lifted into
Z_2^128 exactly (the A2B carries, see ``boolean.a2b_with_carries``), the protocol runs there
and the result is reduced mod 2^64 (exact: ``output_frac_bits`` makes it fit).

Zero and small divisors: a secret cannot be tested against a bound without revealing the
outcome, so nothing is refused at run time. A zero divisor yields 0 (the exponent factor
carries a [y != 0] flag); 1/0 = 0; sqrt and 1/sqrt of y <= 0 give 0. A divisor below the
caller's declared ``lower`` bound still gives the right quotient (the protocol is exact for
every non-zero y that fits 62 bits) but one beyond the result's public bound, which later
range checks trust: keep ``lower`` honest. The default lower bound is one unit in the last
place of the divisor (2^-f): always true, but a large public bound.

Output precision: results carry ``f_out`` fractional bits; ``output_frac_bits`` picks, by
default, the most that keep the result truncatable, within [f + 11, f + 32] and at most 52
(ring128 defaults: 31..52). Errors are stated in units of 2^-f_out ("ulp").

Costs: ``cost_per_element`` (rounds and bytes per element per party, counted from the
structure; the tests assert ``ctx.comm_stats()`` equals them).
"""

from __future__ import annotations

import math

import numpy as np

from smpc.errors import RangeError
from smpc.fixedpoint import SECURITY_BITS
from smpc.protocols.local import (
    affine,
    bit_table,
    const_tensor,
    flatten,
    public_minus,
    sum_shares,
    to_ctx_ring,
)
from smpc.protocols.normalise import (
    MANTISSA_BITS,
    Items,
    Normalised,
    lift_ops,
    lifted,
    nonzero_gen,
    normalise,
    pair_table,
    power_factor,
    require_normalisable,
    scale_items,
)
from smpc.protocols.polynomial import chebyshev_coefficients, polynomial, powers_gen
from smpc.protocols.rounds import And, Field, Mul, Protocol, Table, drive, parallel
from smpc.ring import RING128, Ring
from smpc.sharing import ArithmeticShares, BooleanShares

# ----- the exponent: a boolean adder and power-of-two factors ------------------------------


def _add6_gen(a: BooleanShares, b: BooleanShares) -> Protocol:
    """a + b for 6-bit boolean values (bits 0..5 of the words): the 7-bit sum. Kogge-Stone
    over 8 bits. Cost: 4 rounds; 6 words per element per party in all. Error: exact."""
    p0 = a.xor(b)
    ((g,),) = yield [And((a, b))]
    p = p0
    for shift in (1, 2, 4):
        if shift == 4:
            ((pg,),) = yield [And((p, g.lshift(shift)))]
        else:
            ((pg, p),) = yield [And((p, g.lshift(shift)), (p, p.lshift(shift)))]
        g = g.xor(pg)
    return p0.xor(g.lshift(1)).and_public(127)


P_MIN = 32
"""Fewest fractional bits of a mantissa entering the final scaling: its rounding (relative
2^-31 for M >= 1/2) plus Goldschmidt's 2^-32 and the earlier truncations (~2^-35) stay
below 2^-30."""


def plan_scaling(base: int, ranges: int) -> tuple[int, Items]:
    """q = M 2^(e' - 63 + base - P') with e' = 32 r + low (0 <= low < 32, r < ranges) and M a
    mantissa in [1/2, 2] at P' fractional bits: the P' in [P_MIN, P] giving the fewest
    products (then the largest P'), and the items. M 2^low < 2^(P' + 32) <= 2^70."""
    best = None
    for p_final in range(MANTISSA_BITS, P_MIN - 1, -1):
        offsets = [32 * r - 63 + base - p_final for r in range(ranges)]
        items = scale_items(offsets, p_final + 32)
        if best is None or len(items) < len(best[1]):
            best = (p_final, items)
    return best


def _low_tables(low: list[BooleanShares], invert: bool) -> list[tuple[list[BooleanShares], list[int]]]:
    """(bits, table) for 2^(low5) (or 2^(31 - low5)): pairs (b0,b1), (b2,b3); b4 alone."""
    return [
        (low[0:2], bit_table(2, lambda b0, b1: power_factor(b0, 0, invert) * power_factor(b1, 1, invert))),
        (low[2:4], bit_table(2, lambda b2, b3: power_factor(b2, 2, invert) * power_factor(b3, 3, invert))),
    ]


def _scale_gen(
    low: list[BooleanShares], top: list[BooleanShares], items: Items, flag: BooleanShares | None, invert: bool = False
) -> Protocol:
    """F_i = [flag] 2^(low5) T_i[top] for each item (``invert``: 2^(31 - low5)).
    Round 1: table B2A of (b0,b1), (b2,b3), (b4, flag) and of the top bits (one table per
    item); rounds 2-3: a product tree. Senders: party 0 sends (b0,b1), party 1 (b2,b3) and
    (b4, flag), party 2 the top table: party 0 does the most work in the truncated products
    of the same round (``Mul``). Cost: 3 rounds. Error: exact."""
    ops = [Table(b, [t], RING128, i) for i, (b, t) in enumerate(_low_tables(low, invert))]
    if flag is not None:
        ops.append(Table([low[4], flag], [bit_table(2, lambda b4, f: f * power_factor(b4, 4, invert))], RING128, 1))
    else:
        ops.append(Table([low[4]], [bit_table(1, lambda b4: power_factor(b4, 4, invert))], RING128, 1))
    ops.append(Table(top, [t for t, _ in items], RING128, 2))
    (g01,), (g23,), (g4,), tops = yield ops
    got = yield [Mul([(g01, g23)]), *[Mul([(g4, t)]) for t in tops]]
    return (yield [Mul([(got[0], r)]) for r in got[1:]])


def _apply(mantissa: ArithmeticShares, factors: list[ArithmeticShares], items: Items) -> list:
    """The final round: M * F_i, truncated where the item shifts right."""
    return [Mul([(mantissa, f)], trunc=d) for f, (_, d) in zip(factors, items, strict=True)]


# ----- Goldschmidt ----------------------------------------------------------------------

# r0 = 45/16 - 15/8 y on [1/2, 1]: |1 - y r0| <= 1/16 (the equi-ripple linear start, rounded)
_ALPHA, _BETA, _START_BITS = 45, 30, 4


def _sign_alpha_table() -> list[int]:
    """Over the divisor's sign bit s: (1 - 2s) * 45 * 2^P, so that r0 carries the sign."""
    return bit_table(1, lambda s: (1 - 2 * s) * (_ALPHA << MANTISSA_BITS))


def goldschmidt_gen(
    ctx,
    y_n: ArithmeticShares,
    x_n: ArithmeticShares | None,
    alpha: ArithmeticShares | None,
    p_final: int,
    iterations: int = 3,
    in_bits: int = MANTISSA_BITS,
) -> Protocol:
    """x_n / y_n for |y_n| in [1/2, 1] at ``in_bits`` fractional bits (x_n too), the result
    at ``p_final`` fractional bits.

    r0 = sign(y) 45/16 - 15/8 y_n (``alpha`` is the sharing of sign(y) 45 2^in_bits, None for
    a positive divisor), D0 = y_n r0 in [15/16, 17/16], N0 = x_n r0; then N <- N (2 - D),
    D <- D (2 - D): 1 - D_k = (1 - D0)^(2^k), so after 3 steps the relative error is
    (1/16)^8 = 2^-32, plus about 2^-P per truncation. With x_n None the numerator is 1/2
    (N0 = r0 / 2, kept at in_bits + 5 bits).
    Magnitudes: y_n w < 2^in_bits 1.88 2^(in_bits+4) <= 2^81 (in_bits <= 38); N (2 - D) < 2^78.
    Cost: 1 + iterations rounds."""
    n = y_n.numel()
    if alpha is None:
        w = affine(ctx, y_n, -_BETA, _ALPHA << in_bits)
    else:
        w = alpha.sub(affine(ctx, y_n, _BETA, 0))  # r0 at in_bits + 4 fractional bits
    start = 2 * in_bits + _START_BITS - MANTISSA_BITS  # D0, N0 at P bits
    ops = [Mul([(y_n, w)], trunc=start)]
    if x_n is not None:
        ops.append(Mul([(x_n, w)], trunc=start))
    got = yield ops
    d = got[0]
    num, extra = (got[1], 0) if x_n is not None else (w, in_bits + _START_BITS + 1 - MANTISSA_BITS)
    two = const_tensor(RING128, 2 << MANTISSA_BITS, n)
    for k in range(iterations):
        factor = public_minus(ctx, two, d)  # 2 - D
        last = k == iterations - 1
        ops = [Mul([(num, factor)], trunc=MANTISSA_BITS + extra + (MANTISSA_BITS - p_final if last else 0))]
        if not last:
            ops.append(Mul([(d, factor)], trunc=MANTISSA_BITS))
        got = yield ops
        num, extra = got[0], 0
        if not last:
            d = got[1]
    return num


# ----- division and reciprocal ----------------------------------------------------------


def divide(ctx, x: ArithmeticShares, f_x: int, y: ArithmeticShares, f_y: int, f_out: int) -> ArithmeticShares:
    """x / y for secrets x (f_x fractional bits) and y (f_y), result at f_out bits.

    Both must fit 62 bits as encoded integers (``fits_normalisation``; callers check the
    bounds). Algorithm, zero-divisor rule and magnitudes: module docstring.
    Cost: 22 rounds; ``cost_per_element("divide", ...)`` bytes per element (ring128 at the
    default 31 fractional bits: 1128 / 1240 / 1288 bytes from parties 0 / 1 / 2).
    Error: |q' - q| <= 2^-30 |q| + 1 ulp for every y != 0 (q = x / y of the encoded values,
    ulp = 2^-f_out; measured 4.1e-10 |q| over 1e5 bank-scale pairs); x / 0 = 0.
    Wrong with probability <= 2^-41 per element (11 truncations, each below 2^82).
    """
    shape = x.shape
    x, y = flatten(x), flatten(y)
    nx, ny = normalise(ctx, [x, y])
    # q = M 2^(a - m + f_out + f_y - f_x - P'), a - m = e' - 63 with e' = a + (63 - m) < 127
    p_final, items = plan_scaling(f_out + f_y - f_x, ranges=4)

    def mantissa() -> Protocol:
        # x' = x 2^(63-a), y' = y 2^(63-m): |x'|, |y'| in [2^63, 2^64], from three factor
        # pairs each (table over two exponent bits: 2^((1-b_i) 2^i + (1-b_j) 2^j))
        ops = [
            Table(info.exp_bits[i : i + 2], [pair_table(i, invert=True)], RING128, k)
            for k, (info, i) in enumerate((info, i) for info in (nx, ny) for i in (0, 2, 4))
        ]
        ops += [Table([ny.sign], [_sign_alpha_table()], RING128, 2), *lift_ops(nx, 1), *lift_ops(ny, 2)]
        got = yield ops
        fx, fy, (alpha,) = [g[0] for g in got[0:3]], [g[0] for g in got[3:6]], got[6]
        lifts = got[7:]
        xi = lifted(x, lifts[0] if lifts else None)
        yi = lifted(y, lifts[1] if lifts else None)
        # |x f01| <= 2^62 2^3, f23 f45 <= 2^60: exact
        got = yield [Mul([(xi, fx[0])]), Mul([(fx[1], fx[2])]), Mul([(yi, fy[0])]), Mul([(fy[1], fy[2])])]
        # x' < 2^64 (< 2^82): truncate to P fractional bits of [1/2, 1]
        x_n, y_n = yield [
            Mul([(got[0], got[1])], trunc=64 - MANTISSA_BITS), Mul([(got[2], got[3])], trunc=64 - MANTISSA_BITS)
        ]
        return (yield from goldschmidt_gen(ctx, y_n, x_n, alpha, p_final))

    def exponent() -> Protocol:
        mbar = ny.exp_word.xor_public(ctx.rank, 63)  # 63 - m
        e_word, nonzero = yield from parallel(_add6_gen(nx.exp_word, mbar), nonzero_gen(ny))
        bits = [Field(e_word, i) for i in range(7)]
        return (yield from _scale_gen(bits[:5], bits[5:7], items, nonzero))

    def protocol() -> Protocol:
        m, factors = yield from parallel(mantissa(), exponent())
        return sum_shares((yield _apply(m, factors, items)))

    q = drive(ctx, protocol(), "div")
    return to_ctx_ring(ctx, q).reshape(shape)


def reciprocal(ctx, y: ArithmeticShares, f_y: int, f_out: int) -> ArithmeticShares:
    """1 / y for a secret y (f_y fractional bits), result at f_out bits: ``divide`` with the
    numerator 1 public, so no second decomposition and no adder (e' = 63 - m is local), and
    the exponent factors 2^(63 - m mod 32) are extra outputs of the normalisation tables.
    Cost: 22 rounds; ``cost_per_element("reciprocal", ...)`` bytes per element (ring128
    defaults, T = 2: 648 / 648 / 824).
    Error: |r' - 1/y| <= 2^-30 / |y| + 1 ulp for every y != 0; 1 / 0 = 0. Wrong with
    probability <= 2^-41 per element."""
    shape = y.shape
    y = flatten(y)
    (ny,) = normalise(ctx, [y])
    m = ny.exp_bits
    # 1 = (1/2) 2^(a+1) with a = 0: q = M 2^(e' - 63 + f_out + f_y - P'), e' = 63 - m
    p_final, items = plan_scaling(f_out + f_y, ranges=2)

    def protocol() -> Protocol:
        f01 = bit_table(2, lambda b0, b1: power_factor(b0, 0, True) * power_factor(b1, 1, True))
        f23 = bit_table(2, lambda b2, b3: power_factor(b2, 2, True) * power_factor(b3, 3, True))
        f45 = bit_table(2, lambda b4, b5: power_factor(b4, 4, True) * power_factor(b5, 5, True))
        # scaling tables: 2^(16 (1 - m4)) times the item's value at the range r = 1 - m5
        scale = [bit_table(2, lambda b4, b5, t=t: power_factor(b4, 4, True) * t[1 - b5]) for t, _ in items]
        got = yield [
            Table(m[0:2], [f01], RING128, 0),
            Table(m[2:4], [f23], RING128, 1),
            Table(m[4:6], [f45, *scale], RING128, 2),
            Table([ny.sign], [_sign_alpha_table()], RING128, 0),
            And((ny.nonzero, ny.sign)),
            *lift_ops(ny, 1),
        ]
        (g01,), (g23,), (g45, *g4t), (alpha,), (both,) = got[0:5]
        nonzero = ny.nonzero.xor(ny.sign).xor(both)  # [y != 0], see _nonzero_gen
        yi = lifted(y, got[5] if ny.lift is not None else None)
        # y 2^(63-m) = (y f01) (f23 f45); the exponent factor's 2^(63-m mod 32) shares f01 f23
        a, b, g0123, (nz,) = yield [
            Mul([(yi, g01)]), Mul([(g23, g45)]), Mul([(g01, g23)]), Table([nonzero], [[0, 1]], RING128, 1)
        ]
        y_n, *tnz = yield [Mul([(a, b)], trunc=64 - MANTISSA_BITS), *[Mul([(t, nz)]) for t in g4t]]

        def exponent() -> Protocol:
            return (yield [Mul([(g0123, t)]) for t in tnz])

        m_final, factors = yield from parallel(goldschmidt_gen(ctx, y_n, None, alpha, p_final), exponent())
        return sum_shares((yield _apply(m_final, factors, items)))

    q = drive(ctx, protocol(), "recip")
    return to_ctx_ring(ctx, q).reshape(shape)


# ----- square root and inverse square root ----------------------------------------------

_ROOT_DEGREE = 8
# y = y_n 2^(m+1), y_n in [1/2, 1]: sqrt(y) = 2^h sqrt(2 y_n) (m = 2h) or 2^h 2 sqrt(y_n)
# (m = 2h + 1); the two polynomials are selected by m0 in the final scaling.
_ROOT_FUNCTIONS = {
    False: (lambda t: np.sqrt(2 * t), lambda t: 2 * np.sqrt(t)),
    True: (lambda t: 1 / np.sqrt(2 * t), lambda t: 0.5 / np.sqrt(t)),
}
_ROOT_POLYS = {
    inverse: [chebyshev_coefficients(fn, 0.5, 1.0, _ROOT_DEGREE) for fn in fns]
    for inverse, fns in _ROOT_FUNCTIONS.items()
}


def _sqrt_gen(ctx, y: ArithmeticShares, ny: Normalised, f_y: int, f_out: int, inverse: bool) -> Protocol:
    """sqrt(y) or 1/sqrt(y) (``inverse``) for y at an even number f_y of fractional bits.

    y = y_n 2^(m+1) with y_n in [1/2, 1] (the ``reciprocal`` normalisation), m = 2h + m0:
    sqrt(y) = p_m0(v) 2^h and 1/sqrt(y) = p'_m0(v) 2^(-h) with v = 4 y_n - 3 and degree-8
    near-minimax polynomials (relative error 4.5e-9 for sqrt, 5.6e-8 for 1/sqrt). The
    factors [m0 = r] 2^h (or 2^(31-h)) and [y > 0] come from the normalisation tables.
    Magnitudes: powers of |v| <= 1 below 2^76; p 2^h < 2^(P+1) 2^31 = 2^70.
    Cost: 8 rounds after the 14 of ``normalise``."""
    m = ny.exp_bits
    n = y.numel()
    half = f_y // 2
    # sqrt: q = p 2^h 2^(f_out - f_y/2 - P); 1/sqrt: q = p 2^(31-h) 2^(f_out + f_y/2 - 31 - P)
    shift = (f_out - half - MANTISSA_BITS) if not inverse else (f_out + half - 31 - MANTISSA_BITS)

    def h_factor(bit, weight):  # h = m >> 1: bit m_(i+1) has weight 2^i
        on = (1 - bit) if inverse else bit
        return 1 << (on * weight)

    t01 = [bit_table(2, lambda b0, b1, r=r: (b0 == r) * h_factor(b1, 1)) for r in (0, 1)]
    t23 = bit_table(2, lambda b2, b3: h_factor(b2, 2) * h_factor(b3, 4))
    t45 = bit_table(2, lambda b4, b5: h_factor(b4, 8) * h_factor(b5, 16))
    got = yield [
        Table(m[0:2], [pair_table(0, True), *t01], RING128, 0),
        Table(m[2:4], [pair_table(2, True), t23], RING128, 1),
        Table(m[4:6], [pair_table(4, True), t45], RING128, 2),
        And((ny.nonzero, ny.sign)),
        *lift_ops(ny, 0),
    ]
    (f01, g01_0, g01_1), (f23, g23), (f45, g45), (both,) = got[0:4]
    positive = ny.nonzero.xor(both)  # [y > 0] = P0 & ~s
    yi = lifted(y, got[4] if ny.lift is not None else None)
    a, b, c0, c1, (pos,) = yield [
        Mul([(yi, f01)]), Mul([(f23, f45)]), Mul([(g01_0, g23)]), Mul([(g01_1, g23)]),
        Table([positive], [[0, 1]], RING128, 1),
    ]
    y_n, d = yield [Mul([(a, b)], trunc=64 - MANTISSA_BITS), Mul([(g45, pos)])]
    v = affine(ctx, y_n, 4, -(3 << MANTISSA_BITS))  # in [-1, 1] at P bits

    def factors() -> Protocol:
        return (yield [Mul([(c0, d)]), Mul([(c1, d)])])

    powers, (f0, f1) = yield from parallel(powers_gen(v, _ROOT_DEGREE), factors())
    p0, p1 = yield [polynomial(ctx, powers, coefs, MANTISSA_BITS) for coefs in _ROOT_POLYS[inverse]]
    if shift >= 0:  # left shift: exact
        scale = const_tensor(RING128, 1 << shift, n)
        (q,) = yield [Mul([(p0, f0.mul_public(scale)), (p1, f1.mul_public(scale))])]
    else:
        (q,) = yield [Mul([(p0, f0), (p1, f1)], trunc=-shift)]
    return q


def _sqrt_entry(ctx, y: ArithmeticShares, f_y: int, f_out: int, inverse: bool) -> ArithmeticShares:
    shape = y.shape
    y = flatten(y)
    if f_y % 2:  # an even number of fractional bits keeps the root's scale a power of two
        y, f_y = y.lshift(1), f_y + 1
    (ny,) = normalise(ctx, [y])
    q = drive(ctx, _sqrt_gen(ctx, y, ny, f_y, f_out, inverse), "rsqrt" if inverse else "sqrt")
    return to_ctx_ring(ctx, q).reshape(shape)


def sqrt(ctx, y: ArithmeticShares, f_y: int, f_out: int) -> ArithmeticShares:
    """sqrt(y) for a secret y (f_y fractional bits; y must fit 62 bits, 61 for odd f_y),
    result at f_out bits. y <= 0 gives 0.
    Cost: 22 rounds; ``cost_per_element("sqrt", ...)`` bytes per element (ring128: 872 / 808
    / 760).
    Error: |s' - sqrt(y)| <= 1e-8 sqrt(y) + 1 ulp (polynomial 4.5e-9, fixed point below 2e-9);
    wrong with probability <= 2^-41 per element."""
    return _sqrt_entry(ctx, y, f_y, f_out, inverse=False)


def rsqrt(ctx, y: ArithmeticShares, f_y: int, f_out: int) -> ArithmeticShares:
    """1 / sqrt(y) for a secret y, as ``sqrt``. y <= 0 gives 0.
    Cost: 22 rounds, bytes as ``sqrt``. Error: |r' - 1/sqrt(y)| <= 1e-7 / sqrt(y) + 1 ulp
    (polynomial 5.6e-8)."""
    return _sqrt_entry(ctx, y, f_y, f_out, inverse=True)


# ----- public bounds and output precision (used by SecretTensor) ---------------------------


def output_frac_bits(
    ring: Ring, ctx_frac: int, bound_out: float, requested: int | None = None, most: int | None = None, what: str = ""
) -> int:
    """Fractional bits of a non-linear function's result.

    ``requested`` if given; otherwise the most bits that keep the result truncatable (so it
    can be rescaled and used in products), within [f + 11, f + 32] for the context's f and
    at most 52 (ring128 defaults: 31..52; float64 decodes a value exactly up to 52 fractional
    bits), at most ``most`` (the function's own precision), and fewer where the value would
    not fit the ring with one bit to spare. RangeError if nothing fits.
    """
    top = ring.bits - 1
    if requested is None:
        limit = truncatable_bits(ring)
        f = math.floor(limit - math.log2(max(bound_out, 2.0**-200)) - 1e-9)
        f = min(max(f, ctx_frac + 11), ctx_frac + 32, DECODE_EXACT_BITS)
        if most is not None:
            f = min(f, most)
        while f > 0 and not bound_out * 2.0**f < 2.0 ** (top - 1):
            f -= 1
    else:
        f = int(requested)
    if f < 0 or not bound_out * 2.0**f < 2.0**top:
        raise RangeError(
            f"{what}: results up to {bound_out:.4g} do not fit {ring.name} with {max(f, 0)} fractional bits; "
            "declare tighter bounds (or a divisor's lower bound), request fewer fractional bits, or use ring128"
        )
    return f


DECODE_EXACT_BITS = 52
"""Default results carry at most 52 fractional bits: ``reveal`` decodes them exactly."""


def truncatable_bits(ring: Ring) -> int:
    """log2 of the largest |encoded value| probabilistic truncation handles at 2^-40."""
    return ring.bits - 1 - SECURITY_BITS


def _lower(lower: float | None, frac_bits: int, bound: float, what: str) -> float:
    """The divisor's public lower bound on |y|: given, or one unit in the last place."""
    if lower is None:
        return 2.0**-frac_bits
    lower = float(lower)
    if not (math.isfinite(lower) and lower > 0):
        raise RangeError(f"{what}: the divisor's lower bound must be a positive number, not {lower!r}")
    if lower > bound:
        raise RangeError(f"{what}: lower bound {lower:.4g} exceeds the divisor's bound {bound:.4g}")
    return max(lower, 2.0**-frac_bits)


def plan_divide(ring, ctx_frac, bound_x, f_x, bound_y, f_y, lower=None, frac_bits=None) -> tuple[int, float]:
    """(fractional bits, public bound) of x / y; RangeError when the operands cannot be
    normalised or the result cannot fit. The bound is |x| / lower: a divisor below ``lower``
    (not detectable without revealing it) gives a value beyond it."""
    require_normalisable(bound_x, f_x, "division (numerator)")
    require_normalisable(bound_y, f_y, "division (divisor)")
    bound = bound_x / _lower(lower, f_y, bound_y, "division")
    f = output_frac_bits(ring, ctx_frac, bound, frac_bits, what="division")
    return f, bound * (1 + 2.0**-29) + 2.0**-f


def plan_reciprocal(ring, ctx_frac, bound_y, f_y, lower=None, frac_bits=None) -> tuple[int, float]:
    """(fractional bits, public bound 1 / lower) of 1 / y."""
    require_normalisable(bound_y, f_y, "reciprocal")
    bound = 1.0 / _lower(lower, f_y, bound_y, "reciprocal")
    f = output_frac_bits(ring, ctx_frac, bound, frac_bits, what="reciprocal")
    return f, bound * (1 + 2.0**-29) + 2.0**-f


def plan_sqrt(ring, ctx_frac, bound_y, f_y, inverse=False, lower=None, frac_bits=None) -> tuple[int, float]:
    """(fractional bits, public bound) of sqrt(y) (or 1 / sqrt(y), bound 1 / sqrt(lower))."""
    what = "rsqrt" if inverse else "sqrt"
    require_normalisable(bound_y, f_y + f_y % 2, what)
    bound = 1.0 / math.sqrt(_lower(lower, f_y, bound_y, what)) if inverse else math.sqrt(bound_y)
    f = output_frac_bits(ring, ctx_frac, bound, frac_bits, what=what)
    return f, bound * (1 + 1e-7) + 2.0**-f


# ----- documented costs -------------------------------------------------------------------


def cost_per_element(name: str, ring_bits: int, items: int = 0) -> tuple[int, list[int]]:
    """(rounds, bytes sent per element by parties 0, 1, 2) of a protocol, as counted from its
    structure (tests/test_division.py and tests/test_functions.py assert ``ctx.comm_stats()``
    equals n times these). ``items`` is the number of final products: ``len(plan_scaling(
    f_out + f_y - f_x, 4)[1])`` for divide, ``len(plan_scaling(f_out + f_y, 2)[1])`` for
    reciprocal, ``len(exp_items(f_out))`` for exp (fixed for the others).

    Internal arithmetic is ring128 on both rings: L = 16 bytes per ring element; boolean
    words are 8 bytes. A table over k bits with t outputs costs its sender 2 * 2^k * t * L
    and each receiver t * L; a product costs every party L (truncated: also L). Common parts:
    normalising one value (A2B + prefix-OR) costs 112 bytes per party, the A2B of exp's
    three words 192. ring64 adds the exact lift of each input (a 3-bit table).

    ================  ======  ============================================================
    protocol          rounds  bytes per element, parties 0 / 1 / 2 (T = items)
    ================  ======  ============================================================
    divide            22      280 + L(45 + 4T) / 280 + L(52 + 4T) / 280 + L(41 + 11T);
                              ring64: + 2L / + 17L / + 17L
    reciprocal        22      120 + L(25 + 4T) / 120 + L(25 + 4T) / 120 + L(22 + 11T);
                              ring64: + L / + 16L / + L
    sqrt, rsqrt       22      120 + 47L / 120 + 43L / 120 + 40L; ring64: + 16L / + L / + L
    exp               14      192 + L(39 + 11T) / 192 + L(32 + 4T) / 192 + L(35 + 4T);
                              ring64: 15 rounds, + L / + 16L / + L
    log               22      120 + 49L / 120 + 30L / 120 + 34L; ring64: + L / + 16L / + L
    sigmoid           18      192 + 102L / 192 + 67L / 192 + 82L; ring64: 19 rounds,
                              + L / + 16L / + L
    ================  ======  ============================================================

    ring128 defaults (f = 20): divide T = 2 at 31 bits (1128 / 1240 / 1288 bytes), T = 3 at
    37 (``lower=1e-3``: 1192 / 1304 / 1464); reciprocal T = 2 (648 / 648 / 824); sqrt 872 /
    808 / 760; exp (|x| <= 20, 52 bits) T = 3 (1344 / 896 / 944); log 904 / 600 / 664;
    sigmoid 1824 / 1264 / 1504.
    """
    L = 16  # noqa: N806 - the ring element size in the formulas above
    lift = ring_bits == 64
    T = items  # noqa: N806
    if name == "divide":
        base = [280 + L * (45 + 4 * T), 280 + L * (52 + 4 * T), 280 + L * (41 + 11 * T)]
        return 22, [b + lift * e for b, e in zip(base, (2 * L, 17 * L, 17 * L), strict=True)]
    if name == "reciprocal":
        base = [120 + L * (25 + 4 * T), 120 + L * (25 + 4 * T), 120 + L * (22 + 11 * T)]
        return 22, [b + lift * e for b, e in zip(base, (L, 16 * L, L), strict=True)]
    if name in ("sqrt", "rsqrt"):
        return 22, [120 + L * k + lift * e for k, e in zip((47, 43, 40), (16 * L, L, L), strict=True)]
    if name == "exp":
        base = [192 + L * (39 + 11 * T), 192 + L * (32 + 4 * T), 192 + L * (35 + 4 * T)]
        return 14 + lift, [b + lift * e for b, e in zip(base, (L, 16 * L, L), strict=True)]
    if name == "log":
        return 22, [120 + L * k + lift * e for k, e in zip((49, 30, 34), (L, 16 * L, L), strict=True)]
    if name == "sigmoid":
        return 18 + lift, [192 + L * k + lift * e for k, e in zip((102, 67, 82), (L, 16 * L, L), strict=True)]
    raise ValueError(f"no cost formula for {name!r}")
