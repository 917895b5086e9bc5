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
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from smpc.prg import PRG
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
    # every pair's local term goes straight into one message buffer (no concatenation copy),
    # as x_i & (y_i ^ y_{i+1}) ^ x_{i+1} & y_i: three passes instead of five
    sizes = [torch.broadcast_shapes(x.shape, y.shape) for x, y in pairs]
    counts = [math.prod(shape) for shape in sizes]
    z = torch.empty(sum(counts), dtype=torch.int64)
    offset = 0
    for (x, y), shape, n in zip(pairs, sizes, counts, strict=True):
        segment = z[offset : offset + n].view(shape)
        torch.bitwise_xor(y.first, y.second, out=segment)
        segment &= x.first
        segment ^= x.second & y.first
        offset += n
    z ^= ctx.prg_next.int64(z.numel())
    z ^= ctx.prg_prev.int64(z.numel())
    prev, nxt = (ctx.rank - 1) % N_COMPUTE, (ctx.rank + 1) % N_COMPUTE
    other = ctx.exchange(step, sends={prev: z}, recv_from=[nxt])[nxt]
    out = []
    offset = 0
    for shape, n in zip(sizes, counts, strict=True):
        out.append(BooleanShares(z[offset : offset + n].view(shape), other[offset : offset + n].view(shape)))
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


# ----- normalisation and multi-bit B2A (used by smpc.protocols.division / functions) -------


def a2b_with_carries(ctx: Context, x: ArithmeticShares) -> tuple[BooleanShares, BooleanShares, BooleanShares]:
    """``bit_decompose`` that also returns the two carries out of bit 63 (in bit 0).

    With the shares read as unsigned 64-bit words, s_0 + s_1 + s_2 = bits + 2^64 (c1 + c2)
    as integers: c1 leaves the carry-save layer, c2 the Kogge-Stone adder. Injecting c1, c2
    and the sign bit lifts a ring64 sharing exactly into ring128 (``lift_table``).
    Cost: 8 rounds; 14 words (112 bytes) per element per party. Error: exact.
    """
    ring = x.ring
    total = BooleanShares(low_words(ring, x.first), low_words(ring, x.second))
    a, b, c = (_component(ctx, x, j) for j in range(3))
    maj = and_(ctx, a.xor(c), b.xor(c), "a2bc-csa").xor(c)
    g, p0 = _prefix_carries(ctx, total, maj.lshift(1), need_all=True)
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


def prefix_or(ctx: Context, w: BooleanShares, step: str = "por") -> BooleanShares:
    """Bit i of the result is the OR of bits i..63 of w (a suffix-OR from the top bit down), so
    it is all ones up to the leading one of w and zero above. Requires bit 63 of w to be 0
    (as for ``ones_complement_abs``): then arithmetic shifts of the shares are a sharing of
    the logical shift. Each level reshares a | (a >> k) = a ^ b ^ (a & b) directly: party i's
    term is a_i & (b_i ^ b_(i+1)) ^ a_(i+1) & b_i ^ a_i ^ b_i plus a zero-sharing.
    Cost: 6 rounds; 1 word (8 bytes) per element per party per round. Error: exact."""
    prev, nxt = (ctx.rank - 1) % N_COMPUTE, (ctx.rank + 1) % N_COMPUTE
    a1, a2 = w.first, w.second
    n = a1.numel()
    for shift in _LEVELS:
        b1, b2 = a1 >> shift, a2 >> shift
        z = a1 & (b1 ^ b2)
        z ^= a2 & b1
        z ^= a1
        z ^= b1
        z ^= ctx.prg_next.int64(n).view(z.shape)
        z ^= ctx.prg_prev.int64(n).view(z.shape)
        got = ctx.exchange(f"{step}{shift}", sends={prev: z}, recv_from=[nxt])
        a1, a2 = z, got[nxt].view(z.shape)
    return BooleanShares(a1, a2)


def _xor_of_positions(byte: int, base: int) -> int:
    out = 0
    for k in range(8):
        if (byte >> k) & 1:
            out ^= base + k
    return out


_BYTE_INDEX = torch.tensor([[_xor_of_positions(v, 8 * b) for v in range(256)] for b in range(8)], dtype=torch.int64)


def onehot_index_word(h: BooleanShares) -> BooleanShares:
    """For a word with at most one bit set (position j), j in bits 0..5 of the result (0 when
    no bit is set). Local: XOR of the positions of set bits is linear, computed per share by
    byte lookups (8 gathers instead of 6 masked parities)."""

    def index(word: torch.Tensor) -> torch.Tensor:
        flat = word.reshape(-1)
        out = _BYTE_INDEX[0].index_select(0, flat & 255)
        for b in range(1, 8):
            out ^= _BYTE_INDEX[b].index_select(0, (flat >> (8 * b)) & 255)
        return out.view(word.shape)

    return BooleanShares(index(h.first), index(h.second))


def onehot_index_bits(h: BooleanShares, count: int = 6) -> list[BooleanShares]:
    """For a word with at most one bit set (position j), the bits of j in bit 0 of each
    result (all zero when no bit is set). Local (see ``onehot_index_word``)."""
    word = onehot_index_word(h)
    return [word.and_public(1) if i == 0 else word.rshift(i).and_public(1) for i in range(count)]


def _index(bits: list[BooleanShares], part: str) -> torch.Tensor:
    out = None
    for i, b in enumerate(bits):
        word = (b.first ^ b.second) if part == "xor" else (b.first if part == "first" else b.second)
        term = (word & 1) << i
        out = term if out is None else out | term
    return out


def _aes_ctr(key: bytes, plain: torch.Tensor) -> torch.Tensor:
    """AES-128-CTR (counter from 0) of a contiguous int64 tensor: keystream XOR plaintext in
    one C pass. The keystream is ``PRG(key)``'s stream."""
    words = plain.numel()
    out = torch.empty(words + 2, dtype=torch.int64)  # update_into wants 15 spare bytes
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    encryptor.update_into(memoryview(plain.numpy()).cast("B"), memoryview(out.numpy()).cast("B"))
    return out[:words].view(plain.shape)


def table_b2a_messages(ctx: Context, bits: list[BooleanShares], tables: list[list[int]], ring: Ring, sender: int = 0):
    """The local half of ``table_b2a``: returns (sends, expect, finish) so that a caller can
    batch it with other protocols into one message per peer per round.

    ``sends`` maps peers to flat int64 tensors, ``expect`` peers to the number of int64
    words to be received from them, ``finish(received)`` returns the output sharings.
    """
    rank = ctx.rank
    a_rank, b_rank = (sender + 1) % N_COMPUTE, (sender + 2) % N_COMPUTE
    size = 1 << len(bits)
    n_out = len(tables)
    n = bits[0].first.numel()
    shape = (n,)
    lanes = ring.lanes
    words = n_out * size * lanes * n  # the message: entries (t, j), each a ring tensor (lanes, n)
    if rank == sender:
        c = _index(bits, "xor").reshape(-1)
        r0 = [ring.random(ctx.prg_prev, shape) for _ in range(n_out)]  # key with B
        key_to_a = bytes(ctx.prg_prev.bytes(16))  # B knows it: B hands A the keystream of A's choice
        r1 = [ring.random(ctx.prg_next, shape) for _ in range(n_out)]  # key with A
        key_to_b = bytes(ctx.prg_next.bytes(16))
        plain = torch.empty((n_out, size, lanes, n), dtype=torch.int64)
        for t, table in enumerate(tables):
            values = ring.from_ints([v % (1 << ring.bits) for v in table]).reshape(lanes, size)
            lane_values = [values[lane].contiguous() for lane in range(lanes)]
            base = ring.add(r0[t], r1[t])
            for j in range(size):  # T[c ^ j] - r0 - r1
                idx = c ^ j
                for lane in range(lanes):  # 1-D index_select per lane: the fast gather path
                    torch.index_select(lane_values[lane], 0, idx, out=plain[t, j, lane])
                ring.sub_(plain[t, j].view(base.shape), base)
        sends = {a_rank: _aes_ctr(key_to_a, plain).view(-1), b_rank: _aes_ctr(key_to_b, plain).view(-1)}

        def finish_sender(got):
            return [ArithmeticShares(ring, r0[t], r1[t]) for t in range(n_out)]

        return sends, {}, finish_sender
    if rank not in (a_rank, b_rank):  # pragma: no cover - only three compute parties
        raise ValueError("table_b2a runs on the three compute parties")
    is_a = rank == a_rank
    d = _index(bits, "second" if is_a else "first").reshape(-1)  # both receivers choose d
    prg = ctx.prg_prev if is_a else ctx.prg_next  # the key shared with the sender
    mine = [ring.random(prg, shape) for _ in range(n_out)]  # r1 on A, r0 on B
    other_key = bytes(prg.bytes(16))  # encrypts the other receiver's message
    # that message's keystream is the PRG stream of other_key (AES-CTR from counter 0): draw it
    # and keep the entries at the common choice d
    idx = d.view(1, 1, 1, n).expand(n_out, 1, lanes, n)
    stream = PRG(other_key).int64(words).view(n_out, size, lanes, n)
    other = b_rank if is_a else a_rank
    sends = {other: torch.gather(stream, 1, idx).view(-1)}
    expect = {sender: words, other: n_out * lanes * n}

    def finish_receiver(got):
        chosen = torch.gather(got[sender].view(n_out, size, lanes, n), 1, idx)[:, 0]
        chosen ^= got[other].view(n_out, lanes, n)
        out = []
        for t in range(n_out):
            last = chosen[t].view(mine[t].shape)
            out.append(ArithmeticShares(ring, mine[t], last) if is_a else ArithmeticShares(ring, last, mine[t]))
        return out

    return sends, expect, finish_receiver


def table_b2a(
    ctx: Context,
    bits: list[BooleanShares],
    tables: list[list[int]],
    ring: Ring,
    sender: int = 0,
    step: str = "b2a-table",
) -> list[ArithmeticShares]:
    """Boolean-to-arithmetic conversion of a function of k secret bits in one round.

    ``bits`` are k boolean sharings (bit 0 of each word counts), ``tables`` lists public
    tables of 2^k integers (index b_0 + 2 b_1 + ...); returns, for each table T, an arithmetic
    sharing of T[b] in ``ring``. With T = [0, 1] this is bit injection; with T = [1, 2^j] it
    injects a power-of-two factor; a table over two bits delivers a product of two factors
    without a multiplication. It is the three-party OT of ``bit_to_arithmetic`` over 2^k
    choices: the sender S (any rank, ``sender``) knows c = b_S ^ b_{S+1}, the other two (A, B)
    know b_{S+2}. Shares r0 (S, B) and r1 (S, A) come from the pairwise PRGs; S encrypts the
    table of T[c ^ j] - r0 - r1 over all j once for A, under AES-CTR with a fresh key it
    shares with B, and once for B, under a key shared with A (one pass each); each receiver
    hands the other the keystream at their common choice j = b_{S+2}.
    Cost: 1 round; the sender sends 2 * 2^k ring elements per element and table, each
    receiver 1 per element and table. Error: exact. Leakage: none.
    """
    sends, expect, finish = table_b2a_messages(ctx, bits, tables, ring, sender)
    got = ctx.exchange(step, sends=sends, recv_from=sorted(expect))
    return finish(got)
