"""Fixed-point encoding of real numbers into Z_2^k, bounds, and the capacity rules.

A value v is stored as round(v * 2^f) in two's complement, f = ``frac_bits``. With f = 0 the
value is an integer (counts, cents) and arithmetic on it is exact.

Every secret carries a public ``bound`` (the largest |v| it may hold, declared by the owner or
propagated through operations). An operation whose worst-case result would not fit the ring,
or whose probabilistic truncation could fail with probability above 2^-SECURITY_BITS per
element, raises ``RangeError`` before anything is sent. Nothing wraps silently.

Per-ring defaults (``DEFAULTS``):

| ring    | frac_bits | default input bound | resolution | largest safe fixed-point product |
|---------|-----------|---------------------|------------|----------------------------------|
| ring64  | 16        | 2^31 (~2.1e9)       | 1.5e-5     | none at 16 bits (use integers)   |
| ring128 | 20        | 2^40 (~1.1e12)      | 9.5e-7     | 2^47 (~1.4e14)                   |

Error: encoding rounds to nearest, |decode(encode(v)) - v| <= 2^-(f+1); decoding is exact
(the floor of the signed value plus its fraction, so negative values are never off by one).

Exact decimals (money): ``encode_decimal`` stores v as the integer v * 10^d for a declared
number of decimals d (cents for 2) and refuses a value with more decimals, never rounds it.
A float is read as the decimal it prints as: it has at most d decimals when it is the float
nearest some k / 10^d, i.e. when k / 10^d, correctly rounded, gives the float back (exact for
|k| < 2^53, which ``check_decimal_scale`` makes every bound satisfy). Python ``Decimal``,
``Fraction``, ``int`` and decimal strings are read exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

import numpy as np
import torch

from smpc.errors import InputError, RangeError
from smpc.ring import Ring, ring_for

SECURITY_BITS = 40
"""Probabilistic truncation fails with probability <= 2^-SECURITY_BITS per element."""


@dataclass(frozen=True)
class RingDefaults:
    frac_bits: int
    bound: float


DEFAULTS = {64: RingDefaults(frac_bits=16, bound=2.0**31), 128: RingDefaults(frac_bits=20, bound=2.0**40)}


def max_encoded(ring: Ring) -> float:
    """Largest |encoded integer| a ring holds as a signed value."""
    return 2.0 ** (ring.bits - 1) - 1


def truncatable_encoded(ring: Ring) -> float:
    """Largest |encoded integer| that probabilistic truncation handles at 2^-SECURITY_BITS.

    The SecureML/ABY3 local truncation of x = A + B (mod 2^k) fails only when the random
    share A lands within |x| of the wrap point: probability <= 2^(l+1-k) for |x| < 2^l.
    """
    return 2.0 ** (ring.bits - 1 - SECURITY_BITS)


MAX_DECIMALS = 6
"""Most decimals an exact decimal value may declare (micro-units)."""
EXACT_UNITS = 2**53
"""Decimal units below this convert between float64 and integers exactly."""

SPARE_BYTES = 1
"""Bytes a narrow reveal opens beyond what the bound needs, so that a value beyond its bound
(a bound declared wrongly) is refused by ``check_open`` instead of being opened wrapped."""


def open_width(ring: Ring, bound: float, frac_bits: int) -> int:
    """Bytes per element that a reveal to a compute party opens for a value of public
    magnitude ``bound`` at ``frac_bits``: the fewest bytes whose signed range holds every
    encoded value with two units to spare (a probabilistic truncation may round up by one),
    plus ``SPARE_BYTES``; the ring element where that is not fewer than 8 bytes on ring128,
    or than a ring element. Shares reduce mod 2^(8w) like the value, so the low w bytes of
    each share sum to the value mod 2^(8w): the bound makes it unique, and the spare byte
    shows a value up to 2^8 times beyond the bound's range as what it is."""
    encoded = float(bound) * 2.0**frac_bits
    for needed in range(1, 8):
        if encoded + 2.0 < 2.0 ** (8 * needed - 1):
            width = needed + SPARE_BYTES
            return width if width < ring.bits // 8 and width <= 8 else ring.bits // 8
    return ring.bits // 8


def open_limit(bound: float, frac_bits: int) -> int:
    """The largest |encoded integer| an opened value of ``bound`` at ``frac_bits`` may be:
    the bound's encoding and the two units a probabilistic truncation may add."""
    return math.floor(float(bound) * 2.0**frac_bits) + 2


def check_open(ring: Ring, opened: torch.Tensor, bound: float, frac_bits: int, what: str) -> None:
    """RangeError naming ``what`` and the first position if an opened ring tensor holds a
    value beyond its public bound: the bound was declared wrongly (or a lower bound of a
    divisor did not hold), and the value is refused, never returned wrapped. Every recipient
    runs the same test on the same value."""
    limit = open_limit(bound, frac_bits)
    low = opened[0] if ring.lanes == 2 else opened
    if limit < 2**63:
        outside = (low > limit) | (low < -limit)
        if ring.lanes == 2:
            outside |= opened[1] != (low >> 63)  # the high lane is the low lane's sign
    else:  # only ring128 gets here: whole elements; exact on the few elements float cannot decide
        approx = ring.to_float(opened, 0).abs()
        outside = approx > float(limit) * (1 + 2.0**-40)
        near = ((approx > float(limit) * (1 - 2.0**-40)) & ~outside).reshape(-1).nonzero().reshape(-1)
        if near.numel():
            flat = opened.reshape(2, -1) if ring.lanes == 2 else opened.reshape(-1)
            exact = ring.to_ints(flat[:, near] if ring.lanes == 2 else flat[near], signed=True)
            mask = outside.reshape(-1)
            for i, v in zip(near.tolist(), exact, strict=True):
                mask[i] = abs(v) > limit
    if bool(outside.any()):
        pos = _position(tuple(low.shape), int(outside.reshape(-1).nonzero()[0]))
        raise RangeError(
            f"{what}: the opened value at position {pos} lies beyond its declared bound {bound:.4g} "
            f"({frac_bits} fractional bits); a bound that does not hold was declared for it (or for a value it "
            "was computed from), and the value is refused rather than returned wrapped"
        )


def check_fits(ring: Ring, bound: float, frac_bits: int, what: str) -> None:
    """RangeError unless values of magnitude ``bound`` fit the ring at ``frac_bits``."""
    # strict: max_encoded is 2^(k-1) in float64, and 2^(k-1) itself wraps to -2^(k-1)
    if not bound * 2.0**frac_bits < 2.0 ** (ring.bits - 1):
        raise RangeError(
            f"{what}: worst case |value| {bound:.4g} does not fit {ring.name} with "
            f"{frac_bits} fractional bits (largest {max_encoded(ring) / 2.0**frac_bits:.4g}); "
            "declare a tighter bound, use fewer fractional bits or the 128-bit ring"
        )


def check_truncatable(ring: Ring, bound: float, frac_bits: int, what: str) -> None:
    """RangeError unless a value of magnitude ``bound`` at ``frac_bits`` can be truncated safely."""
    if not bound * 2.0**frac_bits < truncatable_encoded(ring):
        limit = truncatable_encoded(ring) / 2.0**frac_bits
        raise RangeError(
            f"{what}: worst case |value| {bound:.4g} at {frac_bits} fractional bits exceeds "
            f"{ring.name}'s safe truncation range {limit:.4g} (failure probability would be "
            f"above 2^-{SECURITY_BITS}); declare tighter bounds with share(..., bound=...), "
            "use integer mode (frac_bits=0) or the 128-bit ring"
        )


def as_float64(value, who: str = "input") -> torch.Tensor:
    """Any numeric array-like as a float64 tensor; InputError for anything else."""
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            return value.to(torch.float64)
        return value.detach().to(torch.float64)
    try:
        array = np.asarray(value)
        if array.dtype == object or array.dtype.kind in "USV":
            array = array.astype(np.float64)
        return torch.as_tensor(array.astype(np.float64))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{who}: values are not numeric ({exc})") from None


def _position(shape, flat_index: int):
    if len(shape) <= 1:
        return flat_index
    return tuple(int(i) for i in np.unravel_index(flat_index, tuple(shape)))


def encode(value, ring: Ring, frac_bits: int, bound: float, who: str = "input") -> torch.Tensor:
    """Encode a numeric array as ring elements, refusing NaN, inf, non-integers in integer mode
    and values beyond ``bound``. The message names the first offending position only."""
    check_fits(ring, bound, frac_bits, who)
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.dtype == object):
        exact = _exact_integers(value, ring, frac_bits, bound, who)
        if exact is not None:
            return exact
    _refuse_short_floats(value, who)
    integral_input = isinstance(value, torch.Tensor) and not value.is_floating_point()
    if not integral_input and isinstance(value, np.ndarray) and value.dtype.kind in "iub":
        if value.dtype.kind == "u" and value.size and int(value.max()) > np.iinfo(np.int64).max:
            return _exact_integers(value.astype(object), ring, frac_bits, bound, who)  # no int64 wrap
        integral_input = True
        value = torch.as_tensor(value.astype(np.int64))
    if integral_input and value.dtype != torch.bool:
        ints = value.to(torch.int64)
        # compare as integers: `ints.abs() > bound` promotes to float32 (2^31 + 1 passes a bound
        # of 2^31) and abs(-2^63) overflows to -2^63
        limit = math.floor(bound)
        too_big = (ints > limit) | (ints < -limit) if limit < 2**63 else torch.zeros_like(ints, dtype=torch.bool)
        if bool(too_big.any()):
            pos = _position(ints.shape, int(too_big.reshape(-1).nonzero()[0]))
            raise RangeError(f"{who}: value at position {pos} exceeds the declared bound {bound:.4g}")
        return ring.lshift(ring.from_int64(ints), frac_bits)
    x = as_float64(value, who)
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        flat = int((~finite).reshape(-1).nonzero()[0])
        kind = "NaN" if math.isnan(float(x.reshape(-1)[flat])) else "infinite"
        raise InputError(f"{who}: value at position {_position(x.shape, flat)} is {kind}")
    over = x.abs() > bound
    if bool(over.any()):
        flat = int(over.reshape(-1).nonzero()[0])
        raise RangeError(
            f"{who}: value at position {_position(x.shape, flat)} exceeds the declared bound "
            f"{bound:.4g}"
        )
    scaled = x * 2.0**frac_bits
    rounded = torch.round(scaled)
    if frac_bits == 0 and not bool((rounded == x).all()):
        flat = int((rounded != x).reshape(-1).nonzero()[0])
        raise InputError(
            f"{who}: value at position {_position(x.shape, flat)} is not a whole number; "
            "integer mode (frac_bits=0) holds whole numbers such as counts or cents"
        )
    return ring.from_float_integral(rounded)


_SHORT_FLOATS = (torch.float16, torch.bfloat16, torch.float32)


def _refuse_short_floats(value, who: str) -> None:
    """Refuse float16/bfloat16/float32 inputs. Their rounding happened before smpc saw them
    (float32 keeps ~7 significant digits: a balance of 1234567.89 arrives as 1234567.875),
    so sharing them exactly would still be silently wrong; and ``torch.tensor([...])`` makes
    float32 by default, which is how such values usually arrive."""
    if isinstance(value, torch.Tensor):
        dtype = value.dtype if value.dtype in _SHORT_FLOATS else None
    elif isinstance(value, (np.ndarray, np.generic)) and value.dtype in (np.float16, np.float32):
        dtype = value.dtype
    else:
        return
    if dtype is not None:
        raise InputError(
            f"{who}: values are {str(dtype).removeprefix('torch.')}, which keeps too few digits for exact "
            "amounts (1234567.89 becomes 1234567.875 in float32); pass float64 (tensor.double(), "
            "torch.tensor(..., dtype=torch.float64), numpy float64) or integers"
        )


def _exact_integers(value, ring: Ring, frac_bits: int, bound: float, who: str) -> torch.Tensor | None:
    """Python integers of any size (lists or object arrays), embedded exactly; None if the
    values are not all integers (the float path handles them)."""
    array = np.asarray(value, dtype=object)
    flat = array.reshape(-1).tolist()
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in flat):
        return None
    for i, v in enumerate(flat):
        if abs(int(v)) > bound:
            pos = _position(array.shape, i)
            raise RangeError(f"{who}: value at position {pos} exceeds the declared bound {bound:.4g}")
    return ring.lshift(ring.from_ints([int(v) for v in flat], array.shape), frac_bits)


# ----- exact decimals ---------------------------------------------------------------------
def check_decimal_scale(decimals: int, bound: float, who: str) -> None:
    """The public scale of exact decimals: 0..MAX_DECIMALS decimals, and a bound whose units stay
    below 2^53 so that every value converts to an integer exactly (beyond, float64 drops cents
    without a word)."""
    if not 0 <= decimals <= MAX_DECIMALS:
        raise InputError(f"{who}: decimals must be in 0..{MAX_DECIMALS}, got {decimals}")
    if not 0 < bound * 10.0**decimals < EXACT_UNITS:
        raise RangeError(
            f"{who}: a bound of {bound:g} at {decimals} decimals is {bound * 10.0**decimals:.4g} units; it must be "
            f"positive and below 2^53 ({EXACT_UNITS:.4g}) so values convert exactly: declare a tighter bound or "
            "fewer decimals"
        )


def decimal_units(values: np.ndarray, decimals: int) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values as integers of 10^-decimals, where a value has more decimals than that).
    See the module docstring for why the round trip decides it."""
    scale = 10.0**decimals
    units = np.round(values * scale)
    return units, units / scale != values


def _exact_decimal(v) -> Fraction | None:
    """An exactly given number (int, Fraction, Decimal, or a decimal string) as a Fraction;
    None for floats and anything else."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, np.integer, Fraction)):
        return Fraction(int(v)) if isinstance(v, np.integer) else Fraction(v)
    if isinstance(v, Decimal):
        return Fraction(v) if v.is_finite() else None
    if isinstance(v, str):
        try:
            d = Decimal(v.strip())
        except InvalidOperation:
            return None
        return Fraction(d) if d.is_finite() else None
    return None


def encode_decimal(value, ring: Ring, decimals: int, bound: float, who: str = "input") -> torch.Tensor:
    """Encode values as the exact integers v * 10^decimals, refusing NaN, infinity, values beyond
    ``bound`` (RangeError) and values with more decimals (InputError); messages name the first
    offending position."""
    check_decimal_scale(decimals, bound, who)
    scale = 10**decimals
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.dtype == object):
        array = np.asarray(value, dtype=object)
        flat = array.reshape(-1).tolist()
        exact = [_exact_decimal(v) for v in flat]
        if all(x is not None for x in exact):
            units = []
            for i, x in enumerate(exact):
                if abs(x) > bound:
                    raise RangeError(f"{who}: value at position {_position(array.shape, i)} exceeds the declared "
                                     f"bound {bound:.4g}")
                if (x * scale).denominator != 1:
                    raise InputError(f"{who}: value at position {_position(array.shape, i)} has more than "
                                     f"{decimals} decimal places (declare more decimals)")
                units.append(int(x * scale))
            return ring.from_ints(units, array.shape)
    _refuse_short_floats(value, who)
    x = as_float64(value, who).numpy()
    finite = np.isfinite(x)
    if not finite.all():
        flat = int(np.flatnonzero(~finite)[0])
        kind = "NaN" if math.isnan(float(x.reshape(-1)[flat])) else "infinite"
        raise InputError(f"{who}: value at position {_position(x.shape, flat)} is {kind}")
    over = np.abs(x) > bound
    if over.any():
        raise RangeError(f"{who}: value at position {_position(x.shape, int(np.flatnonzero(over)[0]))} exceeds the "
                         f"declared bound {bound:.4g}")
    units, over_precise = decimal_units(x, decimals)
    if over_precise.any():
        raise InputError(f"{who}: value at position {_position(x.shape, int(np.flatnonzero(over_precise)[0]))} has "
                         f"more than {decimals} decimal places (declare more decimals)")
    return ring.from_int64(torch.as_tensor(units.astype(np.int64)))


def public_decimal(value: float) -> Fraction:
    """A public float read as the decimal it prints as (0.1 is one tenth, not the binary
    fraction nearest it): how a public operand of an exact decimal secret is taken."""
    return Fraction(Decimal(repr(float(value))))


def decimals_of(values) -> int | None:
    """The fewest decimals (0..MAX_DECIMALS) that hold every public value exactly, read as
    ``public_decimal``; None when more are needed."""
    for d in range(MAX_DECIMALS + 1):
        if all((public_decimal(v) * 10**d).denominator == 1 for v in values):
            return d
    return None


def encode_public(value, ring: Ring, frac_bits: int, who: str = "public constant") -> torch.Tensor:
    """Encode a public constant (no secret bound applies; it must still fit the ring)."""
    x = as_float64(value, who)
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{who}: NaN or infinite public constant")
    return encode(x, ring, frac_bits, float(x.abs().max()) if x.numel() else 0.0, who)


def decode(a: torch.Tensor, ring: Ring, frac_bits: int, fits_int64: bool = False) -> torch.Tensor:
    """Ring elements to float64 (floor-exact, see module docstring). ``fits_int64``: every
    value is known to fit 64 bits signed, so a ring128 tensor decodes from its low lane alone
    (the same floor-exact result, a third of the work)."""
    if fits_int64 and ring.lanes == 2:
        return ring_for(64).to_float(a[0], frac_bits)
    return ring.to_float(a, frac_bits)
