"""Boolean replicated sharing: AND, adders, arithmetic-to-boolean and bit injection.

Values are 64-bit words XOR-shared as (b_i, b_{i+1}) on party i (``sharing.BooleanShares``).
XOR, NOT and shifts are local; AND costs one round and one word per element per party.
For a ring128 secret known to fit 64 bits only the low lane is decomposed: shares reduce
mod 2^64 exactly, so comparisons cost the same on both rings.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from smpc.protocols.fused import aes_kernels, xor_random2_
from smpc.ring import broadcast_shape, c_kernels
from smpc.sharing import N_COMPUTE, ArithmeticShares, BooleanShares

if TYPE_CHECKING:
    from smpc.context import Context
    from smpc.ring import Ring

_LEVELS = (1, 2, 4, 8, 16, 32)  # prefix-OR shifts covering 64 bits


def low_words(ring: Ring, t: torch.Tensor) -> torch.Tensor:
    """The low 64 bits of a ring tensor (the value mod 2^64)."""
    return t[0] if ring.lanes == 2 else t


def and_many(ctx: Context, pairs: list[tuple[BooleanShares, BooleanShares]], step: str = "and") -> list[BooleanShares]:
    """Bitwise AND of several pairs in one round (their words travel in one message).

    z_i = x_i&y_i ^ x_i&y_{i+1} ^ x_{i+1}&y_i ^ alpha_i, then party i sends z_i to party i-1.
    Cost: 1 round; 1 word (8 bytes) per element per pair per party.
    """
    # every pair's local term goes straight into one message buffer (no concatenation copy),
    # as x_i & (y_i ^ y_{i+1}) ^ x_{i+1} & y_i: three passes instead of five
    sizes = [broadcast_shape(x.shape, y.shape) for x, y in pairs]
    counts = [math.prod(shape) for shape in sizes]
    z = torch.empty(sum(counts), dtype=torch.int64)
    offset = 0
    for (x, y), shape, n in zip(pairs, sizes, counts, strict=True):
        segment = z[offset : offset + n].view(shape)
        torch.bitwise_xor(y.first, y.second, out=segment)
        segment &= x.first
        segment ^= x.second & y.first
        offset += n
    other = _reshare_terms(ctx, z, step).second
    out = []
    offset = 0
    for shape, n in zip(sizes, counts, strict=True):
        out.append(BooleanShares(z[offset : offset + n].view(shape), other[offset : offset + n].view(shape)))
        offset += n
    return out


def and_(ctx: Context, x: BooleanShares, y: BooleanShares, step: str = "and") -> BooleanShares:
    """x & y. Cost: 1 round, 1 word per element per party."""
    return and_many(ctx, [(x, y)], step)[0]


def _carry_save(ctx: Context, x: ArithmeticShares) -> tuple[BooleanShares, BooleanShares]:
    """x = s_0 + s_1 + s_2 (mod 2^64) as two boolean-shared words (sum, carry) with
    x = sum + carry: sum = s_0^s_1^s_2 is local, carry = maj(s_0,s_1,s_2) << 1 costs one AND
    (``_majority``). Cost: 1 round, 1 word per element per party."""
    ring = x.ring
    t1, t2 = low_words(ring, x.first), low_words(ring, x.second)
    m1, m2 = _majority(ctx, t1.reshape(-1), t2.reshape(-1), "a2b-csa")
    return BooleanShares(t1, t2), BooleanShares(m1.view(t1.shape), m2.view(t1.shape)).lshift(1)


def _prefix_carries(ctx: Context, x: BooleanShares, y: BooleanShares, step: str = "a2b"):
    """All carries of x + y: returns (G, P0) where G bit i is the carry out of bit i and
    P0 = x ^ y. g = x & y (1 round), then a Sklansky prefix over (g, p) (``_sklansky_level``):
    6 levels of 1 word each, since at level l only the 32 bits in the upper halves of the
    2^(l+1)-blocks change and their two products (p_i & g_j, p_i & p_j) share one word.
    Cost: 7 rounds; 7 words (56 bytes) per element per party (Kogge-Stone: 12)."""
    shape = x.shape
    flat = [t.reshape(-1) for t in (x.first, x.second, y.first, y.second)]
    z = torch.bitwise_xor(flat[2], flat[3])
    z &= flat[0]
    z ^= flat[1] & flat[2]
    g = _reshare_terms(ctx, z, f"{step}-g")
    p0 = BooleanShares(flat[0] ^ flat[2], flat[1] ^ flat[3])
    g1, g2 = g.first, g.second  # fresh buffers: updated in place below
    p1, p2 = p0.first.clone(), p0.second.clone()
    for level in range(6):
        g1, g2, p1, p2 = _sklansky_level(ctx, g1, g2, p1, p2, level, f"{step}-sk{level}")
    return BooleanShares(g1.view(shape), g2.view(shape)), p0.reshape(shape)


def as_int64(word: int) -> int:
    """A 64-bit pattern (any Python int, taken mod 2^64) as the int64 value torch stores."""
    word &= (1 << 64) - 1
    return word - (1 << 64) if word >> 63 else word


def _sklansky_masks(level: int) -> tuple[int, int]:
    """(upper: bits with bit ``level`` of their position set, top: the top bit of every lower
    half of a 2^(level+1)-block), as int64 words."""
    upper = sum(1 << i for i in range(64) if (i >> level) & 1)
    top = sum(1 << i for i in range(64) if i % (2 << level) == (1 << level) - 1)
    return as_int64(upper), as_int64(top)


_SKLANSKY = [_sklansky_masks(level) for level in range(6)]


def _sklansky_level(ctx: Context, g1, g2, p1, p2, level: int, step: str):
    """One Sklansky level (h = 2^level): for every bit i in an upper half (mask m), with j the
    top bit of its block's lower half, g_i ^= p_i & g_j and p_i &= p_j (XOR: g_i and p_i
    exclude each other). One AND of x' = x | x >> h and y' = y_g | y_p >> h, where x = p & m
    and y_g, y_p are g_j, p_j spread over the upper half (a bit at j + 1 times a run of h
    ones): the products of p_i & g_j land in the upper half, those of p_i & p_j in the lower.
    Cost: 1 round, 1 word per element per party."""
    h = 1 << level
    upper, top = _SKLANSKY[level]
    n = g1.numel()
    z = torch.empty(n, dtype=torch.int64)
    kernels = c_kernels()
    if kernels is not None:
        kernels.sklansky_terms(z.data_ptr(), g1.data_ptr(), p1.data_ptr(), g2.data_ptr(), p2.data_ptr(), n,
                               upper & _MASK64, top & _MASK64, h)
    else:
        x1, y1 = _sklansky_operands(g1, p1, upper, top, h)
        x2, y2 = _sklansky_operands(g2, p2, upper, top, h)
        torch.bitwise_xor(y1, y2, out=z)
        z &= x1
        z ^= x2 & y1
    zs = _reshare_terms(ctx, z, step)
    for g, p, t in ((g1, p1, zs.first), (g2, p2, zs.second)):
        if kernels is not None:
            kernels.sklansky_update(g.data_ptr(), p.data_ptr(), t.data_ptr(), n, upper & _MASK64, h)
        else:
            g ^= t & upper
            p &= ~upper
            p |= (t & ~upper) << h
    return g1, g2, p1, p2


_MASK64 = (1 << 64) - 1


def _sklansky_operands(g: torch.Tensor, p: torch.Tensor, upper: int, top: int, h: int):
    """x' and y' of ``_sklansky_level`` for one share component (torch path; int64 right
    shifts are arithmetic, so shifted copies are masked to the lower halves)."""
    run = (1 << h) - 1
    xm = p & upper
    x = (xm >> h) & ~upper
    x |= xm
    yg = ((g & top) << 1) * run
    yp = ((p & top) << 1) * run
    y = (yp >> h) & ~upper
    y |= yg
    return x, y


def bit_decompose(ctx: Context, x: ArithmeticShares) -> BooleanShares:
    """Arithmetic-to-boolean conversion of the low 64 bits of x: a carry-save layer, then a
    log-depth (Sklansky) adder. Cost: 8 rounds; 8 words (64 bytes) per element per party.
    Error: exact."""
    total, carry = _carry_save(ctx, x)
    g, p0 = _prefix_carries(ctx, total, carry)
    return p0.xor(g.lshift(1))


def msb(ctx: Context, x: ArithmeticShares) -> BooleanShares:
    """Bit 63 of x mod 2^64 (the sign of a value known to fit 64 bits), in bit 0 of the
    result. The three shares' low words t_0, t_1, t_2 sum to x mod 2^64; as boolean words,
    t = t_0 ^ t_1 ^ t_2 is already shared and c = maj(t_0, t_1, t_2) << 1 costs one AND
    (``_majority``), so x = t + c. Bit 63 of x is t_63 ^ c_63 ^ (the carry into bit 63), the
    group generate of bits 0..62 under g = t & c, p = t ^ c: one AND for g, then a packed
    carry-lookahead tree (``_carry_tree``) with bit 63 entered as a neutral group (g = 0,
    p = 1) so that the tree runs over whole words.
    Cost: 8 rounds; 1 (majority) + 1 (g) + ~2 (tree: 1 + 1/2 + ... + 1/32) words, about
    32 bytes, per element per party. Error: exact."""
    ring = x.ring
    shape = x.shape
    t1 = low_words(ring, x.first).reshape(-1)
    t2 = low_words(ring, x.second).reshape(-1)
    m1, m2 = _majority(ctx, t1, t2, "msb-maj")
    n = t1.numel()
    padded = max(32, -(-n // 32) * 32)
    z = torch.zeros(padded, dtype=torch.int64)
    p1 = torch.zeros(padded, dtype=torch.int64)
    p2 = torch.zeros(padded, dtype=torch.int64)
    top1 = torch.empty(n, dtype=torch.int64)
    top2 = torch.empty(n, dtype=torch.int64)
    set1, set2 = ctx.rank == 0, ctx.rank == 2  # component 0 takes the public p_63 = 1
    kernels = c_kernels()
    if kernels is not None and n:
        t1, t2 = t1.contiguous(), t2.contiguous()
        kernels.msb_prepare(z.data_ptr(), p1.data_ptr(), p2.data_ptr(), top1.data_ptr(), top2.data_ptr(),
                            t1.data_ptr(), t2.data_ptr(), m1.data_ptr(), m2.data_ptr(), n, int(set1), int(set2))
    else:
        c1, c2 = m1 << 1, m2 << 1
        torch.bitwise_xor(c1, c2, out=z[:n])
        z[:n] &= t1
        z[:n] ^= t2 & c1
        z[:n] &= _NOT_BIT63
        for p, top, t, c, set63 in ((p1, top1, t1, c1, set1), (p2, top2, t2, c2, set2)):
            q = t ^ c
            torch.bitwise_and(q >> 63, 1, out=top)
            torch.bitwise_and(q, _NOT_BIT63, out=p[:n])
            if set63:
                p[:n] |= _BIT63
    g = _reshare_terms(ctx, z, "msb-g")
    carries = _carry_tree(ctx, g, BooleanShares(p1, p2), "msb-c")
    top1 ^= _unpack_bits(carries.first, n, per_word=32)
    top2 ^= _unpack_bits(carries.second, n, per_word=32)
    return BooleanShares(top1.view(shape), top2.view(shape))


def _majority(ctx: Context, s1: torch.Tensor, s2: torch.Tensor, step: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean shares of maj(t_0, t_1, t_2) for the three share words t_k of which this
    party holds (s1, s2) = (t_i, t_(i+1)): maj = t_0 t_1 ^ t_1 t_2 ^ t_2 t_0, so party i's
    3-out-of-3 term is simply s1 & s2. Cost: 1 round, 1 word per element per party."""
    z = torch.bitwise_and(s1, s2)
    shares = _reshare_terms(ctx, z, step)
    return shares.first, shares.second


_BIT63 = -(1 << 63)
_NOT_BIT63 = (1 << 63) - 1
_CARRY_FIELDS = (2, 4, 8, 16, 32, 64)


def field_low_halves(field: int) -> int:
    """The int64 word with the low field/2 bits of every ``field``-bit field set."""
    word = 0
    for k in range(0, 64, field):
        word |= ((1 << (field // 2)) - 1) << k
    return as_int64(word)


_CARRY_LOW = {f: field_low_halves(f) for f in _CARRY_FIELDS}


def _reshare_terms(ctx: Context, z: torch.Tensor, step: str) -> BooleanShares:
    """Turn this party's 3-out-of-3 term of an AND (contiguous int64, modified in place) into
    replicated shares: mask it with the zero-sharing of the pairwise streams, send it to the
    previous party. Cost: 1 round, one word per word."""
    xor_random2_(z, ctx.prg_next, ctx.prg_prev)
    prev, nxt = (ctx.rank - 1) % N_COMPUTE, (ctx.rank + 1) % N_COMPUTE
    other = ctx.exchange(step, sends={prev: z}, recv_from=[nxt])[nxt]
    return BooleanShares(z, other)


def _halves(u: torch.Tensor, v: torch.Tensor, w: torch.Tensor, h: int, mlo: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x = [v_hi | u_hi] and y = [v_lo | w_lo] in every field of width 2h (mlo masks the low
    halves): the operand pairs of one layer of a prefix or fold, built in place."""
    x = u >> h
    x &= mlo
    x |= v & ~mlo
    y = v & mlo
    y <<= h
    y |= w & mlo
    return x, y


def _carry_operands(g: torch.Tensor, p: torch.Tensor, h: int, mlo: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x = [p_hi | p_hi] and y = [p_lo | g_lo] in every field (one share component)."""
    return _halves(p, p, g, h, mlo)


def _carry_step(g: torch.Tensor, z: torch.Tensor, h: int, mlo: int, compact: bool, need_p: bool):
    """g' = g_hi ^ (p_hi & g_lo) and p' = p_hi & p_lo in the low halves of every field (one
    share component), with ``compact`` words 2j and 2j+1 interleaved into word j."""
    m = g.numel()
    words = m // 2 if compact else m
    out_g = torch.empty(words, dtype=torch.int64)
    out_p = torch.empty(words, dtype=torch.int64) if need_p else None
    kernels = c_kernels()
    if kernels is not None:
        kernels.carry_update(out_g.data_ptr(), 0 if out_p is None else out_p.data_ptr(), g.data_ptr(),
                             z.data_ptr(), m, mlo, h, int(compact))
        return out_g, out_p
    new_g = g >> h
    new_g &= mlo
    new_g ^= z & mlo
    new_p = (z >> h) & mlo if need_p else None
    if not compact:
        return new_g, new_p

    def interleave(t: torch.Tensor) -> torch.Tensor:
        out = t[1::2] << h
        out |= t[0::2]
        return out

    return interleave(new_g), None if new_p is None else interleave(new_p)


def _carry_tree(ctx: Context, g: BooleanShares, p: BooleanShares, step: str) -> BooleanShares:
    """Group generate over all 64 bits of every word, from per-bit generate g and propagate p
    (mutually exclusive, as for g = a & b, p = a ^ b) of M words (M a multiple of 32).

    Level f (field width f = 2, 4, ..., 64) combines the two halves of every f-bit field
    (g <- g_hi ^ p_hi & g_lo, p <- p_hi & p_lo; XOR since g_hi and p_hi exclude each
    other), both products in one AND. The results fill only the low halves, so two words
    interleave into one (``_carry_step``): level f runs on M / f * 2 words and every bit on
    the wire is live. Element e's carry ends in bit e % 32 of word e // 32.
    Cost: 6 rounds; M (1 + 1/2 + ... + 1/32) words per party."""
    kernels = c_kernels()
    for f in _CARRY_FIELDS:
        h, mlo = f // 2, _CARRY_LOW[f]
        last = f == _CARRY_FIELDS[-1]
        m = g.first.numel()
        z = torch.empty(m, dtype=torch.int64)
        if kernels is not None:
            kernels.carry_terms(z.data_ptr(), g.first.data_ptr(), p.first.data_ptr(), g.second.data_ptr(),
                                p.second.data_ptr(), m, mlo, h)
        else:
            x1, y1 = _carry_operands(g.first, p.first, h, mlo)
            x2, y2 = _carry_operands(g.second, p.second, h, mlo)
            torch.bitwise_xor(y1, y2, out=z)
            z &= x1
            z ^= x2 & y1
        zs = _reshare_terms(ctx, z, f"{step}{f}")
        g1, p1 = _carry_step(g.first, zs.first, h, mlo, compact=not last, need_p=not last)
        g2, p2 = _carry_step(g.second, zs.second, h, mlo, compact=not last, need_p=not last)
        g, p = BooleanShares(g1, g2), BooleanShares(p1, p2)
    return g


def equals_zero(ctx: Context, x: ArithmeticShares) -> BooleanShares:
    """[x == 0 mod 2^64] in bit 0. Party 0 knows u = s_0 + s_1, parties 1 and 2 know
    v = -s_2; x == 0 iff u == v. Party 0 boolean-shares u, e = u ^ v is local, and a packed
    AND tree over the 64 bits of ~e tests it (``_all_ones``). Cost: 7 rounds; party 0 sends
    2 words per element in the first, then every party ~1 word per element over the six
    levels (1/2 + 1/4 + ... + 1/64). Error: exact."""
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
    return BooleanShares(*(_unpack_bits(t, e.first.numel()).view(shape) for t in _all_ones(ctx, e.invert(rank))))


def _all_ones(ctx: Context, z: BooleanShares, step: str = "eqz") -> tuple[torch.Tensor, torch.Tensor]:
    """Per word of z: [all 64 bits set], as packed words (element e in bit e % 64 of word
    e // 64; both share components). Level f (field width f = 2, ..., 64) ANDs the halves
    of every field of words 2j and 2j+1 into the two halves of word j's fields
    (``_fold_operands``), so each level halves the words and every bit sent is live.
    Cost: 6 rounds; M (1/2 + 1/4 + ... + 1/64) words per party for M words."""
    n = z.first.numel()
    padded = max(64, -(-n // 64) * 64)
    state = []
    for t in (z.first, z.second):
        word = torch.full((padded,), -1, dtype=torch.int64)
        word[:n] = t.reshape(-1)
        state.append(word)
    kernels = c_kernels()
    for f in _CARRY_FIELDS:
        h, mlo = f // 2, _CARRY_LOW[f]
        m = state[0].numel()
        out = torch.empty(m // 2, dtype=torch.int64)
        if kernels is not None:
            kernels.fold_terms(out.data_ptr(), state[0].data_ptr(), state[1].data_ptr(), m, mlo, h)
        else:
            x1, y1 = _fold_operands(state[0], h, mlo)
            x2, y2 = _fold_operands(state[1], h, mlo)
            torch.bitwise_xor(y1, y2, out=out)
            out &= x1
            out ^= x2 & y1
        folded = _reshare_terms(ctx, out, f"{step}{f}")
        state = [folded.first, folded.second]
    return state[0], state[1]


def _fold_operands(t: torch.Tensor, h: int, mlo: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x = [b_hi | a_hi], y = [b_lo | a_lo] per field, for words a = t[0::2], b = t[1::2]."""
    a, b = t[0::2], t[1::2]
    return _halves(a, b, a, h, mlo)


def _unpack_bits(words: torch.Tensor, n: int, per_word: int = 64) -> torch.Tensor:
    """Bit e % per_word of word e // per_word, for e < n, as 0/1 words."""
    return ((words.reshape(-1, 1) >> _BIT_SHIFTS[:per_word]) & 1).reshape(-1)[:n]


_BIT_SHIFTS = torch.arange(64, dtype=torch.int64)


def bit_to_arithmetic(ctx: Context, b: BooleanShares, ring: Ring) -> ArithmeticShares:
    """Bit injection: bit 0 of a boolean sharing as an arithmetic 0/1 in ``ring``, with one
    ring element per element from each party (two rounds).

    Party 0 knows c = b_0 ^ b_1, parties 1 and 2 know b_2 and e = 1 - 2 b_2, so
    b = c ^ b_2 = b_2 + c e. The output shares s_0 (parties 0, 2) and s_1 (parties 0, 1) are
    drawn from the pairwise streams; s_2 = b_2 + c e - s_0 - s_1 is assembled by its holders:
    party 0 sends X = c + rho to party 1 (rho from its stream with party 2); then party 1 sends
    T_1 = e X - s_1 to party 2 and party 2 sends T_2 = -s_0 - e rho to party 1, and both set
    s_2 = b_2 + T_1 + T_2. Party 1 sees X and T_2, each masked by a value it lacks (rho, s_0);
    party 2 sees T_1, masked by s_1; party 0 receives nothing.
    Cost: 2 rounds; 1 ring element per element per party. (ABY3's one-round three-party OT
    has party 0 send 4 elements per element: over mTLS gRPC, where bytes cost more than
    rounds, this is faster.)
    Error: exact. Leakage: none.
    """
    rank = ctx.rank
    shape = tuple(b.shape)
    if rank == 0:
        c = ring.from_int64((b.first ^ b.second) & 1)
        s0 = ring.random(ctx.prg_prev, shape)
        rho = ring.random(ctx.prg_prev, shape)
        s1 = ring.random(ctx.prg_next, shape)
        ctx.exchange("b2a-x", sends={1: ring.add_(c, rho)})
        return ArithmeticShares(ring, s0, s1)
    if rank == 1:
        b2 = b.second & 1
        s1 = ring.random(ctx.prg_prev, shape)
        x = ctx.exchange("b2a-x", recv_from=[0])[0].view(shape if ring.lanes == 1 else (ring.lanes, *shape))
        t1 = ring.sub(_times_sign(ring, x, b2), s1)
        t2 = ctx.exchange("b2a-t", sends={2: t1}, recv_from=[2])[2].view(t1.shape)
        return ArithmeticShares(ring, s1, ring.add_(ring.add_(t2, ring.from_int64(b2)), t1))
    b2 = b.first & 1
    s0 = ring.random(ctx.prg_next, shape)
    rho = ring.random(ctx.prg_next, shape)
    t2 = ring.neg(ring.add_(_times_sign(ring, rho, b2), s0))
    t1 = ctx.exchange("b2a-t", sends={1: t2}, recv_from=[1])[1].view(t2.shape)
    return ArithmeticShares(ring, ring.add_(ring.add_(t1, ring.from_int64(b2)), t2), s0)


def _times_sign(ring: Ring, v: torch.Tensor, bit: torch.Tensor) -> torch.Tensor:
    """v * (1 - 2 bit) for 0/1 int64 bits: v where the bit is 0, -v where it is 1."""
    return torch.where(bit.bool(), ring.neg(v), v)


def a2b_with_carries(ctx: Context, x: ArithmeticShares) -> tuple[BooleanShares, BooleanShares, BooleanShares]:
    """``bit_decompose`` that also returns the two carries out of bit 63 (in bit 0).

    With the shares read as unsigned 64-bit words, s_0 + s_1 + s_2 = bits + 2^64 (c1 + c2)
    as integers: c1 leaves the carry-save layer, c2 the adder. Injecting c1, c2 and the sign
    bit lifts a ring64 sharing exactly into ring128 (``lift_table``).
    Cost: 8 rounds; 8 words (64 bytes) per element per party. Error: exact.
    """
    ring = x.ring
    t1, t2 = low_words(ring, x.first), low_words(ring, x.second)
    total = BooleanShares(t1, t2)
    m1, m2 = _majority(ctx, t1.reshape(-1), t2.reshape(-1), "a2bc-csa")
    maj = BooleanShares(m1.view(t1.shape), m2.view(t1.shape))
    g, p0 = _prefix_carries(ctx, total, maj.lshift(1), "a2bc")
    bits = p0.xor(g.lshift(1))
    return bits, maj.rshift(63), g.rshift(63)


def lift_table() -> list[int]:
    """Table over (c1, c2, sign) of ``a2b_with_carries`` (index c1 + 2 c2 + 4 sign) giving
    the ring128 correction -2^64 (c1 + c2 + sign): adding it to the unsigned embedding of
    the three ring64 shares yields the signed value in ring128."""
    return [(-(1 << 64) * (((i >> 0) & 1) + ((i >> 1) & 1) + ((i >> 2) & 1))) % (1 << 128) for i in range(8)]


def ones_complement_abs(bits: BooleanShares) -> BooleanShares:
    """|v| - [v < 0] for the two's complement word v (local): every bit XORed with the sign.
    Each share's own sign spread (arithmetic shift) XORs to the value's sign spread."""
    return BooleanShares(bits.first ^ (bits.first >> 63), bits.second ^ (bits.second >> 63))


def prefix_or(ctx: Context, w: BooleanShares, step: str = "por", of_abs: bool = False) -> BooleanShares:
    """Bit i of the result is the OR of bits i..63 of w (a suffix-OR from the top bit down), so
    it is all ones up to the leading one of w and zero above. Requires bit 63 of w to be 0
    (as for ``ones_complement_abs``): then arithmetic shifts of the shares are a sharing of
    the logical shift. ``of_abs``: the prefix-OR of ``ones_complement_abs(w)`` instead, the
    complement taken inside the first level. Each level reshares a | (a >> k) = a ^ b ^
    (a & b) directly: party i's term is a_i & (b_i ^ b_(i+1)) ^ a_(i+1) & b_i ^ a_i ^ b_i
    plus a zero-sharing; with the AES kernels the term and its zero-sharing come from one
    pass (``por_terms``: the same messages and PRG draws).
    Cost: 6 rounds; 1 word (8 bytes) per element per party per round. Error: exact."""
    kernels = aes_kernels()
    a1, a2 = w.first.reshape(-1), w.second.reshape(-1)
    aligned = ctx.prg_next.bytes_drawn % 8 == 0 and ctx.prg_prev.bytes_drawn % 8 == 0  # claims succeed
    if kernels is None or not (aligned and a1.is_contiguous() and a2.is_contiguous()) or a1.numel() == 0:
        if of_abs:
            w = ones_complement_abs(w)
        a1, a2 = w.first, w.second
        for shift in _LEVELS:
            b1, b2 = a1 >> shift, a2 >> shift
            z = a1 & (b1 ^ b2)
            z ^= a2 & b1
            z ^= a1
            z ^= b1
            shares = _reshare_terms(ctx, z, f"{step}{shift}")
            a1, a2 = z, shares.second.view(z.shape)
        return BooleanShares(a1, a2)
    n = a1.numel()
    prev, nxt = (ctx.rank - 1) % N_COMPUTE, (ctx.rank + 1) % N_COMPUTE
    for level, shift in enumerate(_LEVELS):
        mask_next, mask_prev = ctx.prg_next.claim(n), ctx.prg_prev.claim(n)
        z = torch.empty(n, dtype=torch.int64)
        kernels.por_terms(
            z.data_ptr(), a1.data_ptr(), a2.data_ptr(), n, shift, int(of_abs and level == 0), *mask_next, *mask_prev
        )
        a1, a2 = z, ctx.exchange(f"{step}{shift}", sends={prev: z}, recv_from=[nxt])[nxt]
    return BooleanShares(a1.view(w.first.shape), a2.view(w.first.shape))
