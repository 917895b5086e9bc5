"""The rings Z_2^64 and Z_2^128 as kernels on torch.int64 tensors.

A ring element tensor ("ring tensor") of logical shape S is
- for Z_2^64: an int64 tensor of shape S (two's complement wraparound is the ring);
- for Z_2^128: an int64 tensor of shape (2, *S): lane 0 holds the low 64 bits, lane 1 the
  high 64 bits; the element is lane1 * 2^64 + unsigned(lane0).

Every kernel is exact modulo 2^k. Nothing here knows about secrets or parties: these are the
arithmetic primitives the share types and protocols are built from. Kernels allocate as little
as they can; on this class of machine an int64 op on 1e6 elements costs ~1 ms in place but
~5 ms when it allocates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

try:  # optional C kernels (setup.py builds them; identical results, ~10x faster on ring128)
    from smpc import _ringkernels as _C
except ImportError:  # pragma: no cover - exercised on machines without a compiler
    _C = None

INT64 = torch.int64
_MIN64 = -(1 << 63)
_MASK32 = 0xFFFFFFFF
# float64 carries 53 exact bits: a limb product summed over the inner dimension must fit them.
_FLOAT_EXACT_BITS = 53


def _wrap64(value: int) -> int:
    """A Python int reduced to the signed int64 with the same low 64 bits."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _lrs(x: torch.Tensor, n: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns by 0 <= n < 64."""
    if n == 0:
        return x.clone()
    return (x >> n).bitwise_and_((1 << (64 - n)) - 1)


def _ult(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Unsigned a < b on int64 bit patterns (bool tensor)."""
    return (a ^ _MIN64) < (b ^ _MIN64)


_use_c = _C is not None


def use_c_kernels(enabled: bool) -> bool:
    """Switch the C kernels on or off (tests compare both paths); returns the previous state."""
    global _use_c
    previous = _use_c
    _use_c = enabled and _C is not None
    return previous


def c_kernels_available() -> bool:
    return _C is not None


def _fast(*tensors: torch.Tensor) -> bool:
    """True when the C kernels apply: same shape, contiguous, int64, non-empty."""
    if not _use_c:
        return False
    shape = tensors[0].shape
    return all(t.shape == shape and t.is_contiguous() and t.dtype == INT64 for t in tensors) and tensors[
        0
    ].numel() > 0


def mulhi_unsigned(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """High 64 bits of the 128-bit product of a and b read as unsigned 64-bit integers."""
    a_hi = a >> 32
    a_lo = a - (a_hi << 32)  # in [0, 2^32)
    b_hi = b >> 32
    b_lo = b - (b_hi << 32)
    # signed high word first: a = a_hi*2^32 + a_lo with a_hi signed in [-2^31, 2^31)
    t = a_lo * b_lo
    carry = _lrs(t, 32)
    cross1 = a_hi * b_lo
    cross1 += carry  # |.| < 2^63: exact
    cross2 = a_lo * b_hi
    cross2 += cross1 & _MASK32
    high = a_hi * b_hi
    high += cross1 >> 32
    high += cross2 >> 32
    # unsigned correction: for a < 0 (as signed) the unsigned value is a + 2^64, adding b*2^64
    high += (a >> 63) & b
    high += (b >> 63) & a
    return high


class Ring:
    """Common interface of the two rings. Subclasses implement the lane arithmetic."""

    bits: int
    lanes: int
    name: str

    # ----- shape -----------------------------------------------------------------------
    def shape(self, a: torch.Tensor) -> torch.Size:
        raise NotImplementedError

    def numel(self, a: torch.Tensor) -> int:
        return a.numel() // self.lanes

    @property
    def element_bytes(self) -> int:
        return 8 * self.lanes

    def rss_product(self, x1, x2, y1, y2):
        """x1 * (y1 + y2) + x2 * y1: one party's term of a replicated-sharing product."""
        out = self.mul(x1, self.add(y1, y2))
        return self.add_(out, self.mul(x2, y1))

    def __repr__(self) -> str:
        return self.name


class Ring64(Ring):
    """Z_2^64 on plain int64 tensors; torch's integer wraparound is the ring's reduction."""

    bits = 64
    lanes = 1
    name = "ring64"

    def shape(self, a):
        return a.shape

    def zeros(self, shape: Sequence[int]) -> torch.Tensor:
        return torch.zeros(tuple(shape), dtype=INT64)

    def from_int64(self, x: torch.Tensor) -> torch.Tensor:
        """Embed signed int64 integers."""
        return x.to(INT64)

    def from_ints(self, values, shape: Sequence[int] | None = None) -> torch.Tensor:
        flat = [_wrap64(int(v)) for v in values]
        t = torch.tensor(flat, dtype=INT64)
        return t.reshape(tuple(shape)) if shape is not None else t

    def to_ints(self, a: torch.Tensor, signed: bool = True) -> list[int]:
        flat = a.reshape(-1).tolist()
        if signed:
            return flat
        return [v & ((1 << 64) - 1) for v in flat]

    def add(self, a, b):
        return a + b

    def add_(self, a, b):
        return a.add_(b)

    def sub(self, a, b):
        return a - b

    def sub_(self, a, b):
        return a.sub_(b)

    def neg(self, a):
        return -a

    def mul(self, a, b):
        return a * b

    def rss_product(self, x1, x2, y1, y2):
        if _fast(x1, x2, y1, y2):
            out = torch.empty_like(x1)
            _C.rss_product64(out.data_ptr(), x1.data_ptr(), x2.data_ptr(), y1.data_ptr(), y2.data_ptr(), x1.numel())
            return out
        return super().rss_product(x1, x2, y1, y2)

    def mul_int(self, a: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
        """Multiply by public integers (Python int mod 2^64, or an int64 tensor)."""
        if isinstance(k, int):
            k = _wrap64(k)
        return a * k

    def matmul(self, a, b):
        if a.shape[-1] <= 16 or a.dim() == 1 or b.dim() == 1:
            return torch.matmul(a, b)
        return _matmul_limbs(a, b, 64)[0]

    def lshift(self, a, n: int):
        return a << n if n < 64 else torch.zeros_like(a)

    def rshift_arith(self, a, n: int):
        return a >> min(n, 63)

    def rshift_logical(self, a, n: int):
        return _lrs(a, n) if n < 64 else torch.zeros_like(a)

    def truncate_negated(self, a, n: int):
        """-((-a) >>> n): the second party's half of a probabilistic truncation."""
        return -self.rshift_logical(-a, n)

    def bit(self, a, i: int) -> torch.Tensor:
        return (a >> i) & 1

    def msb(self, a) -> torch.Tensor:
        return (a >> 63) & 1

    def sum(self, a, dim=None, keepdim: bool = False):
        if dim is None:
            return a.sum()
        return a.sum(dim=dim, keepdim=keepdim)

    def reshape(self, a, shape):
        return a.reshape(tuple(shape))

    def getitem(self, a, key):
        return a[key]

    def setitem(self, a, key, value):
        a[key] = value

    def cat(self, items, dim: int = 0):
        return torch.cat(list(items), dim=dim)

    def stack(self, items, dim: int = 0):
        return torch.stack(list(items), dim=dim)

    def transpose(self, a, d0: int, d1: int):
        return a.transpose(d0, d1)

    def expand(self, a, shape):
        return a.expand(tuple(shape))

    def random(self, prg, shape: Sequence[int]) -> torch.Tensor:
        n = math.prod(shape)
        return prg.int64(n).reshape(tuple(shape))

    def from_float_integral(self, v: torch.Tensor) -> torch.Tensor:
        """Embed float64 tensors holding integers with |v| < 2^63."""
        return v.to(INT64)

    def to_float(self, a: torch.Tensor, frac_bits: int) -> torch.Tensor:
        """Decode the signed value a / 2^frac_bits to float64, exactly when it fits 53 bits.

        The integer part is the floor of the signed value (arithmetic shift), the fraction
        the low bits: so -0.25 decodes to -1 + 0.75, never to -1 or 0.
        """
        if frac_bits == 0:
            return a.to(torch.float64)
        whole = (a >> frac_bits).to(torch.float64)
        frac = (a & ((1 << frac_bits) - 1)).to(torch.float64)
        return whole + frac / float(1 << frac_bits)


class Ring128(Ring):
    """Z_2^128 as (low, high) int64 lanes stacked on a leading dimension of size 2."""

    bits = 128
    lanes = 2
    name = "ring128"

    def shape(self, a):
        return a.shape[1:]

    def zeros(self, shape):
        return torch.zeros((2, *tuple(shape)), dtype=INT64)

    def _dim(self, dim: int) -> int:
        return dim + 1 if dim >= 0 else dim

    def from_int64(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(INT64)
        return torch.stack([x, x >> 63])

    def from_ints(self, values, shape=None):
        values = [int(v) for v in values]
        lo = torch.tensor([_wrap64(v) for v in values], dtype=INT64)
        hi = torch.tensor([_wrap64(v >> 64) for v in values], dtype=INT64)
        t = torch.stack([lo, hi])
        return t.reshape((2, *tuple(shape))) if shape is not None else t

    def to_ints(self, a, signed: bool = True):
        lo = a[0].reshape(-1).tolist()
        hi = a[1].reshape(-1).tolist()
        out = []
        for low, high in zip(lo, hi):
            v = ((high & ((1 << 64) - 1)) << 64) | (low & ((1 << 64) - 1))
            if signed and v >= 1 << 127:
                v -= 1 << 128
            out.append(v)
        return out

    def _out(self, a, b):
        return torch.empty((2, *torch.broadcast_shapes(a.shape[1:], b.shape[1:])), dtype=INT64)

    def _binary_c(self, kernel, a, b):
        out = torch.empty_like(a)
        kernel(out.data_ptr(), a.data_ptr(), b.data_ptr(), a[0].numel())
        return out

    def rss_product(self, x1, x2, y1, y2):
        if _fast(x1, x2, y1, y2):
            out = torch.empty_like(x1)
            _C.rss_product128(
                out.data_ptr(), x1.data_ptr(), x2.data_ptr(), y1.data_ptr(), y2.data_ptr(), x1[0].numel()
            )
            return out
        return super().rss_product(x1, x2, y1, y2)

    def add(self, a, b):
        if _fast(a, b):
            return self._binary_c(_C.add128, a, b)
        out = self._out(a, b)
        torch.add(a[0], b[0], out=out[0])
        torch.add(a[1], b[1], out=out[1])
        out[1] += _ult(out[0], b[0])
        return out

    def add_(self, a, b):
        if _fast(a, b):
            _C.add128(a.data_ptr(), a.data_ptr(), b.data_ptr(), a[0].numel())
            return a
        a[0] += b[0]
        a[1] += b[1]
        a[1] += _ult(a[0], b[0])
        return a

    def sub(self, a, b):
        if _fast(a, b):
            return self._binary_c(_C.sub128, a, b)
        out = self._out(a, b)
        torch.sub(a[0], b[0], out=out[0])
        torch.sub(a[1], b[1], out=out[1])
        out[1] -= _ult(a[0], b[0]).to(INT64)
        return out

    def sub_(self, a, b):
        if _fast(a, b):
            _C.sub128(a.data_ptr(), a.data_ptr(), b.data_ptr(), a[0].numel())
            return a
        borrow = _ult(a[0], b[0])
        a[0] -= b[0]
        a[1] -= b[1]
        a[1] -= borrow.to(INT64)
        return a

    def neg(self, a):
        out = torch.empty_like(a)
        torch.neg(a[0], out=out[0])
        torch.bitwise_not(a[1], out=out[1])
        out[1] += a[0] == 0
        return out

    def mul(self, a, b):
        if _fast(a, b):
            return self._binary_c(_C.mul128, a, b)
        lo = a[0] * b[0]
        hi = mulhi_unsigned(a[0], b[0])
        hi += a[0] * b[1]
        hi += a[1] * b[0]
        return torch.stack([lo, hi])

    def mul_int(self, a, k):
        if isinstance(k, int):
            k = self.from_ints([k]).reshape((2,) + (1,) * (a.dim() - 1))
        elif k.dim() == 0 or k.shape[0] != 2 or k.dim() < a.dim():
            k = self.from_int64(k)
        return self.mul(a, k)

    def matmul(self, a, b):
        low, carry_high = _matmul_limbs(a[0], b[0], 128)
        high = carry_high
        high += _matmul64(a[0], b[1])
        high += _matmul64(a[1], b[0])
        return torch.stack([low, high])

    def _shift_c(self, a, n: int, kind: int):
        out = torch.empty_like(a)
        _C.shift128(out.data_ptr(), a.data_ptr(), a[0].numel(), n, kind)
        return out

    def truncate_negated(self, a, n: int):
        """-((-a) >>> n): the second party's half of a probabilistic truncation."""
        if _fast(a) and n < 128:
            return self._shift_c(a, n, 3)
        return self.neg(self.rshift_logical(self.neg(a), n))

    def lshift(self, a, n: int):
        if _fast(a) and n < 128:
            return self._shift_c(a, n, 0)
        out = torch.zeros_like(a)
        if n == 0:
            out.copy_(a)
        elif n < 64:
            torch.bitwise_left_shift(a[0], n, out=out[0])
            torch.bitwise_or(a[1] << n, _lrs(a[0], 64 - n), out=out[1])
        elif n < 128:
            torch.bitwise_left_shift(a[0], n - 64, out=out[1])
        return out

    def rshift_arith(self, a, n: int):
        if _fast(a):
            return self._shift_c(a, min(n, 127), 2)
        out = torch.empty_like(a)
        if n == 0:
            out.copy_(a)
        elif n < 64:
            torch.bitwise_or(_lrs(a[0], n), a[1] << (64 - n), out=out[0])
            torch.bitwise_right_shift(a[1], n, out=out[1])
        else:
            torch.bitwise_right_shift(a[1], min(n - 64, 63), out=out[0])
            torch.bitwise_right_shift(a[1], 63, out=out[1])
        return out

    def rshift_logical(self, a, n: int):
        if _fast(a) and n < 128:
            return self._shift_c(a, n, 1)
        out = torch.zeros_like(a)
        if n == 0:
            out.copy_(a)
        elif n < 64:
            torch.bitwise_or(_lrs(a[0], n), a[1] << (64 - n), out=out[0])
            out[1] = _lrs(a[1], n)
        elif n < 128:
            out[0] = _lrs(a[1], n - 64)
        return out

    def bit(self, a, i: int):
        return (a[0] >> i) & 1 if i < 64 else (a[1] >> (i - 64)) & 1

    def msb(self, a):
        return (a[1] >> 63) & 1

    def sum(self, a, dim=None, keepdim: bool = False):
        count = a[0].numel() if dim is None else a.shape[self._dim(dim)]
        if count >= 1 << 31:
            raise ValueError("ring128 sums are exact up to 2^31 terms per reduction")
        kwargs = {} if dim is None else {"dim": dim, "keepdim": keepdim}
        low_words = (a[0] & _MASK32).sum(**kwargs)
        high_words = _lrs(a[0], 32).sum(**kwargs)
        high = a[1].sum(**kwargs)
        # low_words + high_words * 2^32 as a 128-bit number, then the high lane on top
        part = torch.stack([high_words << 32, high_words >> 32])
        total = self.add(part, torch.stack([low_words, torch.zeros_like(low_words)]))
        total[1] += high
        return total

    def reshape(self, a, shape):
        return a.reshape((2, *tuple(shape)))

    def getitem(self, a, key):
        if not isinstance(key, tuple):
            key = (key,)
        return a[(slice(None), *key)]

    def setitem(self, a, key, value):
        if not isinstance(key, tuple):
            key = (key,)
        a[(slice(None), *key)] = value

    def cat(self, items, dim: int = 0):
        return torch.cat(list(items), dim=self._dim(dim))

    def stack(self, items, dim: int = 0):
        return torch.stack(list(items), dim=self._dim(dim))

    def transpose(self, a, d0: int, d1: int):
        return a.transpose(self._dim(d0), self._dim(d1))

    def expand(self, a, shape):
        return a.expand((2, *tuple(shape)))

    def random(self, prg, shape):
        n = math.prod(shape)
        return prg.int64(2 * n).reshape((2, *tuple(shape)))

    def from_float_integral(self, v):
        """Embed float64 tensors holding integers with |v| < 2^127 (exact).

        v = high * 2^64 + mid * 2^32 + low with each part an exact float truncated toward
        zero (each is a subset of v's mantissa bits), then summed in the ring.
        """
        high = torch.trunc(v / 2.0**64)
        rest = v - high * 2.0**64
        mid = torch.trunc(rest / 2.0**32)
        low = rest - mid * 2.0**32
        out = self.from_int64(low.to(INT64))
        self.add_(out, self.lshift(self.from_int64(mid.to(INT64)), 32))
        out[1] += high.to(INT64)
        return out

    def to_float(self, a, frac_bits: int):
        """Decode the signed value a / 2^frac_bits to float64 (floor-exact as in Ring64)."""
        whole = self.rshift_arith(a, frac_bits)
        # balanced split whole = top * 2^64 + low (low signed): top is 0 whenever the value
        # fits int64, so no float cancellation can occur there
        top = whole[1] + (whole[0] < 0)
        value = top.to(torch.float64) * 2.0**64 + whole[0].to(torch.float64)
        if frac_bits:
            mask = (1 << frac_bits) - 1 if frac_bits < 64 else -1
            frac = a[0] & mask if frac_bits < 63 else a[0]
            fracf = frac.to(torch.float64)
            if frac_bits >= 63:
                fracf = torch.where(frac < 0, fracf + 2.0**64, fracf)
            value = value + fracf / 2.0**frac_bits
        return value


def _matmul64(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.shape[-1] <= 16 or a.dim() == 1 or b.dim() == 1:
        return torch.matmul(a, b)
    return _matmul_limbs(a, b, 64)[0]


def _matmul_limbs(a: torch.Tensor, b: torch.Tensor, out_bits: int):
    """Exact integer matmul of int64 bit patterns (read as unsigned) via float64 BLAS.

    Each operand is cut into L-bit limbs so that a limb product summed over the inner
    dimension k stays below 2^53 and float64 matmul is exact. Returns (low 64 bits,
    bits 64..127) of the product; the second is None when out_bits == 64.
    Why: torch has no BLAS for int64; a 1000x1000 int64 matmul takes ~4.5 s here, while the
    limb products run at float64 BLAS speed.
    """
    k = a.shape[-1]
    limb = (_FLOAT_EXACT_BITS - max(1, math.ceil(math.log2(max(k, 2))))) // 2
    if limb < 8:
        raise ValueError(f"inner dimension {k} too large for an exact limb matmul")
    n_limbs = math.ceil(64 / limb)
    mask = (1 << limb) - 1

    def limbs(x):
        return [_lrs(x, limb * i).bitwise_and_(mask).to(torch.float64) for i in range(n_limbs)]

    a_limbs, b_limbs = limbs(a), limbs(b)
    low = None
    high = None
    for t in range(2 * n_limbs - 1):
        shift = limb * t
        if shift >= out_bits:
            break
        acc = None
        for i in range(max(0, t - n_limbs + 1), min(t, n_limbs - 1) + 1):
            p = torch.matmul(a_limbs[i], b_limbs[t - i])
            acc = p if acc is None else acc.add_(p)
        column = acc.to(INT64)  # < n_limbs * 2^53 <= 2^56: exact
        if low is None:
            low = torch.zeros_like(column)
            high = torch.zeros_like(column)
        if shift < 64:
            part_low = column << shift
            part_high = _lrs(column, 64 - shift) if shift else torch.zeros_like(column)
        else:
            part_low = torch.zeros_like(column)
            part_high = column << (shift - 64)
        high += part_high
        low += part_low
        high += _ult(low, part_low)
    return low, (high if out_bits > 64 else None)


RING64 = Ring64()
RING128 = Ring128()


def ring_for(bits: int) -> Ring:
    """The ring object for 64 or 128 bits."""
    if bits == 64:
        return RING64
    if bits == 128:
        return RING128
    raise ValueError(f"ring must be 64 or 128 bits, not {bits}")
