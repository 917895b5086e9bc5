"""Polynomials on a normalised mantissa: Chebyshev interpolants evaluated on secrets.

A mantissa v with |v| <= 1 at ``MANTISSA_BITS`` fractional bits gets its powers in
ceil(log2(degree)) rounds (``powers_gen``); ``polynomial`` then sums c_i v^i with the public
coefficients at ``COEF_BITS`` fractional bits (local products) and one truncation.
"""

from __future__ import annotations

from smpc.protocols.local import const_tensor
from smpc.protocols.normalise import MANTISSA_BITS
from smpc.protocols.rounds import Mul, Protocol
from smpc.ring import RING128
from smpc.sharing import ArithmeticShares

COEF_BITS = 42
"""Fractional bits of public polynomial coefficients: sum |c_i| v^i 2^(P + 42) < 2^82."""


def chebyshev_coefficients(fn, lo: float, hi: float, degree: int) -> list[float]:
    """Power-basis coefficients, in v in [-1, 1] with t = lo + (v + 1)(hi - lo) / 2, of the
    Chebyshev interpolant of fn on [lo, hi] (near-minimax; computed once at import)."""
    from numpy.polynomial import chebyshev, polynomial

    def g(v):
        return fn(lo + (v + 1) * (hi - lo) / 2)

    return [float(c) for c in chebyshev.Chebyshev.interpolate(g, degree).convert(kind=polynomial.Polynomial).coef]


def powers_gen(v: ArithmeticShares, degree: int) -> Protocol:
    """[v, v^2, ..., v^degree] for |v| <= 1 at P fractional bits: v^(2^t + i) = v^(2^t) v^i,
    so ceil(log2(degree)) rounds; products below 2^(2P) = 2^76. Error: 2^-P per product."""
    have = {1: v}
    top = 1
    while top < degree:
        wanted = [i for i in range(1, top + 1) if top + i <= degree]
        got = yield [Mul([(have[top], have[i])], trunc=MANTISSA_BITS) for i in wanted]
        have.update({top + i: g for i, g in zip(wanted, got, strict=True)})
        top *= 2
    return [have[i] for i in range(1, degree + 1)]


def polynomial(ctx, powers: list[ArithmeticShares], coefficients: list[float], out_bits: int) -> Mul:
    """The op that evaluates sum c_i v^i from the powers (at P bits), at ``out_bits`` <= P + 42:
    the coefficients enter at COEF_BITS fractional bits (local products), one truncation."""
    n = powers[0].numel()
    acc = None
    for c, v in zip(coefficients[1:], powers, strict=False):
        term = v.mul_public(const_tensor(RING128, round(c * 2.0**COEF_BITS), n))
        acc = term if acc is None else acc.add(term)
    constant = const_tensor(RING128, round(coefficients[0] * 2.0 ** (MANTISSA_BITS + COEF_BITS)), n)
    acc = acc.add_public(ctx.rank, constant)
    return Mul([], add=acc, trunc=MANTISSA_BITS + COEF_BITS - out_bits)
