"""Oblivious sort of secret-shared rows by a secret key: shuffle, then a quicksort with
sample-median pivots and opened comparisons (Hamada et al., ICISC 2012), on keys held as
boolean (XOR) words.

Why this design. The rows are first shuffled by a permutation no party knows
(``smpc.protocols.shuffle``), and the keys are distinct (the caller appends tie-breaker
bits: the join puts the bank index in a unique-per-bank key, or appends a bank and row
index word). Then every comparison outcome may be opened: for distinct keys in uniformly
random order, the outcomes of a quicksort are a function of a uniformly random permutation
only, so a simulator produces them from n alone. Opened outcomes let each party partition
the rows locally (no messages), so a sort costs O(n log n) comparisons, all comparisons of
a quicksort level in one batched call, against n log^2 n / 4 for a sorting network, or a
shuffle and a bit injection per key bit for a 3-party radix sort over 64-bit hash keys
(64 passes; far more rounds and local work here).

Keys are tuples of W 64-bit words compared lexicographically as unsigned integers (word 0
most significant), so 64-bit hashes need no sign-bit care: the circuit computes the borrow
of a - b, never a signed difference.

Comparison circuit (``less_than_words``): per bit g = ~a & b (1 AND round) and
p = ~(a ^ b); then a log-depth prefix over (g, p) pairs (g <- g_hi ^ p_hi & g_lo,
p <- p_hi & p_lo) for 6 levels inside each word and ceil(log2 W) across words. Each level
combines the high and low halves of every word: the first three by dtype views (64 -> 32
-> 16 -> 8 bits, no shifting or masking), the last three on 8-bit fields packed 8 to a word
(two half-empty words interleave into one). Both products of a level travel in one message
and every bit on the wire is live: the levels cost 1, 1/2, 1/4, ... words per key word.
The halving means bit positions rank in "tree order" (63, 31, 47, 15, ...: ``tree_order``);
a word that must compare in its natural order (a tie-breaker, a value) is stored in tree
order, a hash word needs no care since any fixed order groups equal keys. Results come out
packed 64 to a word (``PackedBits``). Cost: 7 + ceil(log2 W) rounds; about 3W words (24W
bytes) per comparison per party; opened results cost no extra round (``less_than_open``
fuses the opening into the last AND).

Sort (``sort_permutation``): each level splits every unfinished segment of more than
``SMALL`` rows in two by one pivot, the median of a sample whose order the previous level
learnt in the same batched call, and finishes smaller segments by comparing all their pairs,
all in one batched, opened comparison. ~1.1 n log2 n comparisons, in 19, 24, 28, 31 levels
at n = 1e4, 1e5, 1e6, 5.5e6 (plaintext count, ``benchmarks/sort_pivots.py``; the former 3
random pivots per segment took ~1.6-1.7 n log2 n in 13, 16, 21, 23 levels). Measured at
n = 1e5 random keys (3 orders): W = 1, 168 rounds (24 levels of 7) and 430-436 bytes per row
and party; W = 2, 192 rounds and 866-869 bytes (n = 1e4: 133-140 rounds, ~355 bytes for
W = 1). Before, with 3 random pivots: 119 and 659, 136 and 1344, 84 and 529.
The trade is bytes and CPU for rounds: about a third fewer comparisons for about 1.4x the
levels. On the 2-core benchmark machine, where the joins are CPU- and byte-bound, that is
the faster side at every size measured; over a 1 Gbit/s link with 20 ms RTT, 1e5 one-word
keys save ~23 MB per party (~0.2 s) and pay ~49 more rounds (~1 s), while 1e6 two-word keys
save ~590 MB (~4.7 s) for ~48 rounds (~1 s): the crossover lies between.
Local work per level: the compared rows' key words are gathered piece by piece straight into
the circuit's state (``_lt_start``: no full-size operand copies; the level's first AND still
travels as one message per peer), int32 row indices, and a linear (counting) move of rows
to their children. Memory: a level of M comparisons (M ~ 1.1n at most: each row against
its pivot, plus the samples' pairs) holds about 4M words of circuit state plus its messages
(the state, messages and indices, not the operands, bound the peak).
Leakage: none beyond n, provided the keys are distinct and the rows were shuffled by a
secret uniformly random permutation first (``sort_rows`` shuffles; distinct keys are the
caller's duty). With duplicate keys the opened outcomes would reveal equalities.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from smpc.errors import ProtocolError
from smpc.protocols import boolean
from smpc.protocols.fused import xor_random2_
from smpc.protocols.shuffle import Shares, Shuffle
from smpc.sharing import N_COMPUTE, ArithmeticShares, BooleanShares

if TYPE_CHECKING:
    from smpc.context import Context

_TAIL_FIELDS = (8, 4, 2)


_LOW = {f: boolean.field_low_halves(f) for f in _TAIL_FIELDS}
_HALF = {torch.int64: torch.int32, torch.int32: torch.int16, torch.int16: torch.int8}
_LITTLE_ENDIAN = sys.byteorder == "little"


def _bitrev(value: int, bits: int) -> int:
    return int(f"{value:0{bits}b}"[::-1], 2)


POSITION = torch.tensor([8 * (t % 8) + _bitrev(t // 8, 3) for t in range(64)], dtype=torch.int64)
"""Where the trees leave results: the bit of word 64j + t sits at position POSITION[t] of
packed word j. The first three levels halve words by dtype views (64 -> 32 -> 16 -> 8 bits,
element order kept), so word e's 8-bit state is byte e % 8 of word e // 8; the last three
work on 8-bit fields and interleave word pairs into field halves (``_compact``)."""


def _index_swaps() -> list[tuple[int, int]]:
    """(shift, mask) delta swaps that exchange index bits k and 5-k of a bit position."""
    swaps = []
    for i, j in ((0, 5), (1, 4), (2, 3)):
        d = (1 << j) - (1 << i)
        mask = 0
        for pos in range(64):
            if (pos >> i) & 1 and not (pos >> j) & 1:
                mask |= 1 << pos
        swaps.append((d, boolean.as_int64(mask)))
    return swaps


_SWAPS = _index_swaps()


def tree_order(words: torch.Tensor) -> torch.Tensor:
    """Permute the bits of int64 words so that bit position p holds the bit of significance
    s(p) = (p with its 6 index bits reversed) (an involution). Every tree level combines
    bit i + h (more significant) with bit i of each h-bit half (h = 32, 16, ..., 1), so the
    circuit ranks positions 63, 31, 47, 15, ... from the top: s(p) is that rank. A word that
    must compare in its natural unsigned order is stored in tree order; hash words need no
    care (any fixed order groups equal keys). Linear over XOR, so it applies to each share."""
    x = words.clone()
    for d, mask in _SWAPS:
        t = ((x >> d) ^ x) & mask
        x ^= t ^ (t << d)
    return x


@dataclass
class PackedBits:
    """m secret bits packed 64 to a word as the trees leave them: bit i is at position
    POSITION[i % 64] of word i // 64 (no work to pack or unpack them for the wire)."""

    shares: BooleanShares
    m: int

    def unpack(self) -> BooleanShares:
        """The bits as an (m,) boolean sharing with each bit in bit 0 (local)."""
        return BooleanShares(unpack_bits(self.shares.first, self.m), unpack_bits(self.shares.second, self.m))


def unpack_bits(words: torch.Tensor, m: int) -> torch.Tensor:
    """Bits (0/1 int64, shape (m,)) of packed words (``POSITION`` order)."""
    return ((words.reshape(-1, 1) >> POSITION) & 1).reshape(-1)[:m]


_POSITION_NP = POSITION.numpy()


def _open_bits(words: torch.Tensor, m: int) -> np.ndarray:
    """``unpack_bits(words, m) != 0`` as a bool numpy array, one byte per bit on the way
    (not eight, as the int64 shifts of ``unpack_bits`` take)."""
    if not _LITTLE_ENDIAN:
        return (unpack_bits(words, m) != 0).numpy()
    bits = np.unpackbits(words.contiguous().numpy().view(np.uint8), bitorder="little").reshape(-1, 64)
    return bits[:, _POSITION_NP].reshape(-1)[:m].view(np.bool_)


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Inverse of ``unpack_bits``: 0/1 int64 bits (m,) into packed words."""
    m = bits.numel()
    words = -(-m // 64)
    padded = torch.zeros(words * 64, dtype=torch.int64)
    padded[:m] = bits.reshape(-1)
    return (padded.reshape(words, 64) << POSITION).sum(dim=1)  # disjoint bits: sum == OR


def _and_local(ctx: Context, x: BooleanShares, y: BooleanShares) -> torch.Tensor:
    """This party's term z_i = x_i & (y_i ^ y_{i+1}) ^ x_{i+1} & y_i ^ alpha_i of a
    3-out-of-3 XOR sharing of x & y (alpha: a zero-sharing from the pairwise streams). x may
    broadcast against y; the result has y's shape and dtype and a whole number of words."""
    z = y.first ^ y.second
    z &= x.first
    z ^= x.second & y.first
    xor_random2_(z.view(torch.int64).reshape(-1), ctx.prg_next, ctx.prg_prev)  # both streams in one pass
    return z


def _and(ctx: Context, x: BooleanShares, y: BooleanShares, step: str) -> BooleanShares:
    """x & y for word shares of any integer dtype (x may broadcast against y): the local
    3-out-of-3 term (``_and_local``), then party i sends z_i to party i-1 (as
    ``boolean.and_many``, without its temporaries). Cost: 1 round; 1 word per 64 result
    bits per party."""
    z = _and_local(ctx, x, y)
    prev, nxt = (ctx.rank - 1) % N_COMPUTE, (ctx.rank + 1) % N_COMPUTE
    got = ctx.exchange(step, sends={prev: z.view(torch.int64).reshape(-1)}, recv_from=[nxt])[nxt]
    return BooleanShares(z, got.view(z.dtype).reshape(z.shape))


def _open_terms(ctx: Context, c: torch.Tensor, step: str) -> torch.Tensor:
    """Open a value held as a 3-out-of-3 XOR sharing (c_i on party i, masked by a
    zero-sharing): every party sends its term to both others. Cost: 1 round; 2 words per
    word per party. Leakage: the value (each received term is masked by a zero-sharing
    component the receiver cannot compute)."""
    others = [r for r in range(N_COMPUTE) if r != ctx.rank]
    got = ctx.exchange(step, sends={r: c for r in others}, recv_from=others)
    return c ^ got[others[0]] ^ got[others[1]]


def _split(t: torch.Tensor) -> torch.Tensor:
    """Contiguous words (..., M) viewed as their (low, high) halves: (..., M, 2) of the
    half-width dtype (little-endian: index 0 is the low half). A view, no copy."""
    if not _LITTLE_ENDIAN:  # the halves' order (and so tree order) assumes little-endian hosts
        raise ProtocolError("the comparison circuits need a little-endian host")
    return t.view(_HALF[t.dtype]).reshape(*t.shape, 2)


def _compact(t: torch.Tensor, half: int) -> torch.Tensor:
    """Words whose live bits sit in the low halves of their fields, two into one: word 2j in
    the low halves, word 2j+1 in the high halves."""
    out = t[1::2] << half
    out |= t[0::2]
    return out


def _padded_rows(m: int) -> int:
    return max(64, -(-m // 64) * 64)


def _column_major(x: BooleanShares) -> BooleanShares:
    """(m, W) words as one flat (W * mp,) vector, word column by word column, each padded
    with zeros to mp = a multiple of 64 rows."""
    m, w = x.shape
    mp = _padded_rows(m)
    if w == 1 and m == mp:  # already the layout: a view where possible (the circuits never write to it)
        return x._map(lambda t: t.reshape(-1))

    def lay(t: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((w, mp), dtype=torch.int64)
        out[:, :m] = t.T
        return out.reshape(-1)

    return x._map(lay)


_CHUNK_ROWS = 1 << 16
"""Rows of local work per piece when a comparison batch is set up (``_lt_start``): the
gathered key words and the first AND's terms are built piece by piece straight into the
circuit's state, so no full-size copies of the operands exist (one message per peer and
round all the same)."""


def _flat_chunks(fa: BooleanShares, fb: BooleanShares):
    """Piece source of ``_lt_start`` for operands already in the flat padded layout."""

    def get(lo: int, hi: int):
        return fa.first[lo:hi], fa.second[lo:hi], fb.first[lo:hi], fb.second[lo:hi]

    return get


def _gather_chunks(key_first: torch.Tensor, key_second: torch.Tensor, idx_a: torch.Tensor, idx_b: torch.Tensor):
    """Piece source of ``_lt_start``: rows ``idx_a`` / ``idx_b`` of column-major key words
    (W, n) in the flat padded layout of ``_column_major`` (zero words in the padding)."""
    m = idx_a.numel()
    mp = _padded_rows(m)

    def get(lo: int, hi: int):
        k, r0 = divmod(lo, mp)
        r1 = r0 + (hi - lo)
        real = min(r1, m)
        parts = []
        for cols, idx in ((key_first, idx_a), (key_first, idx_b), (key_second, idx_a), (key_second, idx_b)):
            if r0 >= real:
                t = torch.zeros(hi - lo, dtype=torch.int64)
            else:
                t = cols[k].index_select(0, idx[r0:real])
                if real < r1:
                    t = torch.cat([t, torch.zeros(r1 - real, dtype=torch.int64)])
            parts.append(t)
        a1, b1, a2, b2 = parts
        return a1, a2, b1, b2

    return get, mp


def _lt_start(ctx: Context, size: int, get, step: str, column: int | None = None) -> list[torch.Tensor]:
    """The comparison circuit's first round on flat (size,) words a, b delivered piece by
    piece by ``get(lo, hi)`` (pieces never cross a multiple of ``column``): per component a
    (2, size) state, row 0 = g = ~a & b (1 AND round), row 1 = p = ~(a ^ b). Every piece's
    p and AND term are computed straight into the state; the term is then masked (the
    zero-sharing streams, in the order ``_and_local`` draws them) and sent in ONE message.
    Cost: 1 round; 1 word per word per party."""
    rank = ctx.rank
    s1 = torch.empty((2, size), dtype=torch.int64)
    s2 = torch.empty((2, size), dtype=torch.int64)
    column = size if column is None else column
    lo = 0
    while lo < size:
        hi = min(lo + _CHUNK_ROWS, size, (lo // column + 1) * column)
        a1, a2, b1, b2 = get(lo, hi)
        p1, p2, z = s1[1, lo:hi], s2[1, lo:hi], s1[0, lo:hi]
        torch.bitwise_xor(a1, b1, out=p1)
        torch.bitwise_xor(a2, b2, out=p2)
        # g = x & y with x = ~a (NOT on component 0: party 0's first, party 2's second), y = b:
        # z = x_1 & (y_1 ^ y_2) ^ x_2 & y_1 (``_and_local`` before masking)
        if rank == 0:
            p1 ^= -1
            a1 = torch.bitwise_not(a1)
        if rank == 2:
            p2 ^= -1
            a2 = torch.bitwise_not(a2)
        torch.bitwise_xor(b1, b2, out=z)
        z &= a1
        z ^= torch.bitwise_and(a2, b1)
        lo = hi
    z = s1[0]
    xor_random2_(z, ctx.prg_next, ctx.prg_prev)
    prev, nxt = (rank - 1) % N_COMPUTE, (rank + 1) % N_COMPUTE
    got = ctx.exchange(f"{step}-g", sends={prev: z}, recv_from=[nxt])[nxt]
    s2[0].copy_(got.reshape(-1))
    return [s1, s2]


def _lt_tree(ctx: Context, state: list[torch.Tensor], step: str, open_g: bool = False):
    """Per 64-bit word of flat (M,) words (M a multiple of 64), given the first round's
    state (``_lt_start``): (G, P) = ([a < b], [a == b]), packed (M/64,) in ``POSITION``
    order; bit significance: see ``tree_order``. With ``open_g``, G is opened to the compute
    parties instead, fused with the last AND: returns (the public packed G words, None).
    Cost (with ``_lt_start``): 7 rounds; M + M + M/2 + ... + M/32 words per party (the last
    doubled to open)."""
    for level in range(3):  # 64 -> 32 -> 16 -> 8 bits per word, by dtype views
        h1, h2 = _split(state[0]), _split(state[1])  # (2, M, 2): [g|p][word][lo|hi]
        # one AND gives p_hi & g_lo (row 0) and p_hi & p_lo (row 1)
        z = _and(ctx, BooleanShares(h1[1, :, 1], h2[1, :, 1]), BooleanShares(h1[:, :, 0], h2[:, :, 0]),
                 f"{step}-h{level}")
        z.first[0] ^= h1[0, :, 1]  # g <- g_hi ^ (p_hi & g_lo); p <- p_hi & p_lo
        z.second[0] ^= h2[0, :, 1]
        del h1, h2
        state = [z.first, z.second]
        del z
    # m bytes per row: one 8-bit field per original word, 8 to an int64 word
    g = BooleanShares(state[0][0].view(torch.int64), state[1][0].view(torch.int64))
    p = BooleanShares(state[0][1].view(torch.int64), state[1][1].view(torch.int64))
    del state
    for f in _TAIL_FIELDS:
        h = f // 2
        mlo = _LOW[f]
        x1, y1 = _lt_operands(g.first, p.first, h, mlo)
        x2, y2 = _lt_operands(g.second, p.second, h, mlo)
        if open_g and f == _TAIL_FIELDS[-1]:  # fuse the last AND with the opening of g
            z = _and_local(ctx, BooleanShares(x1, x2), BooleanShares(y1, y2))
            term, _ = _lt_update(g.first, z, h, mlo)
            return _open_terms(ctx, term, f"{step}-open"), None
        z = _and(ctx, BooleanShares(x1, x2), BooleanShares(y1, y2), f"{step}-f{f}")
        g1, p1 = _lt_update(g.first, z.first, h, mlo)
        g2, p2 = _lt_update(g.second, z.second, h, mlo)
        g, p = BooleanShares(g1, g2), BooleanShares(p1, p2)
    return g, p


def _lt_operands(tg: torch.Tensor, tp: torch.Tensor, h: int, mlo: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One field level's AND operands for one share component: x = [p_hi | p_hi] and
    y = [p_lo | g_lo] in the (high | low) halves of every field."""
    x = tp >> h
    x &= mlo
    xw = x << h
    xw |= x
    yw = tp & mlo
    yw <<= h
    torch.bitwise_and(tg, mlo, out=x)
    yw |= x
    return xw, yw


def _lt_update(tg: torch.Tensor, tz: torch.Tensor, h: int, mlo: int) -> tuple[torch.Tensor, torch.Tensor]:
    """g <- g_hi ^ (p_hi & g_lo), p <- p_hi & p_lo from the level's product z, compacted."""
    g = tg >> h
    g &= mlo
    t = tz & mlo
    g ^= t
    p = tz >> h
    p &= mlo
    return _compact(g, h), _compact(p, h)


def _eq_tree(ctx: Context, a: BooleanShares, b: BooleanShares, step: str) -> BooleanShares:
    """Per 64-bit word of flat (M,) words: [a == b], packed (M/64,) in ``POSITION`` order.
    Cost: 6 rounds; M/2 + M/4 + ... + M/64 words per party."""
    z = a.xor(b).invert(ctx.rank)
    for level in range(3):  # 64 -> 32 -> 16 -> 8 bits per word: low half & high half
        h1, h2 = _split(z.first), _split(z.second)
        z = _and(ctx, BooleanShares(h1[:, 1], h2[:, 1]), BooleanShares(h1[:, 0], h2[:, 0]), f"{step}-h{level}")
    z = z._map(lambda t: t.view(torch.int64))
    for f in _TAIL_FIELDS:
        h = f // 2
        mlo = _LOW[f]
        x = z._map(lambda t, h=h, mlo=mlo: _compact((t >> h) & mlo, h))
        y = z._map(lambda t, h=h, mlo=mlo: _compact(t & mlo, h))
        z = _and(ctx, x, y, f"{step}-f{f}")
    return z


def _blocks(x: BooleanShares, w: int) -> list[BooleanShares]:
    q = x.first.numel() // w
    return [x.getitem(slice(k * q, (k + 1) * q)) for k in range(w)]


def _public_words(ctx: Context, words: torch.Tensor) -> BooleanShares:
    """A public word tensor as a (trivial) boolean sharing: component 0 holds it."""
    zero = torch.zeros_like(words)
    first = words if ctx.rank == 0 else zero
    second = words if ctx.rank == 2 else zero.clone()
    return BooleanShares(first, second)


def less_than_words(ctx: Context, a: BooleanShares, b: BooleanShares, step: str = "lt") -> PackedBits:
    """[a < b] for keys of W 64-bit words (shape (m, W)), compared lexicographically, word 0
    first; within a word bit positions count in tree order (``tree_order``): store a word in
    tree order to compare it as an unsigned integer (hash words need no care: any fixed
    order groups equal keys). Returns the m bits packed (``PackedBits``).
    Cost: 7 + ceil(log2 W) rounds; about 3W words per row per party (W = 2: 8 rounds,
    ~48 bytes). Error: exact. Leakage: none."""
    if a.shape != b.shape or len(a.shape) != 2:
        raise ProtocolError(f"less_than_words: keys must both be (m, W), got {tuple(a.shape)}, {tuple(b.shape)}")
    m, w = a.shape
    return _less_than_flat(ctx, _start_flat(ctx, a, b, step), w, m, step)


def _start_flat(ctx: Context, a: BooleanShares, b: BooleanShares, step: str) -> list[torch.Tensor]:
    """``_lt_start`` on (m, W) keys laid out flat (``_column_major``)."""
    fa, fb = _column_major(a), _column_major(b)
    return _lt_start(ctx, fa.first.numel(), _flat_chunks(fa, fb), step)


def _less_than_flat(ctx: Context, state: list[torch.Tensor], w: int, m: int, step: str,
                    open_result: bool = False):
    """``less_than_words`` on the flat padded column-major layout, from the first round's
    state (``_lt_start``). Returns ``PackedBits``, or with ``open_result`` the opened bits
    (bool numpy (m,)) on every compute party, the opening fused into the last round."""
    if w == 1 and open_result:
        words, _ = _lt_tree(ctx, state, step, open_g=True)
        return _open_bits(words, m)
    g, p = _lt_tree(ctx, state, step)
    gs, ps = _blocks(g, w), _blocks(p, w)
    level = 0
    while len(gs) > 1:
        if len(gs) % 2:  # least significant padding: "equal"
            gs.append(_public_words(ctx, torch.zeros_like(gs[0].first)))
            ps.append(_public_words(ctx, torch.full_like(ps[0].first, -1)))
        his_g, los_g, his_p, los_p = gs[0::2], gs[1::2], ps[0::2], ps[1::2]
        if len(gs) == 2 and open_result:  # G = G_0 ^ (P_0 & G_1), opened in the same round
            z = _and_local(ctx, his_p[0], los_g[0])
            words = _open_terms(ctx, his_g[0].first ^ z, f"{step}-open")
            return _open_bits(words, m)
        need_p = len(gs) > 2
        pairs = [(hp, lg) for hp, lg in zip(his_p, los_g, strict=True)]
        if need_p:
            pairs += [(hp, lp) for hp, lp in zip(his_p, los_p, strict=True)]
        out = boolean.and_many(ctx, pairs, f"{step}-w{level}")
        k = len(his_g)
        gs = [hg.xor(t) for hg, t in zip(his_g, out[:k], strict=True)]
        ps = out[k:] if need_p else []
        level += 1
    if open_result:
        return reveal_bits(ctx, PackedBits(gs[0], m), step=f"{step}-open").numpy()
    return PackedBits(gs[0], m)


def less_than_open(ctx: Context, a: BooleanShares, b: BooleanShares, step: str = "lt-open") -> torch.Tensor:
    """[a < b] as ``less_than_words``, opened to the three compute parties (bool (m,)), the
    opening fused into the circuit's last round: every party sends its masked 3-out-of-3
    term of the result to both others.
    Cost: 7 + ceil(log2 W) rounds (one fewer than comparing, then opening); ~3W words per
    row per party. Leakage: the bits."""
    m, w = a.shape
    return torch.from_numpy(_less_than_flat(ctx, _start_flat(ctx, a, b, step), w, m, step, open_result=True))


def equal_words(ctx: Context, a: BooleanShares, b: BooleanShares, step: str = "eq",
                combine: bool = True) -> PackedBits | list[PackedBits]:
    """[a == b] for keys of W 64-bit words (shape (m, W)), packed (``PackedBits``); with
    ``combine=False`` one ``PackedBits`` per word instead.
    Cost: 6 (+ ceil(log2 W) when combined) rounds; about W words per row per party.
    Error: exact. Leakage: none."""
    m, w = a.shape
    es = _blocks(_eq_tree(ctx, _column_major(a), _column_major(b), step), w)
    if not combine:
        return [PackedBits(e, m) for e in es]
    level = 0
    while len(es) > 1:
        if len(es) % 2:
            es.append(_public_words(ctx, torch.full_like(es[0].first, -1)))
        es = boolean.and_many(ctx, list(zip(es[0::2], es[1::2], strict=True)), f"{step}-w{level}")
        level += 1
    return PackedBits(es[0], m)


def reveal_bits(
    ctx: Context, bits: PackedBits, to: Sequence[int] = (0, 1, 2), step: str = "open-bits"
) -> torch.Tensor | None:
    """Open packed secret bits to the compute parties in ``to``. Returns a bool tensor (m,)
    on recipients, None elsewhere.
    Cost: 1 round; 1 word per 64 bits to each recipient from one party. Leakage: the bits."""
    rank = ctx.rank
    x = bits.shares
    nxt, prev = (rank + 1) % N_COMPUTE, (rank - 1) % N_COMPUTE
    sends = {nxt: x.first} if nxt in to else {}
    recv = [prev] if rank in to else []
    got = ctx.exchange(step, sends=sends, recv_from=recv)
    if rank not in to:
        return None
    return unpack_bits(x.first ^ x.second ^ got[prev], bits.m) != 0


def _pairs_upper(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i < j < k."""
    i, j = np.triu_indices(k, 1)
    return i.astype(np.int64), j.astype(np.int64)


SAMPLE = 15
"""Most rows of a segment whose order a quicksort level learns besides its split
(``sort_permutation``): the children's pivots are medians of these samples."""
SAMPLE_SPREAD = 3
"""A segment of L rows samples about sqrt(L / SAMPLE_SPREAD) rows (at most ``SAMPLE``): the
sample's all-pairs comparisons stay a small fraction of the L - 1 against the pivot."""
SMALL = 6
"""Segments of at most this many rows are finished with all their pairs in one level."""
TAIL = 1 / 32
"""The deep tail: a level also finishes, with all their pairs, its shortest segments of up to
``TAIL_LONGEST`` rows whose pairs come to at most TAIL * n comparisons. Early levels have no
such segments; late ones hold few rows, so this ends the last levels' stragglers (deep
paths of unlucky pivots in short segments, whose samples are small) for ~1% more
comparisons and 5 (1e6 rows) to 7 (5.5e6) fewer levels."""
TAIL_LONGEST = 64
"""Longest segment the tail rule (``TAIL``) finishes with all its pairs."""
ROOT_SAMPLE = 63
"""Rows whose pairs a sort of at least ``ROOT_FROM`` rows compares in a level of its own
first, to start with their median as the root pivot (no level before it learns a sample).
A random root pivot costs ~1-2% more comparisons from 1e5 rows up and about the level that
this takes; under 3e4 rows its 1953 pairs cost more than they save."""
ROOT_FROM = 1 << 15
"""Fewest rows for which the root pivot is a median (``ROOT_SAMPLE``)."""


def _sample_sizes(lengths: np.ndarray, sample: int) -> np.ndarray:
    """Rows sampled from segments of ``lengths`` rows: about sqrt(L / ``SAMPLE_SPREAD``), at
    most ``sample`` (never more than L - 1: the sample follows the pivot)."""
    return np.minimum(np.minimum(sample, lengths - 1), np.sqrt(lengths / SAMPLE_SPREAD).astype(np.int64))


def sort_permutation(ctx: Context, keys: BooleanShares, step: str = "qsort", sample: int | None = None,
                     small: int | None = None) -> torch.Tensor:
    """The public permutation sigma (int64 indices) with keys[sigma] ascending, by a
    quicksort with opened comparisons whose pivots are medians of samples.

    Every level takes all unfinished segments (runs of rows whose order is not known yet) at
    once. A segment of more than ``small`` rows is split by the row at its first position,
    its pivot: every other row is compared with the pivot, and, in the same call, the s rows
    that follow the pivot (s ~ sqrt(L / 3), at most ``sample``: ``_sample_sizes``) are
    compared pairwise. The rows go to two children (below, above the pivot), each in its old
    position order, so a child's first rows are the sample rows that fell into it, and of
    these the one of median rank (known from the pairs) is moved to the child's first
    position: the next level's pivot, free of an extra round. A child without sample rows
    takes its first row, a random row as the input is shuffled; so does the root, unless
    n >= ``ROOT_FROM``: then a first level of its own compares the pairs of the first
    ``ROOT_SAMPLE`` rows and moves their median first. A segment of
    at most ``small`` rows compares all its pairs and is finished. All comparisons of a level
    run in ONE batched ``less_than_words`` call, and are opened together (packed bits).
    The shortest segments of a late level are finished with all their pairs within a budget
    (``TAIL``), which cuts the deep tail of the last levels. Counted on random keys
    (``benchmarks/sort_pivots.py``, medians of 3 orders): 1.10, 1.09, 1.10, 1.10 n log2 n
    comparisons in 19, 24, 28, 31 levels at n = 1e4, 1e5, 1e6, 5.5e6; the former 3 random
    pivots per segment (4-way splits) took 1.61, 1.67, 1.74, 1.70 n log2 n in 13, 16, 21, 23
    levels, one random pivot 1.17, 1.24, 1.29, 1.26 n log2 n in 26, 35, 46, 50 levels.

    Precondition (not checked, it cannot be without leaking): the keys are distinct and in a
    uniformly random order unknown to every party — shuffle first (``sort_rows`` does).
    Cost: per level 7 + ceil(log2 W) rounds (the opening is fused into the last round of the
    comparisons: ``less_than_open``); ~3W words per comparison per party.
    Local work per level: the compared rows' key words are gathered piece by piece straight
    into the circuit's state (``_lt_start``; no full copies of the operands), the row indices
    are int32, and rows move to their children by counting (linear, no sort); the samples'
    ranks and medians are found per sample size (a loop over at most ``sample`` sizes and
    their pairs, each step vectorized over the segments).
    Leakage: none under the precondition. The algorithm is deterministic and learns order only
    through comparisons: which pairs a level compares, and where every row moves, are
    functions of n and of the bits opened at earlier levels. So the whole transcript of
    opened bits is a function of the relative order of the keys, i.e. of the ranks of the
    rows in their shuffled order; with distinct keys and a uniformly random shuffle no party
    knows, that arrangement of ranks is a uniformly random permutation of 0..n-1. A simulator
    draws such a permutation, runs this same algorithm with plain comparisons on it, and gets
    opened bits distributed exactly as the real ones, from n alone. The pivot rule (sample
    medians) is part of the deterministic algorithm, so it changes the cost, not this
    argument (the same as for Hamada et al.'s random pivots).
    """
    sample = SAMPLE if sample is None else int(sample)
    small = SMALL if small is None else int(small)
    if sample < 0 or small < 1:
        raise ProtocolError(f"sort_permutation: need sample >= 0 and small >= 1, got {sample}, {small}")
    n, w = keys.shape
    idt = np.int32 if n < 2**31 else np.int64  # row indices: half the bytes where they fit
    perm = np.arange(n, dtype=np.int64)
    starts = np.zeros(1 if n > 1 else 0, dtype=np.int64)
    lengths = np.full(starts.shape, n, dtype=np.int64)
    key_first, key_second = keys.first.T.contiguous(), keys.second.T.contiguous()  # (W, n)
    if n >= max(ROOT_FROM, ROOT_SAMPLE):  # a level more: the root pivot is a median too
        i, j = _pairs_upper(ROOT_SAMPLE)
        get, mp = _gather_chunks(key_first, key_second, torch.from_numpy(i.astype(idt)),
                                 torch.from_numpy(j.astype(idt)))
        state = _lt_start(ctx, w * mp, get, f"{step}-root", column=mp)
        lt = _less_than_flat(ctx, state, w, i.size, f"{step}-root", open_result=True)
        del state, get
        rank = np.bincount(j, weights=lt, minlength=ROOT_SAMPLE) + np.bincount(i, weights=~lt, minlength=ROOT_SAMPLE)
        q = int(np.flatnonzero(rank == ROOT_SAMPLE // 2)[0])
        perm[[0, q]] = perm[[q, 0]]
    level = 0
    while starts.size:
        big = lengths > small
        if TAIL > 0:  # the deep tail: finish the shortest longer segments too, within a budget
            cand = np.flatnonzero(big & (lengths <= TAIL_LONGEST))
            order = cand[np.argsort(lengths[cand], kind="stable")]
            cost = np.cumsum(lengths[order] * (lengths[order] - 1) // 2)
            big[order[: np.searchsorted(cost, TAIL * n, side="right")]] = False
        b_starts, b_lengths = starts[big], lengths[big]
        s_starts, s_lengths = starts[~big], lengths[~big]
        nb = b_starts.size
        # --- the comparisons of this level, as rows (a, b) of the input: [key a < key b]
        # big segments: each non-pivot row vs the pivot, in position order, then each
        # segment's sample pairs (grouped by sample size); small segments: all pairs,
        # grouped by length
        others = b_lengths - 1
        n_rows = int(others.sum())
        row_at = np.cumsum(others) - others  # where a segment's rows begin among the level's rows
        sizes = _sample_sizes(b_lengths, sample)
        m = n_rows
        sample_groups = []
        for size in np.unique(sizes[sizes >= 2]):
            segs = np.flatnonzero(sizes == size)
            i, j = _pairs_upper(int(size))
            sample_groups.append((int(size), segs, i, j, m))
            m += segs.size * i.size
        small_groups = []
        for length in np.unique(s_lengths):
            seg_starts = s_starts[s_lengths == length]
            i, j = _pairs_upper(int(length))
            small_groups.append((int(length), seg_starts, i, j, m))
            m += seg_starts.size * i.size
        idx_a = np.empty(m, dtype=idt)
        idx_b = np.empty(m, dtype=idt)
        seg_e = np.repeat(np.arange(nb, dtype=idt), others)
        shift = np.repeat(b_starts + 1 - row_at, others)
        shift += np.arange(n_rows, dtype=np.int64)
        rows_e = perm[shift]  # the non-pivot rows, in position order
        del shift
        piv_rows = perm[b_starts]
        idx_a[:n_rows] = rows_e
        idx_b[:n_rows] = piv_rows[seg_e]
        for _, segs, i, j, at in sample_groups:
            first = b_starts[segs, None] + 1  # the sample: the rows right after the pivot
            size = segs.size * i.size
            idx_a[at : at + size] = perm[(first + i[None, :]).reshape(-1)]
            idx_b[at : at + size] = perm[(first + j[None, :]).reshape(-1)]
        for _, seg_starts, i, j, at in small_groups:
            size = seg_starts.size * i.size
            idx_a[at : at + size] = perm[(seg_starts[:, None] + i[None, :]).reshape(-1)]
            idx_b[at : at + size] = perm[(seg_starts[:, None] + j[None, :]).reshape(-1)]
        get, mp = _gather_chunks(key_first, key_second, torch.from_numpy(idx_a), torch.from_numpy(idx_b))
        state = _lt_start(ctx, w * mp, get, f"{step}{level}", column=mp)
        del idx_a, idx_b, get
        lt = _less_than_flat(ctx, state, w, m, f"{step}{level}", open_result=True)
        del state
        new_perm = perm.copy()
        next_starts, next_lengths = [], []
        # --- big segments: lower child, pivot, upper child
        if nb:
            side = lt[:n_rows]  # [row < pivot]: the row goes to the lower child
            low = np.add.reduceat(side, row_at, dtype=np.int64)  # rows per lower child
            before = np.cumsum(low) - low  # lower-child rows of earlier segments
            # a row's place in its child is its running count among the segment's rows of
            # that child: the level's running count `ran`, less the earlier segments' count
            ran = np.cumsum(side, dtype=idt)
            dest = (b_starts + low + 1 - row_at + before).astype(idt)[seg_e]
            dest += np.arange(n_rows, dtype=idt)
            dest -= ran  # upper child: its rows' running count is their index less `ran`
            ran += (b_starts - before - 1).astype(idt)[seg_e]
            np.copyto(dest, ran, where=side)
            del ran, seg_e
            new_perm[dest] = rows_e
            del dest, rows_e
            new_perm[b_starts + low] = piv_rows
            up_starts = b_starts + low + 1
            # the sample rows open each child, in position order; move the median one first
            for size, segs, i, j, at in sample_groups:
                less = lt[at : at + segs.size * i.size].reshape(segs.size, i.size)
                rank = np.zeros((segs.size, size), dtype=np.int64)
                for c in range(i.size):  # at most `sample` rows: a loop over a tiny shape
                    rank[:, j[c]] += less[:, c]
                    rank[:, i[c]] += ~less[:, c]
                below = side[row_at[segs, None] + np.arange(size)[None, :]]  # (segs, size)
                k_low = below.sum(axis=1)
                # ranks 0..k_low-1 fell below the pivot, k_low..size-1 above
                for inside, target, first in (
                    (below, (k_low - 1) // 2, b_starts[segs]),
                    (~below, k_low + (size - k_low - 1) // 2, up_starts[segs]),
                ):
                    hit = (rank == target[:, None]) & inside
                    has = hit.any(axis=1)
                    at_child = (np.cumsum(inside, axis=1) - 1)[hit]  # its place in the child
                    first = first[has]
                    there = first + at_child
                    new_perm[first], new_perm[there] = new_perm[there], new_perm[first].copy()
            lo = np.stack([b_starts, up_starts], axis=1).reshape(-1)
            ln = np.stack([low, others - low], axis=1).reshape(-1)
            keep = ln >= 2
            next_starts.append(lo[keep])
            next_lengths.append(ln[keep])
        # --- small segments: the full order is known
        for length, seg_starts, i, j, at in small_groups:
            size = seg_starts.size * i.size
            less = lt[at : at + size].reshape(seg_starts.size, i.size)
            above = np.zeros((seg_starts.size, length, length), dtype=np.bool_)  # [row k above row l]
            above[:, j, i] = less
            above[:, i, j] = ~less
            rank = above.sum(axis=2)
            del above
            src = seg_starts[:, None] + np.arange(length)[None, :]
            new_perm[seg_starts[:, None] + rank] = perm[src]
        del lt
        perm = new_perm
        starts = np.concatenate(next_starts) if next_starts else np.zeros(0, dtype=np.int64)
        lengths = np.concatenate(next_lengths) if next_lengths else np.zeros(0, dtype=np.int64)
        level += 1
    return torch.from_numpy(perm)


def gather_rows(items: Sequence[Shares], index: torch.Tensor) -> list[Shares]:
    """Rows of each item taken at the public ``index`` (local)."""
    out = []
    for x in items:
        if isinstance(x, BooleanShares):
            out.append(BooleanShares(x.first.index_select(0, index), x.second.index_select(0, index)))
        else:
            dim = 1 if x.ring.lanes == 2 else 0
            out.append(ArithmeticShares(x.ring, x.first.index_select(dim, index), x.second.index_select(dim, index)))
    return out


class SortedRows:
    """Rows sorted by a secret key, with what it takes to bring results back.

    ``keys`` and ``items`` are the sorted rows (fresh shares); ``restore(columns)`` takes
    columns in sorted order back to the original row order (local un-sort by the public
    sigma, then the inverse shuffle: 3 rounds).
    """

    def __init__(self, ctx: Context, keys: BooleanShares, items: list[Shares], perm: Shuffle, sigma: torch.Tensor):
        self.ctx = ctx
        self.keys = keys
        self.items = items
        self.shuffle = perm
        self.sigma = sigma

    def restore(self, columns: Sequence[Shares], step: str = "unsort") -> list[Shares]:
        """Columns given in sorted order, returned in the original input order.
        Cost: 3 rounds (the inverse shuffle). Leakage: none."""
        back = gather_rows(columns, torch.argsort(self.sigma))
        return self.shuffle.invert(back, step)


def sort_rows(ctx: Context, keys: BooleanShares, items: Sequence[Shares] = ()) -> SortedRows:
    """Sort rows by distinct keys of W words (boolean-shared, shape (n, W), compared as
    unsigned integers, word 0 most significant, bits in tree order): shuffle keys and rows
    together by a fresh secret permutation, quicksort with opened comparisons
    (``sort_permutation``), gather. The caller guarantees distinct keys (e.g. a tie-breaker
    word of bank and row index). The returned ``SortedRows`` brings result columns back to
    the input order (``restore``).
    Cost: 3 rounds (shuffle) + the quicksort (~170 rounds and ~435 bytes per row and party
    for W = 1 at n = 1e5). Leakage: none beyond n.
    """
    return sort_rows_from(ctx, [keys, *items])


def sort_rows_from(ctx: Context, rows: list[Shares]) -> SortedRows:
    """``sort_rows(ctx, rows[0], rows[1:])`` that empties the list ``rows`` once the rows are
    shuffled, so that a caller who keeps no other reference to them (the join) does not hold
    the unsorted rows through the quicksort."""
    n = rows[0].shape[0]
    perm = Shuffle(ctx, n)
    shuffled = perm.apply(rows, "sort-shuffle")
    rows.clear()
    sigma = sort_permutation(ctx, shuffled[0])
    ordered = gather_rows(shuffled, sigma)
    del shuffled
    return SortedRows(ctx, ordered[0], ordered[1:], perm, sigma)


def sort_values(ctx: Context, x: ArithmeticShares, items: Sequence[Shares] = ()) -> SortedRows:
    """Sort rows by a secret signed value known to fit 64 bits (e.g. for quantiles): the
    value's low 64 bits are converted to boolean (``boolean.bit_decompose``), the sign bit
    flipped so that unsigned order is signed order, the bits put in tree order
    (``tree_order``, local) and the public row index appended as the tie-breaker word.
    Cost: 8 rounds for the conversion, then ``sort_rows``. Leakage: none beyond n."""
    if len(x.shape) != 1:
        raise ProtocolError("sort_values: x must be a vector of values")
    n = x.shape[0]
    bits = boolean.bit_decompose(ctx, x).xor_public(ctx.rank, -(1 << 63))
    bits = bits._map(tree_order)
    index = _public_words(ctx, tree_order(torch.arange(n, dtype=torch.int64)))
    keys = BooleanShares(
        torch.stack([bits.first, index.first], dim=1), torch.stack([bits.second, index.second], dim=1)
    )
    return sort_rows(ctx, keys, items)


__all__ = [
    "POSITION",
    "PackedBits",
    "SortedRows",
    "equal_words",
    "gather_rows",
    "less_than_open",
    "less_than_words",
    "pack_bits",
    "reveal_bits",
    "sort_permutation",
    "sort_rows",
    "sort_rows_from",
    "sort_values",
    "tree_order",
    "unpack_bits",
]
