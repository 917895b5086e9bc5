"""The rings Z_2^64 and Z_2^128 as kernels on torch.int64 tensors.

A ring element tensor ("ring tensor") of logical shape S is
- for Z_2^64: an int64 tensor of shape S (two's complement wraparound is the ring);
- for Z_2^128: an int64 tensor of shape (2, *S): lane 0 holds the low 64 bits, lane 1 the
  high 64 bits; the element is lane1 * 2^64 + unsigned(lane0).

Every kernel is exact modulo 2^k. Nothing here knows about secrets or parties: these are the
arithmetic primitives the share types and protocols are built from. Kernels allocate as little
as they can; on this class of machine an int64 op on 1e6 elements costs ~1 ms in place but
~5 ms when it allocates.

Matmul: torch has no BLAS for int64 (a 1000x1000 int64 matmul takes ~4.5 s here), so large
inner dimensions go through float64 BLAS on signed limbs (``_matmul_blas``), and small ones
(the n x d design-matrix shapes) through a direct C kernel.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Sequence

import torch

try:  # optional C kernels (setup.py builds them; identical results, ~10x faster on ring128)
    from smpc import _ringkernels as _C  # noqa: N812 - the usual name for a C extension
except ImportError as _missing:  # exercised on machines without a compiler (tests/test_packaging.py)
    _C = None
    # said once, at import: a silent fallback would show up only as a 10x slower job
    warnings.warn(
        f"smpc: the C ring kernels are not built ({_missing}); using the pure-torch kernels, which give "
        "the same results about 10x slower on ring128. Reinstall smpc where a C compiler (gcc) is "
        "available to build them.",
        RuntimeWarning,
        stacklevel=2,
    )

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


def broadcast_shape(*shapes: Sequence[int]) -> torch.Size:
    """The shape several shapes broadcast to (numpy rules). Pure Python: the first call of
    ``torch.broadcast_shapes`` imports sympy (~0.7 s per process, on a party's first op)."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(ndim):
        sizes = {int(s[len(s) - ndim + i]) for s in shapes if len(s) - ndim + i >= 0} - {1}
        if len(sizes) > 1:
            raise ValueError(f"shapes {', '.join(str(tuple(s)) for s in shapes)} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return torch.Size(out)


def use_c_kernels(enabled: bool) -> bool:
    """Switch the C kernels on or off (tests compare both paths); returns the previous state."""
    global _use_c
    previous = _use_c
    _use_c = enabled and _C is not None
    return previous


def c_kernels_available() -> bool:
    return _C is not None


def c_kernels():
    """The C kernel module while it is built and switched on (``use_c_kernels``), else None:
    for protocol modules with their own fused kernels and a torch path beside them."""
    return _C if _use_c else None


def c_kernels_apply(*tensors: torch.Tensor) -> bool:
    """True when the C kernels are on and apply to these tensors: same shape, contiguous, int64,
    non-empty."""
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

    def add_random_(self, z: torch.Tensor, prg, sign: int = 1) -> torch.Tensor:
        """z += random(prg, shape(z)) in place (sign=-1: z -= ...), drawing exactly the stream
        ``random`` would, without materialising it: the C path adds 256 KiB keystream pieces
        as they come out of AES (one pass over z instead of allocate + write + add)."""
        if c_kernels_apply(z):
            n = self.numel(z)
            for start, count, words in prg.chunks(self.lanes * n, _scratch(0)):
                _C.add_stream(z.data_ptr(), n, self.lanes, words.data_ptr(), start, count, sign)
            return z
        r = self.random(prg, self.shape(z))
        return self.add_(z, r) if sign > 0 else self.sub_(z, r)

    def add_zero_sharing_(self, z: torch.Tensor, prg_plus, prg_minus) -> torch.Tensor:
        """z += random(prg_plus) - random(prg_minus) in place: a party's term of a 3-out-of-3
        sharing of zero, the two streams interleaved piece by piece so z is read once."""
        if c_kernels_apply(z):
            n = self.numel(z)
            total = self.lanes * n
            plus = prg_plus.chunks(total, _scratch(0))
            minus = prg_minus.chunks(total, _scratch(1))
            for (start, count, w_plus), (_, _, w_minus) in zip(plus, minus, strict=True):
                _C.add_stream(z.data_ptr(), n, self.lanes, w_plus.data_ptr(), start, count, 1)
                _C.add_stream(z.data_ptr(), n, self.lanes, w_minus.data_ptr(), start, count, -1)
            return z
        self.add_(z, self.random(prg_plus, self.shape(z)))
        return self.sub_(z, self.random(prg_minus, self.shape(z)))

    def rshift_logical_(self, a: torch.Tensor, n: int) -> torch.Tensor:
        """a >>> n in place (one C pass, no allocation)."""
        if c_kernels_apply(a) and n < self.bits:
            return self._shift_c(a, n, 1, out=a)
        return a.copy_(self.rshift_logical(a, n))

    def truncate_negated_(self, a: torch.Tensor, n: int) -> torch.Tensor:
        """-((-a) >>> n) in place (one C pass, no allocation)."""
        if c_kernels_apply(a) and n < self.bits:
            return self._shift_c(a, n, 3, out=a)
        return a.copy_(self.truncate_negated(a, n))

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

    # add / sub / mul stay torch ops: torch runs them on all cores (a C loop here would be
    # single-threaded); with more threads than cores, as in simulate (three party threads on
    # two cores), torch's intra-op barrier can stall, see docs/performance.md
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

    def mul_int(self, a: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
        """Multiply by public integers (Python int mod 2^64, or an int64 tensor)."""
        if isinstance(k, int):
            k = _wrap64(k)
        return a * k

    def matmul(self, a, b):
        if _use_c and a.dim() and b.dim():
            return _matmul_c(self, a, b)
        if a.shape[-1] <= 16 or a.dim() == 1 or b.dim() == 1:
            return torch.matmul(a, b)
        return _matmul_limbs(a, b, 64)[0]

    def lshift(self, a, n: int):
        return a << n if n < 64 else torch.zeros_like(a)

    def rshift_arith(self, a, n: int):
        return a >> min(n, 63)

    def _shift_c(self, a, n: int, kind: int, out=None):
        out = torch.empty_like(a) if out is None else out
        _C.shift64(out.data_ptr(), a.data_ptr(), a.numel(), n, kind)
        return out

    def rshift_logical(self, a, n: int):
        if n >= 64:
            return torch.zeros_like(a)
        if c_kernels_apply(a):
            return self._shift_c(a, n, 1)
        return _lrs(a, n)

    def truncate_negated(self, a, n: int):
        """-((-a) >>> n): the second party's half of a probabilistic truncation."""
        if c_kernels_apply(a) and n < 64:
            return self._shift_c(a, n, 3)
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
        if frac_bits > _FLOAT_EXACT_BITS:
            # whole + fraction would cancel for tiny negatives (-1 + (1 - 3 2^-63) -> 0.0):
            # scale the signed value instead (one rounding, then an exact power of two)
            return a.to(torch.float64) * 2.0**-frac_bits
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
        for low, high in zip(lo, hi, strict=True):
            v = ((high & ((1 << 64) - 1)) << 64) | (low & ((1 << 64) - 1))
            if signed and v >= 1 << 127:
                v -= 1 << 128
            out.append(v)
        return out

    def _out(self, a, b):
        return torch.empty((2, *broadcast_shape(a.shape[1:], b.shape[1:])), dtype=INT64)

    def _binary_c(self, kernel, a, b):
        out = torch.empty_like(a)
        kernel(out.data_ptr(), a.data_ptr(), b.data_ptr(), a[0].numel())
        return out

    def rss_product(self, x1, x2, y1, y2):
        if c_kernels_apply(x1, x2, y1, y2):
            out = torch.empty_like(x1)
            _C.rss_product128(
                out.data_ptr(), x1.data_ptr(), x2.data_ptr(), y1.data_ptr(), y2.data_ptr(), x1[0].numel()
            )
            return out
        return super().rss_product(x1, x2, y1, y2)

    def add(self, a, b):
        if c_kernels_apply(a, b):
            return self._binary_c(_C.add128, a, b)
        out = self._out(a, b)
        torch.add(a[0], b[0], out=out[0])
        torch.add(a[1], b[1], out=out[1])
        out[1] += _ult(out[0], b[0])
        return out

    def add_(self, a, b):
        if c_kernels_apply(a, b):
            _C.add128(a.data_ptr(), a.data_ptr(), b.data_ptr(), a[0].numel())
            return a
        a[0] += b[0]
        a[1] += b[1]
        a[1] += _ult(a[0], b[0])
        return a

    def sub(self, a, b):
        if c_kernels_apply(a, b):
            return self._binary_c(_C.sub128, a, b)
        out = self._out(a, b)
        torch.sub(a[0], b[0], out=out[0])
        torch.sub(a[1], b[1], out=out[1])
        out[1] -= _ult(a[0], b[0]).to(INT64)
        return out

    def sub_(self, a, b):
        if c_kernels_apply(a, b):
            _C.sub128(a.data_ptr(), a.data_ptr(), b.data_ptr(), a[0].numel())
            return a
        borrow = _ult(a[0], b[0])
        a[0] -= b[0]
        a[1] -= b[1]
        a[1] -= borrow.to(INT64)
        return a

    def neg(self, a):
        out = torch.empty_like(a)
        if c_kernels_apply(a):
            _C.neg128(out.data_ptr(), a.data_ptr(), a[0].numel())
            return out
        torch.neg(a[0], out=out[0])
        torch.bitwise_not(a[1], out=out[1])
        out[1] += a[0] == 0
        return out

    def mul(self, a, b):
        if c_kernels_apply(a, b):
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
        if _use_c and a.dim() > 1 and b.dim() > 1:
            return _matmul_c(self, a, b)
        low, carry_high = _matmul_limbs(a[0], b[0], 128)
        high = carry_high
        high += _matmul64(a[0], b[1])
        high += _matmul64(a[1], b[0])
        return torch.stack([low, high])

    def _shift_c(self, a, n: int, kind: int, out=None):
        out = torch.empty_like(a) if out is None else out
        _C.shift128(out.data_ptr(), a.data_ptr(), a[0].numel(), n, kind)
        return out

    def truncate_negated(self, a, n: int):
        """-((-a) >>> n): the second party's half of a probabilistic truncation."""
        if c_kernels_apply(a) and n < 128:
            return self._shift_c(a, n, 3)
        return self.neg(self.rshift_logical(self.neg(a), n))

    def lshift(self, a, n: int):
        if c_kernels_apply(a) and n < 128:
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
        if c_kernels_apply(a):
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
        if c_kernels_apply(a) and n < 128:
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
        if dim is None and c_kernels_apply(a):
            low, high = _C.sum128(a.data_ptr(), a[0].numel())
            return torch.tensor([_wrap64(low), _wrap64(high)], dtype=INT64)
        if dim is None:
            count = a[0].numel()
        else:
            dims = tuple(dim) if isinstance(dim, (tuple, list)) else (dim,)
            count = math.prod(a[0].shape[d] for d in dims)
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
        shape = tuple(shape)
        extra = len(shape) - (a.dim() - 1)
        if extra > 0:  # torch.expand prepends new dims: put them after the lane dim
            a = a.reshape((2,) + (1,) * extra + tuple(a.shape[1:]))
        return a.expand((2, *shape))

    def random(self, prg, shape):
        n = math.prod(shape)
        return prg.int64(2 * n).reshape((2, *tuple(shape)))

    def from_float_integral(self, v):
        """Embed float64 tensors holding integers with |v| < 2^127 (exact).

        v = high * 2^64 + mid * 2^32 + low with each part an exact float truncated toward
        zero (each is a subset of v's mantissa bits), then summed in the ring.
        """
        if v.numel():
            low, high = torch.aminmax(v)
            if -(2.0**63) <= float(low) and float(high) < 2.0**63:  # the common case: one conversion
                return self.from_int64(v.to(INT64))
        high = torch.trunc(v / 2.0**64)
        rest = v - high * 2.0**64
        mid = torch.trunc(rest / 2.0**32)
        low = rest - mid * 2.0**32
        out = self.from_int64(low.to(INT64))
        self.add_(out, self.lshift(self.from_int64(mid.to(INT64)), 32))
        out[1] += high.to(INT64)
        return out

    def to_float(self, a, frac_bits: int):
        """Decode the signed value a / 2^frac_bits to float64 (floor-exact as in Ring64).

        Beyond 53 fractional bits whole + fraction could cancel (a tiny negative would lose
        its sign) or count bit 63 twice, so there the signed 128-bit value is converted with
        the same balanced split and scaled by 2^-frac_bits: relative error <= 2^-52.
        """
        if frac_bits > _FLOAT_EXACT_BITS:
            top = a[1] + (a[0] < 0)  # a = top * 2^64 + a[0] read as signed
            value = top.to(torch.float64) * 2.0**64 + a[0].to(torch.float64)
            return value * 2.0**-frac_bits
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
        column = None
        for i in range(max(0, t - n_limbs + 1), min(t, n_limbs - 1) + 1):
            # each limb product is exact (< 2^53); their sum may not be, so add in int64
            p = torch.matmul(a_limbs[i], b_limbs[t - i]).to(INT64)
            column = p if column is None else column.add_(p)  # < n_limbs * 2^53 <= 2^56
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


# ----- C-path matmul ------------------------------------------------------------------------
# 2-D products with any of n, k, m up to this size use the direct C kernel (one multiply-add
# per term, ~0.75 ns on Z_2^64 and ~2.4 ns on Z_2^128 here); the others the float64-BLAS limb
# decomposition (~6 and ~21 BLAS multiply-adds per term, but at BLAS speed). Measured single
# threaded on the 2-core dev machine: BLAS wins only when all three dimensions are large
# (256^3: 7.7 vs 12.6 ms on Z_2^64, 33 vs 40 ms on Z_2^128); with a skinny dimension the
# limb conversions of the large operands dominate (1e5x8 @ 8x8: direct 15 ms, BLAS 280 ms
# on Z_2^128; 1000x1000 @ 1000x64: 123 vs 230 ms).
_DIRECT_MAX_DIM = 64
# The BLAS path splits the inner dimension into chunks of at most this size: the limb width
# depends on the chunk (each product must stay below 2^53), so shorter chunks allow wider
# limbs and fewer limb products (Z_2^128: 21 at any chunk <= 2048 instead of 36 at k = 1e6).
_BLAS_CHUNK_K = 2048
_FLOAT_EXACT = 1 << _FLOAT_EXACT_BITS


def _matmul_shape(sa, sb) -> torch.Size:
    """torch.matmul's result shape (and its error for mismatched operands)."""
    return torch.matmul(torch.empty(sa, device="meta"), torch.empty(sb, device="meta")).shape


def _matmul_c(ring: Ring, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b mod 2^k with torch.matmul semantics (1-D operands, broadcast batch dimensions)."""
    lanes = ring.lanes
    sa, sb = ring.shape(a), ring.shape(b)
    out_shape = _matmul_shape(sa, sb)
    # 1-D operands become a row / a column, squeezed away again at the end (torch's rule)
    if len(sa) == 1:
        a = ring.reshape(a, (1, sa[0]))
    if len(sb) == 1:
        b = ring.reshape(b, (sb[0], 1))
    sa, sb = ring.shape(a), ring.shape(b)
    a, b = a.contiguous(), b.contiguous()
    n, k, m = sa[-2], sa[-1], sb[-1]
    if len(sa) == 2 and len(sb) == 2 and min(n, k, m) <= _DIRECT_MAX_DIM:
        out = torch.empty((2, n, m) if lanes == 2 else (n, m), dtype=INT64)
        kernel = _C.matmul128 if lanes == 2 else _C.matmul64
        kernel(out.data_ptr(), a.data_ptr(), b.data_ptr(), n, k, m)
    else:
        out = _matmul_blas(ring, a, b)
    return ring.reshape(out, out_shape)


def _limb_layout(k: int, bits: int) -> tuple[int, int, int]:
    """(limb width L, limb count, inner-dimension chunk) for the signed-limb BLAS matmul.

    Signed limbs lie in [-2^(L-1), 2^(L-1)), so one limb product summed over a chunk of kc
    terms is below kc * 2^(2L-2), which must not exceed 2^53 for float64 to be exact. Then L
    is lowered as far as the same limb count allows, leaving room to sum several products
    in one float64 accumulator.
    """
    kc = max(1, min(k, _BLAS_CHUNK_K))
    width = 1
    while width < 26 and kc << (2 * width) <= _FLOAT_EXACT:  # kc * 2^(2(width+1)-2) <= 2^53
        width += 1
    count = -(-bits // width)
    return -(-bits // count), count, kc


def _to_limbs(x: torch.Tensor, ring: Ring, width: int, count: int) -> torch.Tensor:
    """float64 planes (count, *shape) of x's signed limbs (C kernel ``to_limbs``)."""
    out = torch.empty((count, *ring.shape(x)), dtype=torch.float64)
    _C.to_limbs(out.data_ptr(), x.data_ptr(), ring.numel(x), ring.lanes, width, count)
    return out


def _matmul_blas(ring: Ring, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact a @ b mod 2^k (contiguous, at least 2-D) from float64 BLAS on signed limbs.

    a = sum_i A_i 2^(L i), b = sum_j B_j 2^(L j) (mod 2^k) with |A_i|, |B_j| <= 2^(L-1);
    a @ b = sum over i + j < k / L of (A_i @ B_j) 2^(L (i + j)) mod 2^k. Every BLAS result is
    an exact integer (below 2^53), products of equal shift share a float64 accumulator as
    long as their sum stays below 2^53, and each accumulator is added into the int64 lanes
    exactly (C kernel ``add_limb_product``). Z_2^64 at k = 1000 takes 6 BLAS calls (unsigned
    22-bit limbs would need 10), Z_2^128 takes 21 (the former path: 36).
    """
    bits, lanes = ring.bits, ring.lanes
    k = ring.shape(a)[-1]
    width, count, kc = _limb_layout(k, bits)
    per_sum = max(1, _FLOAT_EXACT // (kc << (2 * width - 2)))  # products one accumulator holds
    a_limbs, b_limbs = _to_limbs(a, ring, width, count), _to_limbs(b, ring, width, count)
    out = None
    two_d = a_limbs.dim() == 3 and b_limbs.dim() == 3
    for t in range(count):
        shift = width * t
        if shift >= bits:
            break
        pairs = [(i, t - i) for i in range(t + 1) if i < count and t - i < count]
        for c0 in range(0, max(k, 1), kc):
            w = min(kc, k - c0)
            acc, held = None, 0
            for i, j in pairs:
                ai = a_limbs[i].narrow(-1, c0, w)
                bj = b_limbs[j].narrow(-2, c0, w)
                if acc is None:
                    acc = torch.matmul(ai, bj)
                elif two_d:
                    acc.addmm_(ai, bj)  # BLAS adds into acc: exact while the sum is < 2^53
                else:
                    acc += torch.matmul(ai, bj)
                held += 1
                if held == per_sum:
                    out = _add_limb_product(out, acc, lanes, shift)
                    acc, held = None, 0
            if acc is not None:
                out = _add_limb_product(out, acc, lanes, shift)
    return out  # t = 0 always has the product A_0 @ B_0, so out is set


def _add_limb_product(out: torch.Tensor | None, acc: torch.Tensor, lanes: int, shift: int) -> torch.Tensor:
    acc = acc.contiguous()
    if out is None:
        out = torch.zeros((2, *acc.shape) if lanes == 2 else acc.shape, dtype=INT64)
    _C.add_limb_product(out.data_ptr(), acc.data_ptr(), acc.numel(), lanes, shift)
    return out


_tls = threading.local()


def _scratch(i: int) -> torch.Tensor:
    """Per-thread keystream buffers for ``add_random_`` (parties are threads in simulate)."""
    bufs = getattr(_tls, "bufs", None)
    if bufs is None:
        from smpc.prg import CHUNK_WORDS

        bufs = _tls.bufs = [torch.empty(CHUNK_WORDS + 2, dtype=INT64) for _ in range(2)]
    return bufs[i]


RING64 = Ring64()
RING128 = Ring128()


def ring_for(bits: int) -> Ring:
    """The ring object for 64 or 128 bits."""
    if bits == 64:
        return RING64
    if bits == 128:
        return RING128
    raise ValueError(f"ring must be 64 or 128 bits, not {bits}")
