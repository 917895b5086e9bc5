"""Segmented (group-by-key) scans over rows sorted by a secret key.

After an oblivious sort (``smpc.protocols.sort``) rows with equal keys are adjacent, but
where one group ends stays secret. A group is described by the secret 0/1 column
``cont`` ("this row continues the group of the row before it", cont[0] = 0), which
``adjacent_equal`` computes by zero-testing the XOR of neighbouring key words.

Scans are Hillis-Steele with a segment flag: with C the product of ``cont`` over the window
(a row's window reaches across a group border iff C = 0), a step of distance d does
P_i <- P_i + C_i * P_{i-d} and C_i <- C_i * C_{i-d} for all rows at once, so ceil(log2 n)
steps compute every inclusive group prefix sum; the suffix sums reuse the same C (shifted),
and a row's group total is prefix + suffix - its own value. Both directions share the
rounds.

Arithmetic here is exact modulo 2^k: the sums are exact as long as the true group totals
fit the ring (callers check the bound).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from smpc.protocols import boolean
from smpc.protocols.fused import add_random2_
from smpc.protocols.sort import PackedBits, equal_words
from smpc.sharing import ArithmeticShares, BooleanShares

if TYPE_CHECKING:
    from smpc.context import Context
    from smpc.ring import Ring


def _rows(x: ArithmeticShares) -> int:
    return x.shape[0]


def adjacent_equal(
    ctx: Context, keys: BooleanShares, prefixes: int = 1, step: str = "adjacent-eq"
) -> list[PackedBits]:
    """For sorted keys of W words (shape (n, W)): bit i of result k is [the first k+1 words
    of row i equal those of row i - 1] for k < ``prefixes`` (bit 0 is always 0), packed.
    E.g. with keys (hash, bank field): result 0 = same customer as the row before, result 1 =
    same customer and same bank.
    Cost: 6 + (prefixes - 1) rounds; about W words per row per party. Leakage: none."""
    n, w = keys.shape
    if n == 0:
        return [PackedBits(BooleanShares(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)), 0)
                for _ in range(prefixes)]
    # compare row i with row i-1; row 0 with itself is replaced by a forced "different" below
    prev = BooleanShares(torch.cat([keys.first[:1], keys.first[:-1]]), torch.cat([keys.second[:1], keys.second[:-1]]))
    per_word = equal_words(ctx, keys, prev, step, combine=False)
    out = [per_word[0]]
    for k in range(1, prefixes):  # running AND over the word prefixes, one round each
        (acc,) = boolean.and_many(ctx, [(out[-1].shares, per_word[k].shares)], f"{step}-and{k}")
        out.append(PackedBits(acc, n))
    # row 0 has no predecessor: clear its bit (position POSITION[0] = 0 of word 0)
    cleared = []
    for bits in out:
        first, second = bits.shares.first.clone(), bits.shares.second.clone()
        first[0] &= ~1
        second[0] &= ~1
        cleared.append(PackedBits(BooleanShares(first, second), n))
    return cleared


def bits_to_arithmetic(ctx: Context, bits: list[PackedBits], ring: Ring) -> ArithmeticShares:
    """Packed secret bits (each of m rows) as arithmetic 0/1 of shape (m, len(bits)) in
    ``ring``. Cost: 2 rounds (``boolean.bit_to_arithmetic``): every party sends 1 ring
    element per bit."""
    unpacked = [b.unpack() for b in bits]
    stacked = BooleanShares(
        torch.stack([u.first for u in unpacked], dim=1), torch.stack([u.second for u in unpacked], dim=1)
    )
    return boolean.bit_to_arithmetic(ctx, stacked, ring)


def mul(ctx: Context, x: ArithmeticShares, y: ArithmeticShares, step: str = "mul") -> ArithmeticShares:
    """Elementwise x * y (same shapes) in the shares' own ring, which may differ from
    ``ctx.ring`` (the join computes in Z_2^64 inside a ring128 job): the RSS product
    z_i = x_i (y_i + y_{i+1}) + x_{i+1} y_i, masked by a zero-sharing and reshared.
    Cost: 1 round; 1 ring element per element per party. Error: exact mod 2^k."""
    ring = x.ring
    z = _product_term(ctx, ring, x.first, x.second, y.first, y.second)
    prev, nxt = (ctx.rank - 1) % 3, (ctx.rank + 1) % 3
    got = ctx.exchange(step, sends={prev: z}, recv_from=[nxt])[nxt]
    return ArithmeticShares(ring, z, got)


def _product_term(ctx: Context, ring: Ring, x1, x2, y1, y2) -> torch.Tensor:
    """This party's masked term of x * y: the RSS product plus random(next) - random(prev),
    the two streams added in place (the values ``ring.random`` would draw, in that order),
    computed with AES-NI where they are added (``fused.add_random2_``)."""
    z = ring.rss_product(x1, x2, y1, y2)
    return add_random2_(ring, z, ctx.prg_next, 1, ctx.prg_prev, -1)


def _ones_minus(ctx: Context, x: ArithmeticShares) -> ArithmeticShares:
    ring = x.ring
    return x.neg().add_public(ctx.rank, ring.from_int64(torch.ones((), dtype=torch.int64)))


def _contig(x: ArithmeticShares) -> ArithmeticShares:
    return ArithmeticShares(x.ring, x.first.contiguous(), x.second.contiguous())


def segmented_scans(
    ctx: Context, values: ArithmeticShares, cont: ArithmeticShares, forward: bool = True, backward: bool = True,
    step: str = "segscan",
) -> tuple[ArithmeticShares | None, ArithmeticShares | None]:
    """Inclusive per-group prefix sums (forward) and suffix sums (backward) of ``values``
    (shape (n, k)) over sorted rows, groups given by ``cont`` (shape (n,), secret 0/1,
    cont[i] = 1 iff row i is in the group of row i-1; cont[0] must be 0).

    Before the step of distance d, C_i = [rows i-d..i are one group]; the forward sums do
    F_i += C_i F_{i-d}, the backward sums B_{i-d} += C_i B_i (the window of row i-d looking
    forward is the window of row i looking back, so one C serves both), and
    C_i <- C_i C_{i-d}. All products of a step are one multiplication.
    Cost: ceil(log2 n) rounds; per round and row, one ring element per value column and
    direction plus one for C (none in the last round). Error: exact mod 2^k. Leakage: none.
    """
    n = _rows(values)
    k = values.shape[1]
    if n == 0 or not (forward or backward):
        return (values if forward else None), (values if backward else None)
    if values.ring.lanes == 1:
        return _scans_in_place(ctx, values, cont, forward, backward, step)
    fwd = values if forward else None
    bwd = values if backward else None
    c = cont.reshape((n, 1))
    d = 1
    level = 0
    while d < n:
        last = 2 * d >= n
        operands = []
        if forward:
            operands.append(fwd.getitem(slice(0, n - d)))
        if backward:
            operands.append(bwd.getitem(slice(d, n)))
        if not last:
            operands.append(c.getitem(slice(0, n - d)))
        y = _contig(ArithmeticShares.cat(operands, dim=1))
        x = _contig(c.getitem(slice(d, n)).expand(y.shape))
        prod = mul(ctx, x, y, f"{step}{level}")
        col = 0
        if forward:
            add = prod.getitem((slice(None), slice(col, col + k)))
            fwd = ArithmeticShares.cat([fwd.getitem(slice(0, d)), fwd.getitem(slice(d, n)).add(add)], dim=0)
            col += k
        if backward:
            add = prod.getitem((slice(None), slice(col, col + k)))
            bwd = ArithmeticShares.cat([bwd.getitem(slice(0, n - d)).add(add), bwd.getitem(slice(n - d, n))], dim=0)
            col += k
        if not last:
            c = ArithmeticShares.cat([c.getitem(slice(0, d)), prod.getitem((slice(None), slice(col, col + 1)))], dim=0)
        d *= 2
        level += 1
    return (_contig(fwd) if forward else None), (_contig(bwd) if backward else None)


def _scans_in_place(
    ctx: Context, values: ArithmeticShares, cont: ArithmeticShares, forward: bool, backward: bool, step: str
) -> tuple[ArithmeticShares | None, ArithmeticShares | None]:
    """``segmented_scans`` for one-lane rings (ring64), the same rounds, bytes and results
    with less local work: the sums are updated in place, every round's operands are written
    into one buffer, and C broadcasts in the product instead of being expanded. The columns
    are held column-major ((k, n): every column one contiguous row), so copies are plain
    runs of memory and C broadcasts along rows; the product term is computed in the
    operand buffers (Z_2^64 is int64 arithmetic with wrap-around)."""
    ring = values.ring
    n, k = values.shape
    prev, nxt = (ctx.rank - 1) % 3, (ctx.rank + 1) % 3
    def columns(t: torch.Tensor) -> torch.Tensor:  # a fresh (k, n) copy: the sums are updated in place
        return torch.empty((k, n), dtype=t.dtype).copy_(t.T)

    fwd = [columns(values.first), columns(values.second)] if forward else None
    bwd = [columns(values.first), columns(values.second)] if backward else None
    c = [cont.first.reshape(1, n), cont.second.reshape(1, n)]
    d = 1
    level = 0
    while d < n:
        last = 2 * d >= n
        width = k * (int(forward) + int(backward)) + (0 if last else 1)
        ys = []
        for s in range(2):
            y = torch.empty((width, n - d), dtype=values.first.dtype)
            row = 0
            if forward:
                y[row : row + k] = fwd[s][:, : n - d]
                row += k
            if backward:
                y[row : row + k] = bwd[s][:, d:]
                row += k
            if not last:
                y[row] = c[s][0, : n - d]
            ys.append(y)
        # this party's term x1 (y1 + y2) + x2 y1 with x = C (``ring.rss_product``), in place
        z = ys[0] + ys[1]
        z *= c[0][:, d:]
        ys[1] = None
        y1 = ys.pop(0)
        y1 *= c[1][:, d:]
        z += y1
        del y1, ys
        add_random2_(ring, z, ctx.prg_next, 1, ctx.prg_prev, -1)
        got = ctx.exchange(f"{step}{level}", sends={prev: z.reshape(-1)}, recv_from=[nxt])[nxt]
        prod = [z, got.reshape(z.shape)]
        for s in range(2):
            row = 0
            if forward:
                fwd[s][:, d:] += prod[s][row : row + k]
                row += k
            if backward:
                bwd[s][:, : n - d] += prod[s][row : row + k]
                row += k
            if not last:
                cs = torch.empty((1, n), dtype=c[s].dtype)
                cs[:, :d] = c[s][:, :d]
                cs[:, d:] = prod[s][row : row + 1]
                c[s] = cs
        del prod, z, got
        d *= 2
        level += 1
    return (
        ArithmeticShares(ring, fwd[0].T.contiguous(), fwd[1].T.contiguous()) if forward else None,
        ArithmeticShares(ring, bwd[0].T.contiguous(), bwd[1].T.contiguous()) if backward else None,
    )


def group_totals(
    ctx: Context, values: ArithmeticShares, cont: ArithmeticShares, step: str = "group-totals"
) -> ArithmeticShares:
    """Every row's group total of ``values`` (shape (n, k)): prefix + suffix - own value,
    both scans sharing their rounds. Cost: ceil(log2 n) rounds; 2k + 1 ring elements per
    row per round and party (2k in the last). Error: exact mod 2^k. Leakage: none."""
    prefix, suffix = segmented_scans(ctx, values, cont, True, True, step)
    return prefix.add(suffix).sub(values)


def segmented_any(ctx: Context, hits: BooleanShares, cont: BooleanShares, step: str = "segment-any") -> BooleanShares:
    """Every row's group OR of the secret bits ``hits`` (shape (n,), bit 0; other bits
    ignored) over sorted rows, groups given by the secret bits ``cont`` (bit 0: row i is in
    the group of row i-1; cont[0] must be 0): "some row of my group has a hit".

    The Hillis-Steele scan of ``segmented_scans`` with OR for +, kept at one AND per
    update: besides H_i (a hit among the rows its window covers) each direction carries
    K_i = not H_i and C_i (no hit yet, and the window lies inside the group), and a step of
    distance d does H_i <- H_i xor (K_i and H_{i-d}), K_i <- K_i and K_{i-d} (backward:
    i+d); the OR of the two directions ends it. All bits travel packed, 64 to a word.
    Cost: ceil(log2 n) + 2 rounds; per party, (4 ceil(log2 n) + 1) words of 64 bits per 64
    rows (3 for n = 1). Error: exact. Leakage: none.
    """
    n = hits.shape[0]
    if n == 0:
        return BooleanShares(hits.first & 1, hits.second & 1)

    def bits(x: BooleanShares) -> BooleanShares:
        return x._map(lambda t: (t & 1).to(torch.uint8))

    def down(x: BooleanShares, d: int) -> BooleanShares:  # row i gets row i - d's bit, 0 before the first
        return x._map(lambda t: torch.cat([torch.zeros(d, dtype=t.dtype), t[: n - d]]))

    def up(x: BooleanShares, d: int) -> BooleanShares:  # row i gets row i + d's bit, 0 after the last
        return x._map(lambda t: torch.cat([t[d:], torch.zeros(d, dtype=t.dtype)]))

    h, c = bits(hits), bits(cont)
    no_hit = h.xor_public(ctx.rank, 1)
    k_fwd, k_bwd = _and_bits(ctx, [(no_hit, c), (no_hit, up(c, 1))], f"{step}-start")
    h_fwd, h_bwd = h, h
    d = 1
    level = 0
    while d < n:
        pairs = [(k_fwd, down(h_fwd, d)), (k_bwd, up(h_bwd, d))]
        last = 2 * d >= n
        if not last:
            pairs += [(k_fwd, down(k_fwd, d)), (k_bwd, up(k_bwd, d))]
        got = _and_bits(ctx, pairs, f"{step}{level}")
        h_fwd, h_bwd = h_fwd.xor(got[0]), h_bwd.xor(got[1])
        if not last:
            k_fwd, k_bwd = got[2], got[3]
        d *= 2
        level += 1
    (neither,) = _and_bits(ctx, [(h_fwd.xor_public(ctx.rank, 1), h_bwd.xor_public(ctx.rank, 1))], f"{step}-or")
    either = neither.xor_public(ctx.rank, 1)
    return either._map(lambda t: t.to(torch.int64))


def _pack(bits: torch.Tensor) -> torch.Tensor:
    """0/1 bytes (n,) as int64 words, 64 bits to a word; any fixed layout serves, since
    AND and XOR act bit by bit."""
    packed = np.packbits(bits.numpy(), bitorder="little")
    words = np.zeros(-(-packed.size // 8) * 8, dtype=np.uint8)
    words[: packed.size] = packed
    return torch.from_numpy(words.view(np.int64))


def _unpack(words: torch.Tensor, n: int) -> torch.Tensor:
    return torch.from_numpy(np.unpackbits(words.numpy().view(np.uint8), count=n, bitorder="little"))


def _and_bits(ctx: Context, pairs: list[tuple[BooleanShares, BooleanShares]], step: str) -> list[BooleanShares]:
    """x and y of every pair of 0/1-byte shares (each (n,)), packed for the wire: one
    round, one message per peer, ceil(n / 64) words per pair."""
    n = pairs[0][0].shape[0]
    packed = [(x._map(_pack), y._map(_pack)) for x, y in pairs]
    return [z._map(lambda t: _unpack(t, n)) for z in boolean.and_many(ctx, packed, step)]


def group_counts(ctx: Context, cont: ArithmeticShares, step: str = "group-counts") -> ArithmeticShares:
    """Every row's group size (shape (n,)), the group total of a public column of ones.
    Cost: ceil(log2 n) rounds; 3 ring elements per row and round per party (2 in the last).
    Error: exact. Leakage: none."""
    ring = cont.ring
    n = _rows(cont)
    ones = ring.from_int64(torch.ones((n, 1), dtype=torch.int64))
    zero = torch.zeros_like(ones)
    column = ArithmeticShares(ring, ones if ctx.rank == 0 else zero, ones if ctx.rank == 2 else zero.clone())
    return group_totals(ctx, column, cont, step).reshape((n,))


def group_starts(ctx: Context, cont: ArithmeticShares) -> ArithmeticShares:
    """1 - cont: 1 on the first row of every group (local)."""
    return _ones_minus(ctx, cont)


__all__ = [
    "adjacent_equal",
    "bits_to_arithmetic",
    "group_counts",
    "group_starts",
    "group_totals",
    "mul",
    "segmented_any",
    "segmented_scans",
]
