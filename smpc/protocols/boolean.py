"""Boolean replicated sharing: AND, adders, arithmetic-to-boolean and bit injection.

Values are 64-bit words XOR-shared as (b_i, b_{i+1}) on party i (``sharing.BooleanShares``).
XOR, NOT and shifts are local; AND costs one round and one word per element per party.
For a ring128 secret known to fit 64 bits only the low lane is decomposed: shares reduce
mod 2^64 exactly, so comparisons cost the same on both rings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from smpc.sharing import N_COMPUTE, ArithmeticShares, BooleanShares

if TYPE_CHECKING:
    from smpc.context import Context
    from smpc.ring import Ring

_LEVELS = (1, 2, 4, 8, 16, 32)  # Kogge-Stone shifts covering 64 bits


def low_words(ring: Ring, t: torch.Tensor) -> torch.Tensor:
    """The low 64 bits of a ring tensor (the value mod 2^64)."""
    return t[0] if ring.lanes == 2 else t


def _xor_zero_sharing(ctx: Context, shape) -> torch.Tensor:
    n = 1
    for s in shape:
        n *= s
    return (ctx.prg_next.int64(n) ^ ctx.prg_prev.int64(n)).reshape(tuple(shape))


def and_many(ctx: Context, pairs: list[tuple[BooleanShares, BooleanShares]], step: str = "and") -> list[BooleanShares]:
    """Bitwise AND of several pairs in one round (their words travel in one message).

    z_i = x_i&y_i ^ x_i&y_{i+1} ^ x_{i+1}&y_i ^ alpha_i, then party i sends z_i to party i-1.
    Cost: 1 round; 1 word (8 bytes) per element per pair per party.
    """
    flats = []
    sizes = []
    for x, y in pairs:
        z = (x.first & y.first) ^ (x.first & y.second) ^ (x.second & y.first)
        flats.append(z.reshape(-1))
        sizes.append(z.shape)
    z = torch.cat(flats) if len(flats) > 1 else flats[0]
    z ^= _xor_zero_sharing(ctx, z.shape)
    prev, nxt = (ctx.rank - 1) % N_COMPUTE, (ctx.rank + 1) % N_COMPUTE
    other = ctx.exchange(step, sends={prev: z}, recv_from=[nxt])[nxt]
    out = []
    offset = 0
    for shape in sizes:
        n = 1
        for s in shape:
            n *= s
        out.append(BooleanShares(z[offset : offset + n].reshape(shape), other[offset : offset + n].reshape(shape)))
        offset += n
    return out


def and_(ctx: Context, x: BooleanShares, y: BooleanShares, step: str = "and") -> BooleanShares:
    """x & y. Cost: 1 round, 1 word per element per party."""
    return and_many(ctx, [(x, y)], step)[0]


def _component(ctx: Context, x: ArithmeticShares, j: int) -> BooleanShares:
    """The boolean sharing whose only non-zero component is s_j (low 64 bits): local."""
    ring = x.ring
    rank = ctx.rank
    zero = torch.zeros_like(low_words(ring, x.first))
    first = low_words(ring, x.first) if rank == j else zero
    second = low_words(ring, x.second) if (rank + 1) % N_COMPUTE == j else zero
    return BooleanShares(first, second)


def _carry_save(ctx: Context, x: ArithmeticShares) -> tuple[BooleanShares, BooleanShares]:
    """x = s_0 + s_1 + s_2 (mod 2^64) as two boolean-shared words (sum, carry) with
    x = sum + carry: sum = s_0^s_1^s_2 is local, carry = maj(s_0,s_1,s_2) << 1 costs one AND
    via maj(a,b,c) = (a^c)&(b^c) ^ c. Cost: 1 round, 1 word per element per party."""
    ring = x.ring
    total = BooleanShares(low_words(ring, x.first), low_words(ring, x.second))
    a, b, c = (_component(ctx, x, j) for j in range(3))
    maj = and_(ctx, a.xor(c), b.xor(c), "a2b-csa").xor(c)
    return total, maj.lshift(1)


def _prefix_carries(ctx: Context, x: BooleanShares, y: BooleanShares, need_all: bool):
    """Kogge-Stone parallel prefix: returns (G, P0) where G bit i is the carry out of bit i
    of x + y and P0 = x ^ y. Cost: 1 + 6 rounds; 1 word for the first, 2 per level (1 for
    the last when only carries are needed)."""
    p0 = x.xor(y)
    g = and_(ctx, x, y, "a2b-g")
    p = p0
    for level, shift in enumerate(_LEVELS):
        last = level == len(_LEVELS) - 1
        if last and not need_all:
            (pg,) = and_many(ctx, [(p, g.lshift(shift))], f"a2b-ks{shift}")
        else:
            pg, p = and_many(ctx, [(p, g.lshift(shift)), (p, p.lshift(shift))], f"a2b-ks{shift}")
        g = g.xor(pg)
    return g, p0


def bit_decompose(ctx: Context, x: ArithmeticShares) -> BooleanShares:
    """Arithmetic-to-boolean conversion of the low 64 bits of x: a carry-save layer, then a
    log-depth (Kogge-Stone) adder. Cost: 8 rounds; 14 words (112 bytes) per element per
    party. Error: exact."""
    total, carry = _carry_save(ctx, x)
    g, p0 = _prefix_carries(ctx, total, carry, need_all=True)
    return p0.xor(g.lshift(1))


def msb(ctx: Context, x: ArithmeticShares) -> BooleanShares:
    """Bit 63 of x mod 2^64 (the sign of a value known to fit 64 bits), in bit 0 of the
    result. Cost: 8 rounds; 13 words per element per party. Error: exact."""
    total, carry = _carry_save(ctx, x)
    g, p0 = _prefix_carries(ctx, total, carry, need_all=False)
    top = p0.xor(g.lshift(1)).rshift(63)
    return top


def equals_zero(ctx: Context, x: ArithmeticShares) -> BooleanShares:
    """[x == 0 mod 2^64] in bit 0. Party 0 knows u = s_0 + s_1, parties 1 and 2 know
    v = -s_2; x == 0 iff u == v. Party 0 boolean-shares u, e = u ^ v is local, and an AND
    tree over the 64 bits of ~e tests it. Cost: 7 rounds; party 0 sends 2 words per element
    in the first, then 1 word per element per party per level. Error: exact."""
    ring = x.ring
    rank = ctx.rank
    shape = ring.shape(x.first)
    step = "eqz-input"
    if rank == 0:
        u = low_words(ring, x.first) + low_words(ring, x.second)
        q0 = ctx.prg_prev.int64(u.numel()).reshape(shape)
        q1 = ctx.prg_next.int64(u.numel()).reshape(shape)
        masked = u ^ q0 ^ q1
        ctx.exchange(step, sends={1: masked, 2: masked})
        e = BooleanShares(q0, q1)
    else:
        masked = ctx.exchange(step, recv_from=[0])[0]
        if rank == 1:
            v = -low_words(ring, x.second)
            e = BooleanShares(ctx.prg_prev.int64(masked.numel()).reshape(shape), masked ^ v)
        else:
            v = -low_words(ring, x.first)
            e = BooleanShares(masked ^ v, ctx.prg_next.int64(masked.numel()).reshape(shape))
    z = e.invert(rank)
    for shift in (32, 16, 8, 4, 2, 1):
        z = and_(ctx, z, z.rshift(shift), f"eqz-and{shift}")
    return z.and_public(1)


def bit_to_arithmetic(ctx: Context, b: BooleanShares, ring: Ring) -> ArithmeticShares:
    """Bit injection: bit 0 of a boolean sharing as an arithmetic 0/1 in ``ring``, in one round.

    Party 0 knows c = b_0 ^ b_1, parties 1 and 2 know b_2; b = c ^ b_2. With r_0 (key of
    parties 0,2) and r_1 (key of 0,1) as two shares, the third is m_{b_2} where
    m_j = (c ^ j) - r_0 - r_1. Party 0 sends both m_0, m_1 to party 1 masked with w_0, w_1
    from the key it shares with party 2, who sends w_{b_2} (three-party OT, ABY3); the same
    towards party 2 with the roles of 1 and 2 swapped.
    Cost: 1 round; party 0 sends 4 ring elements per element, parties 1 and 2 one each.
    Error: exact. Leakage: none (each receiver learns m_{b_2}, masked by a share it lacks).
    """
    rank = ctx.rank
    shape = b.shape
    step = "b2a"
    if rank == 0:
        c = (b.first ^ b.second) & 1
        r0 = ring.random(ctx.prg_prev, shape)
        w_to1 = [ring.random(ctx.prg_prev, shape) for _ in range(2)]
        r1 = ring.random(ctx.prg_next, shape)
        w_to2 = [ring.random(ctx.prg_next, shape) for _ in range(2)]
        base = ring.neg(ring.add(r0, r1))
        m = [ring.add(ring.from_int64(c ^ j), base) for j in (0, 1)]
        to1 = ring.stack([ring.add(m[j], w_to1[j]) for j in (0, 1)])
        to2 = ring.stack([ring.add(m[j], w_to2[j]) for j in (0, 1)])
        ctx.exchange(step, sends={1: to1, 2: to2})
        return ArithmeticShares(ring, r0, r1)
    choice = (b.second if rank == 1 else b.first) & 1
    other = 2 if rank == 1 else 1
    if rank == 1:
        r1 = ring.random(ctx.prg_prev, shape)
        w_to2 = [ring.random(ctx.prg_prev, shape) for _ in range(2)]
        help_other = _select(ring, choice, w_to2[0], w_to2[1])
    else:
        r0 = ring.random(ctx.prg_next, shape)
        w_to1 = [ring.random(ctx.prg_next, shape) for _ in range(2)]
        help_other = _select(ring, choice, w_to1[0], w_to1[1])
    got = ctx.exchange(step, sends={other: help_other}, recv_from=[0, other])
    pair = got[0]
    masked = _select(ring, choice, ring.getitem(pair, 0), ring.getitem(pair, 1))
    last = ring.sub(masked, got[other])
    if rank == 1:
        return ArithmeticShares(ring, r1, last)
    return ArithmeticShares(ring, last, r0)


def _select(ring: Ring, choice: torch.Tensor, if0: torch.Tensor, if1: torch.Tensor) -> torch.Tensor:
    """Elementwise choice ? if1 : if0 for a public-to-this-party 0/1 int64 tensor."""
    return torch.where(choice.bool(), if1, if0)
