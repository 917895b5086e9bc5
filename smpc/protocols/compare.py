"""Comparisons, equality and selection on arithmetic shares.

All comparisons reduce to the sign or zero-test of a difference known (by its public bound)
to fit 64 bits, decomposed with the boolean adders of ``smpc.protocols.boolean`` and injected
back as an arithmetic 0/1 in the secret's own ring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from smpc.protocols import arithmetic, boolean
from smpc.sharing import ArithmeticShares

if TYPE_CHECKING:
    from smpc.context import Context


def less_than_zero(ctx: Context, x: ArithmeticShares) -> ArithmeticShares:
    """[x < 0] as arithmetic 0/1, for |x| < 2^63 (checked by the caller from the bound).
    Cost: 10 rounds; ~32 bytes (``boolean.msb``, 8 rounds) + one ring element (bit injection,
    2 rounds) per element per party: ring64 ~40 bytes. Error: exact."""
    return boolean.bit_to_arithmetic(ctx, boolean.msb(ctx, x), x.ring)


def equal_zero(ctx: Context, x: ArithmeticShares) -> ArithmeticShares:
    """[x == 0] as arithmetic 0/1, for |x| < 2^64. Cost: 9 rounds; party 0 16 bytes, then
    ~8 bytes (``boolean.equals_zero``) + one ring element (bit injection) per element per
    party. Error: exact."""
    return boolean.bit_to_arithmetic(ctx, boolean.equals_zero(ctx, x), x.ring)


def select(
    ctx: Context, cond: ArithmeticShares, if_true: ArithmeticShares, if_false: ArithmeticShares
) -> ArithmeticShares:
    """cond ? if_true : if_false for a secret 0/1 cond: if_false + cond * (if_true - if_false).
    Cost: 1 round, 1 ring element per element per party. Error: exact."""
    return if_false.add(arithmetic.mul(ctx, cond, if_true.sub(if_false)))


def select_many(
    ctx: Context, cond: ArithmeticShares, pairs: list[tuple[ArithmeticShares, ArithmeticShares]]
) -> list[ArithmeticShares]:
    """Several selections by the same condition in one round (values stacked on a new last
    dimension so one multiplication serves all). Cost: 1 round, one ring element per element
    per pair per party. Error: exact."""
    diffs = [t.sub(f) for t, f in pairs]
    stacked = ArithmeticShares.stack(diffs, dim=-1)
    cond_b = cond.reshape((*cond.shape, 1))
    prod = arithmetic.mul(ctx, cond_b, stacked)
    ring = cond.ring
    out = []
    for k, (_, f) in enumerate(pairs):
        part = prod.getitem((..., k))
        out.append(f.add(ArithmeticShares(ring, part.first.contiguous(), part.second.contiguous())))
    return out


def _halves(x: ArithmeticShares, dim: int):
    """Split along ``dim`` into an even-length pair and an odd leftover (or None)."""
    n = x.shape[dim]
    half = n // 2
    idx = [slice(None)] * len(x.shape)
    idx[dim] = slice(0, half)
    a = x.getitem(tuple(idx))
    idx[dim] = slice(half, 2 * half)
    b = x.getitem(tuple(idx))
    rest = None
    if n % 2:
        idx[dim] = slice(2 * half, n)
        rest = x.getitem(tuple(idx))
    return a, b, rest


def reduce_extreme(
    ctx: Context, x: ArithmeticShares, dim: int, largest: bool, index: ArithmeticShares | None = None
) -> tuple[ArithmeticShares, ArithmeticShares | None]:
    """Max (or min) along ``dim`` by a log-depth tournament; optionally carries an index
    sharing along (argmax). Cost: ceil(log2 n) levels of (comparison + selection), i.e.
    11 rounds per level; n - 1 comparisons and selections in all, so about (n - 1) x
    (``less_than_zero``'s bytes + one ring element, + one more with ``index``) per party plus
    a few bytes per level (docs/costs.md: ring64 51336 bytes for n = 1000). Error: exact.
    Leakage: none beyond the result."""
    dim = dim % len(x.shape)
    while x.shape[dim] > 1:
        a, b, rest = _halves(x, dim)
        # a - b < 0  <=>  b is larger
        b_wins = less_than_zero(ctx, a.sub(b))
        if not largest:
            b_wins = b_wins.neg().add_public(ctx.rank, x.ring.from_int64(torch.tensor(1)))
        if index is None:
            (x,) = select_many(ctx, b_wins, [(b, a)])
        else:
            ia, ib, irest = _halves(index, dim)
            x, index = select_many(ctx, b_wins, [(b, a), (ib, ia)])
            if irest is not None:
                index = ArithmeticShares.cat([index, irest], dim)
        if rest is not None:
            x = ArithmeticShares.cat([x, rest], dim)
    return x, index
