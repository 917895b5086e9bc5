"""Arithmetic protocols on 3-party replicated shares: input, reveal, multiply, truncate.

Costs are per party and per output element, in ring elements (8 bytes on ring64, 16 on
ring128); ``docs/costs.md`` holds the measured table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from smpc.errors import SmpcError
from smpc.ring import add_random2_, add_truncate_negated_, random_, rss_product_random, rss_product_truncated
from smpc.sharing import N_COMPUTE, ArithmeticShares

if TYPE_CHECKING:
    from smpc.context import Context


def share_input(ctx: Context, encoded: torch.Tensor | None, owner: int) -> ArithmeticShares | None:
    """Secret-share ``encoded`` (a ring tensor, given on ``owner`` only).

    A compute owner o (holding s_o, s_(o+1)) draws s_o from the stream it shares with o+2
    and s_(o+2) from the stream all compute parties share (``ctx.prg_common``), and sends
    s_(o+1) = x - s_o - s_(o+2) to party o+1, its only other holder; party o+2 draws both
    its shares and gets only the shape. Knowing s_(o+2) is harmless: each of o+1 and o+2
    misses one of the two other shares, and the owner knows x. An input party (rank >= 3)
    draws s_0 and s_1 from per-session keys it gave to their holders, sends s_2 to parties 1
    and 2, and the shape to party 0.
    Cost: 1 round; a compute owner sends 1 ring element per element (plus 8 bytes per
    dimension to party o+2), an input party 2 (plus 8 bytes per dimension to party 0).
    Leakage: the shape.
    Returns this party's shares (None on ranks that are not compute parties).
    """
    r = ctx.ring
    rank = ctx.rank
    step = f"input{owner}"
    if owner < N_COMPUTE:
        holder, drawer = (owner + 1) % N_COMPUTE, (owner + 2) % N_COMPUTE
        if rank == owner:
            shape = r.shape(encoded)
            s_own = r.random(ctx.prg_prev, shape)
            s_far = r.random(ctx.prg_common, shape)
            s_next = r.sub(r.sub(encoded, s_own), s_far)
            header = torch.tensor(list(shape), dtype=torch.int64)
            ctx.exchange(step, sends={holder: s_next, drawer: header})
            return ArithmeticShares(r, s_own, s_next)
        if not ctx.is_compute:
            return None
        got = ctx.exchange(step, recv_from=[owner])[owner]
        if rank == holder:  # (s_(o+1), s_(o+2))
            return ArithmeticShares(r, got, r.random(ctx.prg_common, r.shape(got)))
        shape = tuple(got.tolist())  # (s_(o+2), s_o); s_o is shared with o = next
        return ArithmeticShares(r, r.random(ctx.prg_common, shape), r.random(ctx.prg_next, shape))
    if rank == owner:
        keys = ctx.input_prgs
        shape = r.shape(encoded)
        s0 = r.random(keys[0], shape)
        s1 = r.random(keys[1], shape)
        s2 = r.sub(r.sub(encoded, s0), s1)
        header = torch.tensor(list(shape), dtype=torch.int64)
        ctx.exchange(step, sends={0: header, 1: s2, 2: s2})
        return None
    if not ctx.is_compute:
        return None
    got = ctx.exchange(step, recv_from=[owner])[owner]
    keys = ctx.input_prgs_of[owner]
    if rank == 0:
        shape = tuple(got.tolist())
        return ArithmeticShares(r, r.random(keys[0], shape), r.random(keys[1], shape))
    shape = r.shape(got)
    if rank == 1:
        return ArithmeticShares(r, r.random(keys[1], shape), got)
    return ArithmeticShares(r, got, r.random(keys[0], shape))


def share_inputs(ctx: Context, encoded: torch.Tensor | None, owners: list[int], shape,
                 shapes: list | None = None) -> list[ArithmeticShares | None]:
    """Every rank in ``owners`` secret-shares its own ``encoded`` (given on that rank only) of
    the public element ``shape``, all in one round: ``share_input`` once per owner would take
    one round each, and a bank's aggregates never depend on another's. ``shapes``, where
    given, is one public shape per owner instead (banks' rows, once their counts are known).

    The shares are those of ``share_input``; since every party knows the shape, all of them
    draw their randomness before the round, stream by stream in owner order, and no shape
    header is sent. Cost: 1 round; a compute owner sends 1 ring element per element to one
    party, an input party 1 to each of parties 1 and 2. Leakage: none (the shape is public).
    Returns this party's shares per owner, in owner order (None on ranks that are not compute
    parties).
    """
    r = ctx.ring
    rank = ctx.rank
    shape_of = dict(zip(owners, [tuple(s) for s in shapes] if shapes is not None else [tuple(shape)] * len(owners),
                        strict=True))
    sends: dict[int, torch.Tensor] = {}
    recv: list[int] = []
    held: dict[int, tuple] = {}  # owner -> (first, second); None marks the share to receive
    for o in owners:
        shape = shape_of[o]
        if o < N_COMPUTE:
            holder, drawer = (o + 1) % N_COMPUTE, (o + 2) % N_COMPUTE
            if rank == o:
                s_own = r.random(ctx.prg_prev, shape)
                s_next = r.sub(r.sub(encoded, s_own), r.random(ctx.prg_common, shape))
                sends[holder] = s_next
                held[o] = (s_own, s_next)
            elif rank == holder:
                held[o] = (None, r.random(ctx.prg_common, shape))
                recv.append(o)
            elif rank == drawer:
                held[o] = (r.random(ctx.prg_common, shape), r.random(ctx.prg_next, shape))
        elif rank == o:
            s0 = r.random(ctx.input_prgs[0], shape)
            s1 = r.random(ctx.input_prgs[1], shape)
            s2 = r.sub(r.sub(encoded, s0), s1)
            sends[1] = s2
            sends[2] = s2
        elif ctx.is_compute:
            keys = ctx.input_prgs_of[o]
            if rank == 0:
                held[o] = (r.random(keys[0], shape), r.random(keys[1], shape))
            elif rank == 1:
                held[o] = (r.random(keys[1], shape), None)
                recv.append(o)
            else:
                held[o] = (None, r.random(keys[0], shape))
                recv.append(o)
    got = ctx.exchange("inputs", sends=sends, recv_from=recv)
    if not ctx.is_compute:
        return [None] * len(owners)
    out = []
    for o in owners:
        first, second = held[o]
        shape = shape_of[o]
        if o in got:
            piece = got[o]
            if tuple(r.shape(piece)) != shape:
                raise SmpcError(f"{ctx.name_of(o)} sent a share of shape {tuple(r.shape(piece))}, not {shape}")
            first, second = (piece, second) if first is None else (first, piece)
        out.append(ArithmeticShares(r, first, second))
    return out


def _low_bytes(ring, t: torch.Tensor, width: int) -> torch.Tensor:
    """The low ``width`` bytes (1..8) of every element of a ring tensor: for 8 the low int64
    lane itself, else a uint8 tensor (elements x width), little-endian, low byte first."""
    low = t[0] if ring.lanes == 2 else t
    if width == 8:
        return low
    return low.reshape(-1).contiguous().view(torch.uint8).view(-1, 8)[:, :width].contiguous()


def _widen(piece: torch.Tensor, width: int, shape) -> torch.Tensor:
    """int64 elements of ``shape`` whose low ``width`` bytes are those of ``piece`` (as sent
    by ``_low_bytes``) and whose other bytes are zero."""
    if width == 8:
        return piece.to(torch.int64).reshape(shape)
    padded = torch.zeros((piece.numel() // width, 8), dtype=torch.uint8)
    padded[:, :width] = piece.reshape(-1, width)
    return padded.view(torch.int64).reshape(shape)


def _from_low_bytes(ring, total: torch.Tensor, width: int) -> torch.Tensor:
    """The ring tensor of the signed value whose low ``width`` bytes are ``total`` (an int64
    sum of narrow shares, correct mod 2^(8 width)): sign-extended from bit 8 width - 1."""
    spare = 64 - 8 * width
    value = total.bitwise_left_shift(spare).bitwise_right_shift(spare) if spare else total
    return torch.stack([value, value >> 63]) if ring.lanes == 2 else value


def reveal(ctx: Context, x: ArithmeticShares | None, to: list[int], width: int | None = None) -> torch.Tensor | None:
    """Open x to the ranks in ``to`` only; every other rank gets None and is sent nothing.

    Compute party j sends its s_j to party j+1 when that party is a recipient, and to every
    recipient that is not a compute party. With ``width`` (bytes, 1..8 and less than a ring
    element: the value is known to lie in the signed range of that many bytes,
    ``fixedpoint.open_width``) only the low ``width`` bytes of s_j travel to compute
    recipients: they sum to the value mod 2^(8 width), which determines it (other ranks get
    whole elements: without shares they cannot know every bound, e.g. of a sum over a shape
    they never see).
    Cost: 1 round; 1 ring element (or ``width`` bytes) per element to each recipient from
    each sender (a compute recipient receives from one party, others from three).
    Leakage: the value, to the recipients.
    """
    r = ctx.ring
    narrow = width is not None and width < r.bits // 8
    rank = ctx.rank
    recipients = set(to)
    sends = {}
    if ctx.is_compute:
        nxt = (rank + 1) % N_COMPUTE
        if nxt in recipients:
            sends[nxt] = _low_bytes(r, x.first, width) if narrow else x.first
        for u in recipients:
            if u >= N_COMPUTE:  # whole elements: a rank without shares cannot know the bound
                sends[u] = x.first
    if rank in recipients:
        senders = [(rank + 2) % N_COMPUTE] if ctx.is_compute else list(range(N_COMPUTE))
    else:
        senders = []
    got = ctx.exchange("reveal", sends=sends, recv_from=senders)
    if rank not in recipients:
        return None
    if ctx.is_compute and narrow:
        own = _low_bytes(r, x.first, 8)
        total = _widen(got[senders[0]], width, own.shape) + own
        total += _low_bytes(r, x.second, 8)
        return _from_low_bytes(r, total, width)
    if ctx.is_compute:
        return r.add(r.add(x.first, x.second), got[senders[0]])
    return r.add(r.add(got[0], got[1]), got[2])


def reshare(ctx: Context, z: torch.Tensor, step: str = "reshare") -> ArithmeticShares:
    """Turn a 3-out-of-3 sharing (z_i on party i, masked as ``product_masks(ctx, False)``)
    into RSS: party i sends z_i to party i-1. Cost: 1 round, 1 ring element per element per
    party."""
    prev, nxt = (ctx.rank - 1) % N_COMPUTE, (ctx.rank + 1) % N_COMPUTE
    got = ctx.exchange(step, sends={prev: z}, recv_from=[nxt])
    return ArithmeticShares(ctx.ring, z, got[nxt])


def reshare_truncated(ctx: Context, z: torch.Tensor, d: int, step: str = "trunc") -> ArithmeticShares:
    """Reshare a 3-out-of-3 sharing of x, masked as ``product_masks(ctx, True)`` says, and
    divide by 2^d in the same round. ``z`` is consumed: parties 1 and 2 truncate in place.

    Split x = A + B with A = z_0 (party 0) and B = z_1 + z_2 (parties 1 and 2 swap z_1, z_2),
    truncate each side locally (SecureML): t_A = A >> d, t_B = -((-B) >> d) as unsigned
    shifts. New shares: s'_1 = r from the PRG of parties 0 and 1, s'_0 = t_A - r (party 0
    sends it to party 2), s'_2 = t_B (known to 1 and 2).
    Cost: 1 round; party 0 sends 1 ring element per element to party 2, parties 1 and 2
    1 each to one another.
    Error: floor(x / 2^d) or one more; with probability <= 2^(l+1-k) for |x| < 2^l (the
    share A landing near the wrap point) the result is wrong by about 2^(k-d) instead;
    callers keep l <= k - 41 so this is <= 2^-40 (``fixedpoint.check_truncatable``).
    Leakage: the rounding correlates with party 0's share: the result is
    floor(x / 2^d) + [x mod 2^d > A mod 2^d] (A = z_0, known to party 0), so wherever a
    truncated value is opened to party 0, party 0 learns whether the d dropped low bits of x
    exceed A mod 2^d; to any other party the rounding is an unbiased random bit.
    """
    r = ctx.ring
    rank = ctx.rank
    shape = r.shape(z)
    if rank == 0:
        mask = random_(r, ctx.prg_next, shape)
        message = r.sub_(r.rshift_logical(z, d), mask)
        ctx.exchange(step, sends={2: message})
        return ArithmeticShares(r, message, mask)
    other = 2 if rank == 1 else 1
    recv_from = [other] if rank == 1 else [other, 0]
    got = ctx.exchange(step, sends={other: z}, recv_from=recv_from)  # (sent: a copy)
    truncated = add_truncate_negated_(r, z, got[other].view(z.shape), d)
    if rank == 1:
        return ArithmeticShares(r, random_(r, ctx.prg_prev, shape), truncated)
    return ArithmeticShares(r, truncated, got[0].view(z.shape))


def product_masks(ctx: Context, truncating: bool) -> tuple:
    """The PRG masks party i adds to its term of a product before resharing, as
    ``ring.add_random2_`` arguments (prg, sign[, prg, sign]).

    Plain reshare: a fresh 3-out-of-3 sharing of zero, alpha_i = F(k_{i,i+1}) - F(k_{i-1,i}):
    it sums to 0, and each alpha_i is uniform to every other single party because it misses
    one of the two keys.
    Truncating reshare (``reshare_truncated``): z_0 = t_0 + F01 + F20, z_1 = t_1 - F01,
    z_2 = t_2 - F20 (F_ij from the stream of parties i and j; the z still sum to the
    value). The two messages that leave parties 1 and 2 are each masked by a stream their
    receiver lacks, party 0's message by its own mask, and A = z_0 is uniform and
    independent of the value (F20 alone makes it so), which is all the failure bound uses:
    four draws instead of six.
    """
    if not truncating:
        return (ctx.prg_next, 1, ctx.prg_prev, -1)
    return {0: (ctx.prg_next, 1, ctx.prg_prev, 1), 1: (ctx.prg_prev, -1), 2: (ctx.prg_next, -1)}[ctx.rank]


def _finish(ctx: Context, z: torch.Tensor, trunc_bits: int, step: str) -> ArithmeticShares:
    """Mask party i's product term z in place (``product_masks``) and reshare it."""
    add_random2_(ctx.ring, z, *product_masks(ctx, bool(trunc_bits)))
    return _reshare_masked(ctx, z, trunc_bits, step)


def _reshare_masked(ctx: Context, z: torch.Tensor, trunc_bits: int, step: str) -> ArithmeticShares:
    if trunc_bits:
        return reshare_truncated(ctx, z, trunc_bits, step + "+trunc")
    return reshare(ctx, z, step)


def _product(ctx: Context, x: ArithmeticShares, y: ArithmeticShares, trunc_bits: int, step: str) -> ArithmeticShares:
    """The elementwise product term, its masks and the reshare; the term and its masks in one
    pass (C kernels), and party 0's truncating term, masks, shift and mask in one."""
    r = ctx.ring
    if trunc_bits and ctx.rank == 0:
        message, mask = rss_product_truncated(
            r, x.first, x.second, y.first, y.second, trunc_bits, ctx.prg_next, ctx.prg_prev, ctx.prg_next
        )
        ctx.exchange(step + "+trunc", sends={2: message})
        return ArithmeticShares(r, message, mask)
    masks = product_masks(ctx, bool(trunc_bits))
    z = rss_product_random(r, None, x.first, x.second, y.first, y.second, *masks)
    return _reshare_masked(ctx, z, trunc_bits, step)


def mul(ctx: Context, x: ArithmeticShares, y: ArithmeticShares, trunc_bits: int = 0) -> ArithmeticShares:
    """Elementwise x * y (broadcasting), optionally divided by 2^trunc_bits in the same round.

    z_i = x_i (y_i + y_{i+1}) + x_{i+1} y_i plus its masks (``product_masks``) is a
    3-out-of-3 sharing of x*y.
    Cost: 1 round; 1 ring element per output element per party (with truncation: parties 1
    and 2 send 1, party 0 sends 1). Error: exact mod 2^k; see ``reshare_truncated``.
    """
    return _product(ctx, x, y, trunc_bits, "mul")


def square(ctx: Context, x: ArithmeticShares, trunc_bits: int = 0) -> ArithmeticShares:
    """x * x: z_i = x_i (x_i + 2 x_{i+1}), the product formula with y = x. Cost as ``mul``."""
    return _product(ctx, x, x, trunc_bits, "square")


def matmul(ctx: Context, x: ArithmeticShares, y: ArithmeticShares, trunc_bits: int = 0) -> ArithmeticShares:
    """Matrix product x @ y (torch.matmul semantics). Cost: 1 round; 1 ring element per
    element of the result per party. Error: as ``mul``."""
    r = ctx.ring
    z = r.matmul(x.first, r.add(y.first, y.second))
    r.add_(z, r.matmul(x.second, y.first))
    return _finish(ctx, z, trunc_bits, "matmul")


def mul_sum(ctx: Context, x: ArithmeticShares, y: ArithmeticShares, dim, trunc_bits: int = 0) -> ArithmeticShares:
    """sum(x * y, dim) with the sum taken before resharing, so only the reduced result
    crosses the wire (a dot product sends one element). Cost: 1 round; 1 ring element per
    element of the result per party."""
    r = ctx.ring
    z = r.sum(r.rss_product(x.first, x.second, y.first, y.second), dim=dim)
    return _finish(ctx, z, trunc_bits, "dot")


def truncate(ctx: Context, x: ArithmeticShares, d: int) -> ArithmeticShares:
    """x / 2^d. The RSS pair is first re-randomised into a masked 3-out-of-3 sharing
    (z_i = s_i plus its masks, ``product_masks``) so no party can see both halves of the split.
    Cost: 1 round, as ``reshare_truncated``. Leakage: the rounding correlates with party 0's
    share, as ``reshare_truncated`` states."""
    z = x.first.clone()
    add_random2_(ctx.ring, z, *product_masks(ctx, True))
    return reshare_truncated(ctx, z, d)
