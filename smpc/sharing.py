"""Share types and their local (communication-free) operations.

3-party replicated secret sharing (RSS, Araki et al. / ABY3): x = s_0 + s_1 + s_2 mod 2^k and
party i holds (s_i, s_{i+1}), indices mod 3. Any one party's pair is uniformly random; any two
parties together hold all three shares. Linear operations are local; the protocols in
``smpc.protocols`` do everything that needs messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from smpc.ring import Ring, broadcast_shape

N_COMPUTE = 3
COMPUTE_RANKS = tuple(range(N_COMPUTE))
"""The ranks of the compute parties, the shares' holders: 0, 1 and 2."""


@dataclass
class ArithmeticShares:
    """This party's pair (s_i, s_{i+1}) of ring tensors of equal shape."""

    ring: Ring
    first: torch.Tensor
    second: torch.Tensor

    @property
    def shape(self) -> torch.Size:
        return self.ring.shape(self.first)

    def numel(self) -> int:
        return self.ring.numel(self.first)

    def _map(self, fn) -> ArithmeticShares:
        return ArithmeticShares(self.ring, fn(self.first), fn(self.second))

    def add(self, other: ArithmeticShares) -> ArithmeticShares:
        r = self.ring
        return ArithmeticShares(r, r.add(self.first, other.first), r.add(self.second, other.second))

    def sub(self, other: ArithmeticShares) -> ArithmeticShares:
        r = self.ring
        return ArithmeticShares(r, r.sub(self.first, other.first), r.sub(self.second, other.second))

    def neg(self) -> ArithmeticShares:
        return self._map(self.ring.neg)

    def add_public(self, rank: int, value: torch.Tensor) -> ArithmeticShares:
        """Add a public ring tensor: it goes into s_0, held by party 0 (first) and party 2
        (second)."""
        r = self.ring
        # both shares take the broadcast shape on every party, whichever one holds s_0
        shape = broadcast_shape(r.shape(self.first), r.shape(value))
        first, second = r.expand(self.first, shape), r.expand(self.second, shape)
        if rank == 0:
            first = r.add(first, value)
        elif rank == 2:
            second = r.add(second, value)
        return ArithmeticShares(r, first, second)

    def mul_int(self, k) -> ArithmeticShares:
        """Multiply by public integers (an int or an int64 tensor / ring tensor)."""
        return self._map(lambda s: self.ring.mul_int(s, k))

    def mul_public(self, k: torch.Tensor) -> ArithmeticShares:
        """Multiply by a public ring tensor (broadcasting)."""
        return self._map(lambda s: self.ring.mul(s, k))

    def lshift(self, n: int) -> ArithmeticShares:
        return self._map(lambda s: self.ring.lshift(s, n))

    def sum(self, dim=None, keepdim: bool = False) -> ArithmeticShares:
        return self._map(lambda s: self.ring.sum(s, dim=dim, keepdim=keepdim))

    def reshape(self, shape) -> ArithmeticShares:
        return self._map(lambda s: self.ring.reshape(s, shape))

    def getitem(self, key) -> ArithmeticShares:
        return self._map(lambda s: self.ring.getitem(s, key))

    def transpose(self, d0: int, d1: int) -> ArithmeticShares:
        return self._map(lambda s: self.ring.transpose(s, d0, d1))

    def expand(self, shape) -> ArithmeticShares:
        return self._map(lambda s: self.ring.expand(s, shape))

    @staticmethod
    def cat(items: list[ArithmeticShares], dim: int = 0) -> ArithmeticShares:
        ring = items[0].ring
        return ArithmeticShares(
            ring,
            ring.cat([s.first for s in items], dim),
            ring.cat([s.second for s in items], dim),
        )

    @staticmethod
    def stack(items: list[ArithmeticShares], dim: int = 0) -> ArithmeticShares:
        ring = items[0].ring
        return ArithmeticShares(
            ring,
            ring.stack([s.first for s in items], dim),
            ring.stack([s.second for s in items], dim),
        )


@dataclass
class BooleanShares:
    """This party's pair (b_i, b_{i+1}) of 64-bit words with x = b_0 ^ b_1 ^ b_2 bitwise.

    Each int64 word packs 64 bits of one element (the two's complement bits of a value, or
    individual flags in bit 0). XOR and shifts are local; AND needs one round.
    """

    first: torch.Tensor
    second: torch.Tensor

    @property
    def shape(self) -> torch.Size:
        return self.first.shape

    def _map(self, fn) -> BooleanShares:
        return BooleanShares(fn(self.first), fn(self.second))

    def xor(self, other: BooleanShares) -> BooleanShares:
        return BooleanShares(self.first ^ other.first, self.second ^ other.second)

    def xor_public(self, rank: int, value) -> BooleanShares:
        """XOR a public word into component 0 (held by party 0 first and party 2 second)."""
        first, second = self.first, self.second
        if rank == 0:
            first = first ^ value
        elif rank == 2:
            second = second ^ value
        return BooleanShares(first, second)

    def invert(self, rank: int) -> BooleanShares:
        return self.xor_public(rank, -1)

    def and_public(self, mask) -> BooleanShares:
        return self._map(lambda s: s & mask)

    def lshift(self, n: int) -> BooleanShares:
        return self._map(lambda s: s << n)

    def rshift(self, n: int) -> BooleanShares:
        """Logical right shift by 0 < n < 64."""
        mask = (1 << (64 - n)) - 1
        return self._map(lambda s: (s >> n) & mask)

    def reshape(self, shape) -> BooleanShares:
        return self._map(lambda s: s.reshape(tuple(shape)))

    def getitem(self, key) -> BooleanShares:
        return self._map(lambda s: s[key])

    @staticmethod
    def cat(items: list[BooleanShares], dim: int = 0) -> BooleanShares:
        return BooleanShares(torch.cat([s.first for s in items], dim), torch.cat([s.second for s in items], dim))
