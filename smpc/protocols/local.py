"""Local steps of the round-based protocols (no messages): public constants as ring tensors,
affine maps and sums of sharings, bits of boolean words, tables of public values over index
bits, and the moves of ring64 sharings into ring128 and back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

from smpc.ring import RING128, Ring
from smpc.sharing import ArithmeticShares, BooleanShares

_CONSTS: OrderedDict[tuple[int, int, int], torch.Tensor] = OrderedDict()
_CONSTS_LOCK = threading.Lock()
_CONSTS_BYTES = 96 << 20  # the most memory kept for public constants (the newest always kept)


def const_tensor(ring: Ring, value: int, n: int) -> torch.Tensor:
    """A public constant (mod 2^k) as a full, contiguous ring tensor of n elements (what the
    C kernels take). The most recent ones are kept and shared between calls and party
    threads (a Goldschmidt step or a polynomial reuses its constants): READ ONLY, never an
    in-place operand."""
    key = (ring.bits, value % (1 << ring.bits), n)
    with _CONSTS_LOCK:
        got = _CONSTS.get(key)
        if got is not None:
            _CONSTS.move_to_end(key)
            return got
    t = ring.from_ints([key[1]])
    got = t.reshape(ring.lanes, 1).expand(ring.lanes, n).reshape(ring.zeros((n,)).shape).contiguous()
    with _CONSTS_LOCK:
        _CONSTS[key] = got
        total = sum(c.numel() * 8 for c in _CONSTS.values())
        while total > _CONSTS_BYTES and len(_CONSTS) > 1:
            _, old = _CONSTS.popitem(last=False)
            total -= old.numel() * 8
    return got


def affine(ctx, x: ArithmeticShares, a: int, b: int) -> ArithmeticShares:
    """a * x + b for public integers (local)."""
    ring, n = x.ring, x.numel()
    out = x.mul_public(const_tensor(ring, a, n)) if a != 1 else x
    return out.add_public(ctx.rank, const_tensor(ring, b, n)) if b else out


def public_minus(ctx, c: torch.Tensor, x: ArithmeticShares) -> ArithmeticShares:
    """c - x for a public ring tensor c (local; one pass per share)."""
    r = x.ring
    first = r.sub(c, x.first) if ctx.rank == 0 else r.neg(x.first)
    second = r.sub(c, x.second) if ctx.rank == 2 else r.neg(x.second)
    return ArithmeticShares(r, first, second)


def contiguous_shares(x: ArithmeticShares) -> ArithmeticShares:
    """x with both share tensors contiguous (what the C kernels take)."""
    return ArithmeticShares(x.ring, x.first.contiguous(), x.second.contiguous())


def sum_shares(items: list[ArithmeticShares]) -> ArithmeticShares:
    """The sum of several sharings of one shape (local)."""
    out = items[0]
    for x in items[1:]:
        out = out.add(x)
    return out


def bit_table(k: int, fn) -> list[int]:
    """The table of fn over k bits (index b_0 + 2 b_1 + ...), reduced mod 2^128."""
    return [int(fn(*((i >> b) & 1 for b in range(k)))) % (1 << 128) for i in range(1 << k)]


def extract_bit(w: BooleanShares, i: int) -> BooleanShares:
    """Bit i of a boolean-shared word, as bit 0 of a word (local)."""
    return (w.rshift(i) if i else w).and_public(1)


def embed_unsigned(x: ArithmeticShares) -> ArithmeticShares:
    """The three ring64 shares, read unsigned, as a ring128 sharing of their integer sum."""
    z = torch.zeros_like(x.first)
    return ArithmeticShares(RING128, torch.stack([x.first, z]), torch.stack([x.second, z.clone()]))


def to_ctx_ring(ctx, x: ArithmeticShares) -> ArithmeticShares:
    """A ring128 result back in the context's ring (ring64: the low lane, exact while the
    value fits 64 bits)."""
    if ctx.ring.bits == 128:
        return x
    return ArithmeticShares(ctx.ring, x.first[0].contiguous(), x.second[0].contiguous())


def flatten(x: ArithmeticShares) -> ArithmeticShares:
    """x as a contiguous 1-D sharing (the round-based protocols work on flat sharings)."""
    return contiguous_shares(x.reshape((x.numel(),)))
