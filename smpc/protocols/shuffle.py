"""Oblivious shuffle of secret-shared rows: a permutation no single compute party knows.

The permutation is a composition pi = pi_20 o pi_12 o pi_01 of three permutations, each drawn
by one *pair* of compute parties from the AES-CTR stream they share (``ctx.prg_next`` /
``ctx.prg_prev``): the pair argsorts n fresh 64-bit words, which gives a uniformly random
permutation (ties, probability <= n^2 / 2^65, are broken by further random words, see
``random_permutation``). Every party misses exactly one of the three, so pi is uniformly
random and unknown to each single party.

Protocol (the resharing shuffle of Araki et al. / Asharov et al., on 3-party RSS):

1. The first pair (0, 1) turns the RSS x = x_0 + x_1 + x_2 into a 2-out-of-2 sharing locally
   (party 0 keeps u = x_0 + x_1, party 1 keeps v = x_2) and both permute their share by pi_01.
2. Hand over to the next pair (1, 2): party 0 sends u + z to party 2 and party 1 keeps v - z,
   with z drawn from the stream of parties 0 and 1 (party 2 never sees z, so u + z is a
   uniformly random ring element to it). Parties 1 and 2 permute by pi_12. The same hand-over
   (party 1 -> party 0, mask of parties 1 and 2) brings the rows to the pair (2, 0), which
   permutes by pi_20.
3. Back to RSS with party 1 as the third: y_1 and y_2 are drawn from the streams party 1
   shares with parties 0 and 2, and parties 2 and 0 swap their share minus that draw, so
   each learns y_0 = total - y_1 - y_2 and nothing else.

The inverse (``Shuffle.invert``) runs the same passes in reverse order with the inverse
permutations, so rows can be taken through a computation and brought back to their public
input order. Rows are any mix of arithmetic shares (ring64 or ring128, permuted along their
first logical dimension) and boolean (XOR) words; all of them travel in one message per peer
per round, with additive masks for arithmetic and XOR masks for boolean columns.

Cost: 3 rounds; per row and column, party 0 sends 2 ring elements (one in round 1 and one in
round 3), parties 1 and 2 one each (8 bytes per word or ring64 element, 16 per ring128
element); the inverse costs the same. Local work: two argsorts of n words per party (when the
``Shuffle`` is drawn) and a gather per pass.
Leakage: none beyond n (the number of rows). A party's view is its own two permutations and
uniformly random ring elements: every message is masked by a PRG output of a pair that does
not include the receiver.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from smpc.errors import ProtocolError
from smpc.prg import PRG
from smpc.sharing import N_COMPUTE, ArithmeticShares, BooleanShares

if TYPE_CHECKING:
    from smpc.context import Context
    from smpc.ring import Ring

Shares = ArithmeticShares | BooleanShares

FORWARD_PAIRS = ((0, 1), (1, 2), (2, 0))


def pair_prg(ctx: Context, other: int) -> PRG:
    """The AES-CTR stream this compute party shares with compute party ``other``."""
    rank = ctx.rank
    if other == (rank + 1) % N_COMPUTE:
        return ctx.prg_next
    if other == (rank - 1) % N_COMPUTE:
        return ctx.prg_prev
    raise ProtocolError(f"party {rank} shares no stream with party {other}")


def random_permutation(prg: PRG, n: int) -> torch.Tensor:
    """A uniformly random permutation of range(n) (int64 indices) drawn from ``prg``: the
    argsort of n fresh 64-bit words. Should two words tie (probability <= n^2/2^65), every
    word gets a second random word and the order is lexicographic, and so on, so the
    permutation is exactly uniform and the same on both parties of the pair whatever sort
    algorithm runs (no ties are left to break)."""
    if n == 0:
        return torch.empty(0, dtype=torch.int64)
    keys = [prg.int64(n).numpy()]
    while True:
        perm = np.lexsort(keys[::-1]) if len(keys) > 1 else np.argsort(keys[0])
        first = keys[0][perm]
        tied = first[1:] == first[:-1]
        for k in keys[1:]:
            ordered = k[perm]
            tied &= ordered[1:] == ordered[:-1]
        if not tied.any():
            return torch.from_numpy(perm.astype(np.int64))
        keys.append(prg.int64(n).numpy())


def inverse_permutation(perm: torch.Tensor) -> torch.Tensor:
    """inv with inv[perm[i]] = i, so x[perm][inv] == x."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), dtype=perm.dtype)
    return inv


class _Column:
    """How one item of a row bundle is masked, drawn, permuted and packed on the wire."""

    def __init__(self, item: Shares):
        if isinstance(item, ArithmeticShares):
            self.ring: Ring | None = item.ring
            self.raw_shape = tuple(item.first.shape)
            self.row_dim = 1 if item.ring.lanes == 2 else 0
        elif isinstance(item, BooleanShares):
            self.ring = None
            self.raw_shape = tuple(item.first.shape)
            self.row_dim = 0
        else:
            raise TypeError(f"cannot shuffle {type(item).__name__}; expected ArithmeticShares or BooleanShares")
        self.numel = 1
        for s in self.raw_shape:
            self.numel *= s

    @property
    def rows(self) -> int:
        return self.raw_shape[self.row_dim]

    def add(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a ^ b if self.ring is None else self.ring.add(a, b)

    def sub(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a ^ b if self.ring is None else self.ring.sub(a, b)

    def random(self, prg: PRG) -> torch.Tensor:
        return prg.int64(self.numel).reshape(self.raw_shape)

    def permute(self, t: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        return t.index_select(self.row_dim, perm)

    def wrap(self, first: torch.Tensor, second: torch.Tensor) -> Shares:
        if self.ring is None:
            return BooleanShares(first, second)
        return ArithmeticShares(self.ring, first, second)


def _pack(columns: list[_Column], tensors: list[torch.Tensor]) -> torch.Tensor:
    flat = [t.reshape(-1) for t in tensors]
    return torch.cat(flat) if len(flat) > 1 else flat[0].contiguous()


def _unpack(columns: list[_Column], payload: torch.Tensor) -> list[torch.Tensor]:
    out = []
    offset = 0
    for c in columns:
        out.append(payload[offset : offset + c.numel].reshape(c.raw_shape))
        offset += c.numel
    if offset != payload.numel():
        raise ProtocolError(f"shuffle: expected {offset} words from the peer, got {payload.numel()}")
    return out


def _run_passes(
    ctx: Context,
    items: Sequence[Shares],
    passes: Sequence[tuple[tuple[int, int], torch.Tensor | None]],
    step: str,
) -> list[Shares]:
    """Apply the permutations of ``passes`` (pair, this party's copy of the pair's
    permutation or None when it is not in the pair) in order; see the module docstring."""
    rank = ctx.rank
    columns = [_Column(x) for x in items]
    pairs = [p for p, _ in passes]
    # 1. RSS -> 2-out-of-2 on the first pair, with c the third party
    c = ({0, 1, 2} - set(pairs[0])).pop()
    a_party, b_party = (c + 1) % N_COMPUTE, (c + 2) % N_COMPUTE
    if rank == a_party:
        share = [col.add(x.first, x.second) for col, x in zip(columns, items, strict=True)]
    elif rank == b_party:
        share = [x.second for x in items]
    else:
        share = None
    # 2. permute, hand over to the next pair, permute again ...
    for k, (pair, perm) in enumerate(passes):
        if rank in pair:
            if perm is None:
                raise ProtocolError(f"party {rank} lacks the permutation of pair {pair}")
            share = [col.permute(t, perm) for col, t in zip(columns, share, strict=True)]
        if k + 1 == len(passes):
            break
        nxt = set(pairs[k + 1])
        sender = (set(pair) - nxt).pop()
        receiver = (nxt - set(pair)).pop()
        keeper = (set(pair) & nxt).pop()
        tag = f"{step}-pass{k}"
        if rank == sender:
            prg = pair_prg(ctx, keeper)
            masked = [col.add(t, col.random(prg)) for col, t in zip(columns, share, strict=True)]
            ctx.exchange(tag, sends={receiver: _pack(columns, masked)})
            share = None
        elif rank == keeper:
            prg = pair_prg(ctx, sender)
            share = [col.sub(t, col.random(prg)) for col, t in zip(columns, share, strict=True)]
        elif rank == receiver:
            share = _unpack(columns, ctx.exchange(tag, recv_from=[sender])[sender])
    # 3. 2-out-of-2 on the last pair -> RSS, with c the third party
    c = ({0, 1, 2} - set(pairs[-1])).pop()
    a_party, b_party = (c + 1) % N_COMPUTE, (c + 2) % N_COMPUTE
    tag = f"{step}-rss"
    if rank == c:
        y_c = [col.random(ctx.prg_prev) for col in columns]  # stream of (c-1, c) = (b, c)
        y_c1 = [col.random(ctx.prg_next) for col in columns]  # stream of (c, c+1) = (c, a)
        return [col.wrap(f, s) for col, f, s in zip(columns, y_c, y_c1, strict=True)]
    if rank == a_party:
        y_mine = [col.random(ctx.prg_prev) for col in columns]  # y_{c+1}, shared with c
        peer = b_party
    else:
        y_mine = [col.random(ctx.prg_next) for col in columns]  # y_c, shared with c
        peer = a_party
    part = [col.sub(t, y) for col, t, y in zip(columns, share, y_mine, strict=True)]
    got = _unpack(columns, ctx.exchange(tag, sends={peer: _pack(columns, part)}, recv_from=[peer])[peer])
    y_last = [col.add(p, g) for col, p, g in zip(columns, part, got, strict=True)]  # y_{c+2}
    if rank == a_party:  # holds (y_{c+1}, y_{c+2})
        return [col.wrap(f, s) for col, f, s in zip(columns, y_mine, y_last, strict=True)]
    return [col.wrap(f, s) for col, f, s in zip(columns, y_last, y_mine, strict=True)]  # (y_{c+2}, y_c)


class Shuffle:
    """A secret uniformly random permutation of n rows, drawn jointly by the compute parties.

    Each party holds the two of the three pairwise permutations it takes part in; none holds
    all three. ``apply`` permutes row bundles by it, ``invert`` by its inverse; both may be
    called any number of times (every call moves fresh re-randomised shares).
    Cost of drawing: no messages; two argsorts of n 64-bit words per party.
    """

    def __init__(self, ctx: Context, n: int):
        if not ctx.is_compute:
            raise ProtocolError("only the compute parties take part in a shuffle")
        self.ctx = ctx
        self.n = int(n)
        self._perms: dict[tuple[int, int], torch.Tensor] = {}
        for pair in FORWARD_PAIRS:
            if ctx.rank in pair:
                other = pair[0] if pair[1] == ctx.rank else pair[1]
                self._perms[pair] = random_permutation(pair_prg(ctx, other), self.n)
        self._inverses: dict[tuple[int, int], torch.Tensor] = {}

    def _inverse(self, pair: tuple[int, int]) -> torch.Tensor | None:
        if pair not in self._perms:
            return None
        if pair not in self._inverses:
            self._inverses[pair] = inverse_permutation(self._perms[pair])
        return self._inverses[pair]

    def _check(self, items: Sequence[Shares]) -> None:
        if not items:
            raise ProtocolError("shuffle: no columns given")
        for x in items:
            rows = _Column(x).rows
            if rows != self.n:
                raise ProtocolError(f"shuffle drawn for {self.n} rows was given a column of {rows} rows")

    def apply(self, items: Sequence[Shares], step: str = "shuffle") -> list[Shares]:
        """The rows permuted by pi (row i of the result is row pi(i) of the input).
        Cost: 3 rounds; per row and column party 0 sends 2 elements, parties 1 and 2 one.
        Leakage: none."""
        self._check(items)
        if self.n == 0:
            return list(items)
        passes = [(pair, self._perms.get(pair)) for pair in FORWARD_PAIRS]
        return _run_passes(self.ctx, items, passes, step)

    def invert(self, items: Sequence[Shares], step: str = "unshuffle") -> list[Shares]:
        """The rows permuted by pi^-1: ``invert(apply(x)) == x`` as values.
        Cost: 3 rounds; per row and column party 0 sends 2 elements, parties 1 and 2 one.
        Leakage: none."""
        self._check(items)
        if self.n == 0:
            return list(items)
        passes = [(pair, self._inverse(pair)) for pair in reversed(FORWARD_PAIRS)]
        return _run_passes(self.ctx, items, passes, step)


def shuffle(ctx: Context, items: Sequence[Shares]) -> tuple[list[Shares], Shuffle]:
    """Shuffle rows (a list of shares with the same number of rows, permuted together) by a
    fresh secret permutation; returns the shuffled rows and the ``Shuffle`` that undoes it.
    Cost: 3 rounds (see ``Shuffle.apply``). Leakage: none beyond the number of rows."""
    if not items:
        raise ProtocolError("shuffle: no columns given")
    perm = Shuffle(ctx, _Column(items[0]).rows)
    return perm.apply(items), perm


def unshuffle(ctx: Context, items: Sequence[Shares], perm: Shuffle) -> list[Shares]:
    """Undo ``shuffle``: the rows back in their original order (fresh shares).
    Cost: 3 rounds. Leakage: none."""
    return perm.invert(items)


__all__ = ["Shuffle", "inverse_permutation", "pair_prg", "random_permutation", "shuffle", "unshuffle"]
