"""``SecretTensor``: the value type developers program with.

A secret carries this party's replicated shares plus public metadata every party agrees on:
``frac_bits`` (fixed-point precision; 0 = exact integer), ``decimals`` (an exact decimal in
integer mode: the integer counts units of 10^-decimals, cents for 2) and ``bound`` (largest
possible |value|; for an exact decimal, in those units). Operators check the worst case
against the ring before any message is sent and raise ``RangeError`` instead of wrapping.

On ranks that are not compute parties (input/result parties) a secret is "hollow": it has
metadata but no shares, operations only update the metadata, and ``reveal`` delivers the
value if the rank is a recipient.
"""

from __future__ import annotations

import math
import numbers
from decimal import Decimal
from fractions import Fraction

import numpy as np
import torch

from smpc.errors import InputError, RangeError, SmpcError
from smpc.fixedpoint import (
    MAX_DECIMALS,
    as_float64,
    check_fits,
    check_open,
    check_truncatable,
    decimals_of,
    decode,
    encode,
    encode_decimal,
    encode_public,
    open_width,
    public_decimal,
    truncatable_encoded,
)
from smpc.protocols import arithmetic, compare, division, functions
from smpc.ring import broadcast_shape
from smpc.sharing import ArithmeticShares

_INT_LIMIT = 2.0**62


def _public_tensor(value) -> torch.Tensor:
    return as_float64(value, "public operand")


def _is_integral(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all()) and bool((t == torch.round(t)).all()) and (
        t.numel() == 0 or float(t.abs().max()) < _INT_LIMIT
    )


class SecretTensor:
    """A secret-shared tensor. Supports ``+ - *`` (secret or public), ``@``, ``sum``,
    ``mean``, ``dot``, ``square``, indexing and reshaping, and ``reveal``.

    Party 0's and party 1's values, added, compared and multiplied on shares; only the results
    open. ``smpc.simulate`` runs every party's copy of ``job`` in this process and returns
    each party's result (here party 0's)::

        >>> import smpc
        >>> def job(ctx, x=None, y=None):
        ...     a = smpc.share(ctx, x, owner=0, bound=1e6)  # every party but the owner passes None
        ...     b = smpc.share(ctx, y, owner=1, bound=1e6)
        ...     products = (a * b).sum().reveal().item()
        ...     return (a + b).reveal().tolist(), (a < b).reveal().tolist(), round(products, 6)
        >>> smpc.simulate(job, inputs={0: {"x": [1.5, -2.0, 7.0]}, 1: {"y": [2.0, 3.0, -4.0]}})[0]
        ([3.5, 1.0, 3.0], [1.0, 1.0, 0.0], -31.0)

    A result that could overflow the ring is refused before any message is sent::

        >>> def cube(ctx, x=None):
        ...     a = smpc.share(ctx, x, owner=0, bound=1e9)
        ...     return (a * a * a).reveal()
        >>> smpc.simulate(cube, inputs={0: {"x": [1.0]}})
        Traceback (most recent call last):
        smpc.errors.RangeError: multiplication: worst case |value| 1e+18 ...
    """

    __array_priority__ = 1000  # make numpy defer to our reflected operators

    def __init__(self, ctx, shares: ArithmeticShares | None, frac_bits: int, bound: float, origin: str | None = None,
                 decimals: int = 0):
        self.ctx = ctx
        self.shares = shares
        self.frac_bits = int(frac_bits)
        self.decimals = int(decimals)
        """Exact decimal places: the shared integer is the value times 10^decimals (and
        ``bound`` is in those units). Only in integer mode (frac_bits 0); sums, products
        (decimals add) and comparisons stay exact, and functions that cannot be exact
        (division by a secret, means, roots, exp, log) first convert with ``to_fixed``."""
        if self.decimals and self.frac_bits:
            raise SmpcError("an exact decimal secret is in integer mode (frac_bits 0)")
        self.bound = float(bound)
        self.origin = origin
        """What the value is or was computed from (a shared column, a re-bounded aggregate),
        for errors; kept through operations on it."""
        self.bound_known = True
        """False on a rank without shares once the bound went through an operation whose
        bound depends on a shape that rank never sees (sums, products of matrices): a
        reveal then cannot test the value against it there."""

    # ----- construction ----------------------------------------------------------------
    @classmethod
    def from_public(cls, ctx, value, frac_bits: int | None = None) -> SecretTensor:
        t = _public_tensor(value)
        f = (0 if _is_integral(t) else ctx.frac_bits) if frac_bits is None else int(frac_bits)
        encoded = encode_public(t, ctx.ring, f)
        bound = float(t.abs().max()) if t.numel() else 0.0
        if not ctx.is_compute:
            return cls(ctx, None, f, bound)
        zero = torch.zeros_like(encoded)
        first = encoded if ctx.rank == 0 else zero
        second = encoded if ctx.rank == 2 else zero.clone()
        return cls(ctx, ArithmeticShares(ctx.ring, first, second), f, bound)

    def _new(self, shares, frac_bits=None, bound=None, *others: SecretTensor) -> SecretTensor:
        """A result with this secret's metadata (``others``: further operands, whose
        ``bound_known`` it also depends on)."""
        out = SecretTensor(
            self.ctx,
            shares,
            self.frac_bits if frac_bits is None else frac_bits,
            self.bound if bound is None else bound,
            self.origin,
            self.decimals if (frac_bits is None or frac_bits == 0) else 0,
        )
        out.bound_known = self.bound_known and all(o.bound_known for o in others)
        return out

    def _shape_blind(self, out: SecretTensor) -> SecretTensor:
        """``out`` with its bound marked unknown where this rank cannot see the shape."""
        if self.shares is None:
            out.bound_known = False
        return out

    # ----- metadata --------------------------------------------------------------------
    @property
    def shape(self) -> torch.Size | None:
        return None if self.shares is None else self.shares.shape

    @property
    def ring(self):
        return self.ctx.ring

    def numel(self) -> int:
        return self.shares.numel()

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (
            f"SecretTensor(shape={tuple(self.shape) if self.shape is not None else '?'}, "
            f"{self.ring.name}, frac_bits={self.frac_bits}, "
            + (f"decimals={self.decimals}, bound={self.bound:.4g} units)" if self.decimals
               else f"bound={self.bound:.4g})")
        )

    def __bool__(self):
        raise SmpcError("a secret has no truth value; reveal it, or use it in arithmetic")

    # ----- helpers ---------------------------------------------------------------------
    def _check_same_job(self, other: SecretTensor) -> None:
        if other.ctx is not self.ctx:
            raise SmpcError("secrets from different jobs cannot be combined")

    def rescale(self, frac_bits: int) -> SecretTensor:
        """The same value at more fractional bits (local, exact)."""
        if frac_bits == self.frac_bits:
            return self
        if self.decimals:
            raise SmpcError(f"an exact decimal secret ({self.decimals} decimals) has no fractional bits to change; "
                            "to_fixed() converts it to binary fixed point")
        if frac_bits < self.frac_bits:
            return self.truncate(self.frac_bits - frac_bits)
        check_fits(self.ring, self.bound, frac_bits, "rescale")
        shares = None if self.shares is None else self.shares.lshift(frac_bits - self.frac_bits)
        return self._new(shares, frac_bits=frac_bits)

    def truncate(self, bits: int) -> SecretTensor:
        """Drop ``bits`` fractional bits (1 round). Error: <= 1 unit of the new last place.
        Leakage: probabilistic truncation's rounding correlates with party 0's share (an
        opened result tells party 0 one comparison of the dropped bits with a value it knows;
        ``protocols.arithmetic.reshare_truncated``); so does every fixed-point product."""
        check_truncatable(self.ring, self.bound, self.frac_bits, "truncation")
        shares = None if self.shares is None else arithmetic.truncate(self.ctx, self.shares, bits)
        return self._new(shares, frac_bits=self.frac_bits - bits)

    def _encode_public(self, t: torch.Tensor, frac_bits: int) -> torch.Tensor:
        return encode_public(t, self.ring, frac_bits)

    # ----- exact decimals ----------------------------------------------------------------
    def with_decimals(self, decimals: int) -> SecretTensor:
        """The same exact value at ``decimals`` >= its own (local: times 10^k, exact)."""
        k = int(decimals) - self.decimals
        if k == 0:
            return self
        if k < 0:
            raise SmpcError(f"fewer decimals ({decimals} < {self.decimals}) would round an exact decimal; "
                            "to_fixed() converts it to binary fixed point")
        self._decimal_ready("more decimals")
        bound = self.bound * 10**k
        check_fits(self.ring, bound, 0, "more decimals")
        shares = None if self.shares is None else self.shares.mul_public(self.ring.from_int64(torch.tensor(10**k)))
        out = self._new(shares, bound=bound)
        out.decimals = int(decimals)
        return out

    def to_fixed(self) -> SecretTensor:
        """An exact decimal as binary fixed point at ``ctx.frac_bits`` (1 round: a product by the
        public 10^-decimals, then truncation), for what cannot stay exact: division by a secret,
        means, roots, exp, log. Error: 1 unit of the last place plus a quarter unit. A secret that
        is not decimal is returned as it is."""
        if not self.decimals:
            return self
        units = SecretTensor(self.ctx, self.shares, 0, self.bound, self.origin)
        units.bound_known = self.bound_known
        return units._mul_public(torch.tensor(10.0**-self.decimals, dtype=torch.float64))

    def _decimal_ready(self, what: str) -> SecretTensor:
        if self.frac_bits:
            raise SmpcError(f"{what}: an exact decimal secret and a binary fixed-point secret ({self.frac_bits} "
                            "fractional bits) do not mix; convert the decimal one with to_fixed() first")
        return self

    def _aligned(self, other: SecretTensor, what: str) -> tuple[SecretTensor, SecretTensor]:
        """self and other at the same decimals (the larger), when either is an exact decimal."""
        if not (self.decimals or other.decimals):
            return self, other
        self._decimal_ready(what)
        other._decimal_ready(what)
        d = max(self.decimals, other.decimals)
        return self.with_decimals(d), other.with_decimals(d)

    def _public_units(self, t: torch.Tensor, what: str) -> tuple[SecretTensor, torch.Tensor]:
        """(self at enough decimals for the public ``t``, ``t`` as int64 units of them). A public
        operand is read as the decimal it prints as (``fixedpoint.public_decimal``)."""
        values = t.reshape(-1).tolist()
        need = decimals_of(values)
        if need is None:
            raise InputError(f"{what}: a public operand of an exact decimal secret has more than {MAX_DECIMALS} "
                             "decimal places; to_fixed() converts the secret to binary fixed point")
        x = self.with_decimals(max(need, self.decimals))
        scale = 10**x.decimals
        units = [int(public_decimal(v) * scale) for v in values]
        return x, torch.tensor(units, dtype=torch.int64).reshape(t.shape)

    def _shifted(self, units: torch.Tensor) -> SecretTensor:
        """self minus public integer ``units`` of its decimals (local)."""
        bound = self.bound + (float(units.abs().max()) if units.numel() else 0.0)
        check_fits(self.ring, bound, 0, "comparison")
        shares = None if self.shares is None else self.shares.add_public(self.ctx.rank, self.ring.from_int64(-units))
        return self._new(shares, bound=bound)

    def _compare_decimal(self, other, op: str) -> SecretTensor:
        """``op`` (lt, gt, eq) of an exact decimal with a secret or a public value, exact: for the
        shared integer X and a public c at d decimals, x < c exactly when X < ceil(c 10^d),
        x > c when X > floor(c 10^d), and x == c only where c 10^d is a whole number."""
        if isinstance(other, SecretTensor):
            self._check_same_job(other)
            a, b = self._aligned(other, "comparison")
            if op == "lt":
                return (a - b)._ltz()
            if op == "gt":
                return (b - a)._ltz()
            return (a - b)._eqz()
        self._decimal_ready("comparison")
        t = _public_tensor(other)
        scale = 10**self.decimals
        exact = [public_decimal(v) * scale for v in t.reshape(-1).tolist()]
        pick = math.ceil if op == "lt" else math.floor
        units = torch.tensor([pick(q) for q in exact], dtype=torch.int64).reshape(t.shape)
        if op == "lt":
            return self._shifted(units)._ltz()
        if op == "gt":
            return (-self._shifted(units))._ltz()
        equal = self._shifted(units)._eqz()
        on_grid = torch.tensor([q.denominator == 1 for q in exact], dtype=torch.float64).reshape(t.shape)
        return equal if bool(on_grid.all()) else equal * on_grid

    # ----- linear operations -----------------------------------------------------------
    def __add__(self, other) -> SecretTensor:
        if isinstance(other, SecretTensor) and (self.decimals or other.decimals):
            self._check_same_job(other)
            a, b = self._aligned(other, "addition")
            bound = a.bound + b.bound
            check_fits(self.ring, bound, 0, "addition")
            return a._new(None if a.shares is None else a.shares.add(b.shares), 0, bound, b)
        if self.decimals and not isinstance(other, SecretTensor):
            a, units = self._public_units(_public_tensor(other), "addition")
            bound = a.bound + (float(units.abs().max()) if units.numel() else 0.0)
            check_fits(self.ring, bound, 0, "addition")
            shares = None if a.shares is None else a.shares.add_public(self.ctx.rank, self.ring.from_int64(units))
            return a._new(shares, bound=bound)
        if isinstance(other, SecretTensor):
            self._check_same_job(other)
            f = max(self.frac_bits, other.frac_bits)
            bound = self.bound + other.bound
            check_fits(self.ring, bound, f, "addition")
            a, b = self.rescale(f), other.rescale(f)
            shares = None if a.shares is None else a.shares.add(b.shares)
            return self._new(shares, f, bound, other)
        t = _public_tensor(other)
        f = self.frac_bits if (self.frac_bits or _is_integral(t)) else self.ctx.frac_bits
        a = self.rescale(f)
        bound = self.bound + (float(t.abs().max()) if t.numel() else 0.0)
        check_fits(self.ring, bound, f, "addition")
        if a.shares is None:
            return self._new(None, frac_bits=f, bound=bound)
        shares = a.shares.add_public(self.ctx.rank, self._encode_public(t, f))
        return self._new(shares, frac_bits=f, bound=bound)

    __radd__ = __add__

    def __neg__(self) -> SecretTensor:
        return self._new(None if self.shares is None else self.shares.neg())

    def __sub__(self, other) -> SecretTensor:
        return self + (-other)

    def __rsub__(self, other) -> SecretTensor:
        return (-self) + other

    # ----- multiplication --------------------------------------------------------------
    def __mul__(self, other) -> SecretTensor:
        if isinstance(other, SecretTensor):
            self._check_same_job(other)
            return self._mul_secret(other)
        return self._mul_public(_public_tensor(other))

    __rmul__ = __mul__

    def _product_plan(self, bound: float, f_left: int, f_right: int, what: str, exact: bool = False):
        """(frac bits of the raw product, bits to truncate) after checking the ring. An exact
        product keeps all f_left + f_right fractional bits and is never truncated."""
        raw = f_left + f_right
        trunc = 0 if exact else min(f_left, f_right)
        check_fits(self.ring, bound, raw, what)
        if trunc:
            check_truncatable(self.ring, bound, raw, what)
        return raw, trunc

    def _mul_secret(self, other: SecretTensor) -> SecretTensor:
        if self.decimals or other.decimals:  # integers of units: the product is exact, decimals add
            self._decimal_ready("multiplication")
            other._decimal_ready("multiplication")
        bound = self.bound * other.bound
        raw, trunc = self._product_plan(bound, self.frac_bits, other.frac_bits, "multiplication")
        shares = None
        if self.shares is not None:
            if other is self:
                shares = arithmetic.square(self.ctx, self.shares, trunc)
            else:
                shares = arithmetic.mul(self.ctx, self.shares, other.shares, trunc)
        out = self._new(shares, raw - trunc, bound, other)
        out.decimals = self.decimals + other.decimals
        return out

    def _mul_public(self, t: torch.Tensor) -> SecretTensor:
        if self.decimals and not _is_integral(t):  # c = k / 10^e: times the integer k, decimals + e
            need = decimals_of(t.reshape(-1).tolist())
            if need is None:
                return self.to_fixed()._mul_public(t)
            scale = 10**need
            units = torch.tensor([int(public_decimal(v) * scale) for v in t.reshape(-1).tolist()],
                                 dtype=torch.float64).reshape(t.shape)
            out = self._mul_public(units)
            out.decimals = self.decimals + need
            return out
        cmax = float(t.abs().max()) if t.numel() else 0.0
        bound = self.bound * cmax
        if _is_integral(t):
            check_fits(self.ring, bound, self.frac_bits, "multiplication by a public integer")
            if self.shares is None:
                return self._new(None, bound=bound)
            k = self.ring.from_int64(t.to(torch.int64))
            return self._new(self.shares.mul_public(k), bound=bound)
        f_out = self.frac_bits or self.ctx.frac_bits
        f_c = self._public_precision(bound, f_out)
        # where the cap leaves c too few bits its rounding, times |x|, is the error: refuse when
        # that exceeds both one unit of the result and 1e-9 of its bound (ring64 integers times
        # 0.3 would otherwise become x * 0.25, their mean off by half)
        c_error = float((t - torch.round(t * 2.0**f_c) / 2.0**f_c).abs().max()) if t.numel() else 0.0
        if self.bound * c_error > max(2.0**-f_out, 1e-9 * bound):
            raise RangeError(
                f"multiplication by a public value: with |x| up to {self.bound:.4g} the constant keeps only "
                f"{f_c} fractional bits in {self.ring.name} (error up to {self.bound * c_error:.3g}); "
                "declare a tighter bound, use the 128-bit ring, or reveal an exact sum and divide in float64"
            )
        raw = self.frac_bits + f_c
        # c is encoded to the nearest 2^-f_c: the product may exceed bound * cmax by that much
        bound = self.bound * (cmax + 2.0 ** -(f_c + 1))
        check_fits(self.ring, bound, raw, "multiplication by a public value")
        if self.shares is None:
            return self._new(None, frac_bits=f_out, bound=bound)
        product = self.shares.mul_public(self._encode_public(t, f_c))
        if raw > f_out:
            check_truncatable(self.ring, bound, raw, "multiplication by a public value")
            product = arithmetic.truncate(self.ctx, product, raw - f_out)
        elif raw < f_out:
            product = product.lshift(f_out - raw)
        return self._new(product, frac_bits=f_out, bound=bound)

    def _public_precision(self, bound: float, f_out: int) -> int:
        """Fractional bits for a public non-integer factor c.

        Encoding c costs up to 2^-(f_c+1) absolute error, multiplied by |x|; with
        f_c = f_out + log2(bound_x) + 2 that stays under a quarter unit of the result.
        It is capped so the raw product stays truncatable (fixedpoint.check_truncatable).
        """
        want = f_out + max(0, math.ceil(math.log2(self.bound + 1))) + 2
        limit = math.floor(math.log2(truncatable_encoded(self.ring) / max(bound, 2.0**-60))) - self.frac_bits - 1
        f_c = min(want, limit)
        if f_c < 1:
            check_truncatable(self.ring, bound, self.frac_bits + f_out, "multiplication by a public value")
        return max(f_c, 1)

    def __truediv__(self, other) -> SecretTensor:
        """self / other. A secret divisor: ``div``. A public one c (never 0): self times 1/c,
        as ``_mul_public``. Cost: 1 round, one ring element per element per party (the
        truncation). Error: 1 unit of the result's last place (truncation) plus 1/c's rounding
        times |self|: under a quarter unit where the ring has the bits, and refused
        (RangeError) where it would exceed both 1 unit and 1e-9 of the result's bound."""
        if isinstance(other, SecretTensor):
            return self.div(other)
        t = _public_tensor(other)
        if bool((t == 0).any()):
            raise SmpcError("division of a secret by a public zero")
        return self._mul_public(1.0 / t)

    # ----- division by a secret, roots, exp, log, sigmoid (protocols.division / functions) --
    # Each normalises its argument by its secret bit length first, so accuracy does not depend
    # on magnitude. Results carry more fractional bits than the inputs (division.output_frac_bits:
    # the most that keep them truncatable, 31..52 on ring128 defaults; ``frac_bits=`` to choose);
    # rescale() before further products. See the protocols for rounds, bytes and errors.

    def _broadcast_with(self, other: SecretTensor):
        if self.shares is None or self.shape == other.shape:
            return self.shares, other.shares
        shape = broadcast_shape(self.shape, other.shape)

        def grow(shares):  # leading singleton dimensions first: expand keeps the lane dimension
            ones = (1,) * (len(shape) - len(shares.shape))
            return shares.reshape(ones + tuple(shares.shape)).expand(shape)

        return grow(self.shares), grow(other.shares)

    def div(self, other, *, lower: float | None = None, frac_bits: int | None = None) -> SecretTensor:
        """self / other. For a secret divisor: ``lower`` is a public lower bound on |other|
        (default one unit in its last place), used only for the result's public bound;
        a divisor below it, which cannot be detected without revealing it, still gives the
        right quotient but one beyond that bound, which later range checks trust; a reveal
        refuses it (RangeError) up to 2^8 times the bound's range and could open it wrapped
        beyond that: declare only a true lower bound.
        other == 0 gives 0.
        Cost: 22 rounds (division.divide). Error: 2^-30 relative + 1 unit of the result."""
        if not isinstance(other, SecretTensor):
            return self / other
        self._check_same_job(other)
        if self.decimals or other.decimals:
            return self.to_fixed().div(other.to_fixed(), lower=lower, frac_bits=frac_bits)
        f, bound = division.plan_divide(
            self.ring, self.ctx.frac_bits, self.bound, self.frac_bits, other.bound, other.frac_bits, lower, frac_bits
        )
        shares = None
        if self.shares is not None:
            x, y = self._broadcast_with(other)
            shares = division.divide(self.ctx, x, self.frac_bits, y, other.frac_bits, f)
        return self._new(shares, f, bound, other)

    def __rtruediv__(self, other) -> SecretTensor:
        """public / secret: the public numerator as a (trivially shared) secret, divided."""
        return SecretTensor.from_public(self.ctx, _public_tensor(other)).div(self)

    def reciprocal(self, *, lower: float | None = None, frac_bits: int | None = None) -> SecretTensor:
        """1 / self; ``lower`` as in ``div`` (the public bound is 1 / lower); 1 / 0 gives 0.
        Cost: 22 rounds. Error: 2^-30 relative + 1 unit of the result."""
        if self.decimals:
            return self.to_fixed().reciprocal(lower=lower, frac_bits=frac_bits)
        f, bound = division.plan_reciprocal(self.ring, self.ctx.frac_bits, self.bound, self.frac_bits, lower, frac_bits)
        shares = None if self.shares is None else division.reciprocal(self.ctx, self.shares, self.frac_bits, f)
        return self._new(shares, frac_bits=f, bound=bound)

    def sqrt(self, *, frac_bits: int | None = None) -> SecretTensor:
        """Square root; values <= 0 give 0. Cost: 22 rounds. Error: 1e-8 relative + 1 unit."""
        if self.decimals:
            return self.to_fixed().sqrt(frac_bits=frac_bits)
        f, bound = division.plan_sqrt(self.ring, self.ctx.frac_bits, self.bound, self.frac_bits, frac_bits=frac_bits)
        shares = None if self.shares is None else division.sqrt(self.ctx, self.shares, self.frac_bits, f)
        return self._new(shares, frac_bits=f, bound=bound)

    def rsqrt(self, *, lower: float | None = None, frac_bits: int | None = None) -> SecretTensor:
        """1 / sqrt(self); ``lower`` as in ``div``; values <= 0 give 0.
        Cost: 22 rounds. Error: 1e-7 relative + 1 unit."""
        if self.decimals:
            return self.to_fixed().rsqrt(lower=lower, frac_bits=frac_bits)
        f, bound = division.plan_sqrt(
            self.ring, self.ctx.frac_bits, self.bound, self.frac_bits, inverse=True, lower=lower, frac_bits=frac_bits
        )
        shares = None if self.shares is None else division.rsqrt(self.ctx, self.shares, self.frac_bits, f)
        return self._new(shares, frac_bits=f, bound=bound)

    def _exp_ready(self) -> SecretTensor:
        """self at no more than functions.EXP_MAX_FRAC_BITS fractional bits (1 round if finer)."""
        if self.decimals:
            return self.to_fixed()._exp_ready()
        extra = self.frac_bits - functions.EXP_MAX_FRAC_BITS
        return self.truncate(extra) if extra > 0 else self

    def exp(self, *, frac_bits: int | None = None) -> SecretTensor:
        """e^self, with self clamped to [-44, 44] (below: 0; above: e^44).
        Cost: 14 rounds (ring64: 15; one more for inputs with over 40 fractional bits, which are
        truncated to 40 first). Error: 1e-9 relative + 1 unit."""
        x = self._exp_ready()
        f, bound = functions.plan_exp(x.ring, x.ctx.frac_bits, x.bound, x.frac_bits, frac_bits)
        shares = None if x.shares is None else functions.exp(x.ctx, x.shares, x.frac_bits, f)
        return x._new(shares, frac_bits=f, bound=bound)

    def log(self, *, frac_bits: int | None = None) -> SecretTensor:
        """Natural logarithm; log(0) gives log of one unit in the last place, a negative value
        log|self|. Cost: 22 rounds. Error: 2e-9 + 2 units (absolute)."""
        if self.decimals:
            return self.to_fixed().log(frac_bits=frac_bits)
        f, bound = functions.plan_log(self.ring, self.ctx.frac_bits, self.bound, self.frac_bits, frac_bits)
        shares = None if self.shares is None else functions.log(self.ctx, self.shares, self.frac_bits, f)
        return self._new(shares, frac_bits=f, bound=bound)

    def sigmoid(self, *, frac_bits: int | None = None) -> SecretTensor:
        """1 / (1 + e^-self), never overflowing. Cost: 18 rounds (ring64: 19; one more for
        inputs with over 40 fractional bits, as ``exp``). Error: 3e-10 + 1 unit (absolute)."""
        z = self._exp_ready()
        f, bound = functions.plan_sigmoid(z.ring, z.ctx.frac_bits, z.bound, z.frac_bits, frac_bits)
        shares = None if z.shares is None else functions.sigmoid(z.ctx, z.shares, z.frac_bits, f)
        return z._new(shares, frac_bits=f, bound=bound)

    def square(self) -> SecretTensor:
        return self * self

    def __matmul__(self, other: SecretTensor) -> SecretTensor:
        return self.matmul(other)

    def matmul(self, other, exact: bool = False) -> SecretTensor:
        """Matrix product (torch.matmul semantics). With ``exact=True`` the product keeps
        frac_bits(self) + frac_bits(other) fractional bits and is not truncated (exact, e.g.
        X^T X of integers or of encoded values). Cost: 1 round, 1 ring element per element
        of the result per party."""
        if not isinstance(other, SecretTensor):
            other = SecretTensor.from_public(self.ctx, other)
        self._check_same_job(other)
        if self.decimals or other.decimals:
            self._decimal_ready("matmul")
            other._decimal_ready("matmul")
        inner = self.shape[-1] if self.shape is not None else 0
        bound = self.bound * other.bound * inner
        raw, trunc = self._product_plan(bound, self.frac_bits, other.frac_bits, "matmul", exact)
        shares = None
        if self.shares is not None:
            shares = arithmetic.matmul(self.ctx, self.shares, other.shares, trunc)
        out = self._new(shares, raw - trunc, bound, other)
        out.decimals = self.decimals + other.decimals
        return self._shape_blind(out)

    def dot(self, other: SecretTensor, dim=-1, exact: bool = False) -> SecretTensor:
        """sum(self * other, dim): only the reduced result is communicated. With
        ``exact=True`` no truncation (see ``matmul``). Cost: 1 round, 1 ring element per
        element of the result per party."""
        self._check_same_job(other)
        if self.decimals or other.decimals:
            self._decimal_ready("dot product")
            other._decimal_ready("dot product")
        count = self._count(dim)
        bound = self.bound * other.bound * count
        raw, trunc = self._product_plan(bound, self.frac_bits, other.frac_bits, "dot product", exact)
        shares = None
        if self.shares is not None:
            shares = arithmetic.mul_sum(self.ctx, self.shares, other.shares, dim, trunc)
        out = self._new(shares, raw - trunc, bound, other)
        out.decimals = self.decimals + other.decimals
        return self._shape_blind(out)

    # ----- reductions ------------------------------------------------------------------
    def _count(self, dim) -> int:
        if self.shape is None:
            return 0  # a party without shares cannot know the shape; its bounds are not checked
        if dim is None:
            return math.prod(self.shape)
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        return math.prod(self.shape[d] for d in dims)

    def sum(self, dim=None, keepdim: bool = False) -> SecretTensor:
        """Sum (local, exact). The bound grows by the number of terms."""
        count = self._count(dim)
        bound = self.bound * count
        check_fits(self.ring, bound, self.frac_bits, "sum")
        shares = None if self.shares is None else self.shares.sum(dim=dim, keepdim=keepdim)
        return self._shape_blind(self._new(shares, bound=bound))

    def mean(self, dim=None, keepdim: bool = False) -> SecretTensor:
        """Mean = sum times the public 1/count (1 round for the truncation); an exact decimal
        is converted ``to_fixed`` first."""
        if self.decimals:
            return self.to_fixed().mean(dim=dim, keepdim=keepdim)
        count = self._count(dim)
        total = self.sum(dim=dim, keepdim=keepdim)
        f_out = self.frac_bits or self.ctx.frac_bits
        if self.shares is None:  # a party without shares does not know the count (see _count)
            return total._new(None, frac_bits=f_out, bound=self.bound)  # (unknown, as total's)
        out = total._mul_public(torch.tensor(1.0 / count, dtype=torch.float64))
        if out.frac_bits < f_out:  # count == 1 multiplies by the integer 1: same scale on every rank
            out = out.rescale(f_out)
        out.bound = self.bound
        return out

    # ----- comparisons -----------------------------------------------------------------
    # Each returns a secret 0/1 in integer mode, exact. A public operand c is moved onto the
    # secret's grid in the direction that keeps the answer: for x = X / 2^f, x < c exactly when
    # X < ceil(c 2^f) and x > c exactly when X > floor(c 2^f) (rounding c to the nearest grid
    # point instead gets 0.69999981 < 0.7 wrong), and x == c is 0 where c is off the grid.
    __hash__ = object.__hash__

    def _as_bit(self, shares) -> SecretTensor:
        return SecretTensor(self.ctx, shares, 0, 1.0)

    def _not(self) -> SecretTensor:
        """1 - a 0/1 secret, still bounded by 1 (``where`` needs that)."""
        flipped = 1 - self
        return SecretTensor(self.ctx, flipped.shares, 0, 1.0)

    def _on_grid(self, other, rounding):
        """A public ``other`` rounded by ``rounding`` (torch.ceil or torch.floor) to a multiple
        of 2^-frac_bits: exact in float64 (power-of-two scaling); a secret passes unchanged."""
        if isinstance(other, SecretTensor):
            return other
        scale = 2.0**self.frac_bits
        return rounding(_public_tensor(other) * scale) / scale

    def _sign_ready(self, what: str) -> SecretTensor:
        """self, after checking that it fits 64 bits so the 64-bit adders decide its sign."""
        if not self.bound * 2.0**self.frac_bits < 2.0**63:
            raise RangeError(
                f"{what}: worst case |difference| {self.bound:.4g} at {self.frac_bits} fractional bits "
                f"does not fit 64 bits ({2.0**63 / 2.0**self.frac_bits:.4g}); comparisons run on the "
                "low 64 bits of a sharing, so declare tighter bounds or use fewer fractional bits"
            )
        return self

    def _ltz(self, what: str = "comparison") -> SecretTensor:
        d = self._sign_ready(what)
        return self._as_bit(None if d.shares is None else compare.less_than_zero(self.ctx, d.shares))

    def _eqz(self) -> SecretTensor:
        d = self._sign_ready("equality")
        return self._as_bit(None if d.shares is None else compare.equal_zero(self.ctx, d.shares))

    def __lt__(self, other) -> SecretTensor:
        """self < other as a secret 0/1 (exact). Cost: 10 rounds; bytes per element in
        docs/costs.md (protocols.compare.less_than_zero)."""
        if self.decimals or (isinstance(other, SecretTensor) and other.decimals):
            return self._compare_decimal(other, "lt")
        return (self - self._on_grid(other, torch.ceil))._ltz()

    def __gt__(self, other) -> SecretTensor:
        """self > other (exact). Cost: as ``<``."""
        if self.decimals or (isinstance(other, SecretTensor) and other.decimals):
            return self._compare_decimal(other, "gt")
        return ((-self) + self._on_grid(other, torch.floor))._ltz()

    def __le__(self, other) -> SecretTensor:
        """self <= other (exact). Cost: as ``<``."""
        return (self > other)._not()

    def __ge__(self, other) -> SecretTensor:
        """self >= other (exact). Cost: as ``<``."""
        return (self < other)._not()

    def __eq__(self, other) -> SecretTensor:  # type: ignore[override]
        """self == other as a secret 0/1 (exact). Cost: 9 rounds; bytes per element in
        docs/costs.md (protocols.compare.equal_zero)."""
        if self.decimals or (isinstance(other, SecretTensor) and other.decimals):
            return self._compare_decimal(other, "eq")
        if isinstance(other, SecretTensor):
            return (self - other)._eqz()
        scale = 2.0**self.frac_bits
        scaled = _public_tensor(other) * scale
        on_grid = torch.floor(scaled) == scaled
        equal = (self - torch.floor(scaled) / scale)._eqz()
        # where c is off the grid no x equals it: a public 0/1 factor, a local product
        return equal if bool(on_grid.all()) else equal * on_grid.to(torch.float64)

    def __ne__(self, other) -> SecretTensor:  # type: ignore[override]
        """self != other (exact). Cost: as ``==``."""
        return (self == other)._not()

    def abs(self) -> SecretTensor:
        """|self| = self * (1 - 2 [self < 0]). Cost: 11 rounds (a comparison, then one
        product); bytes per element in docs/costs.md. Error: exact."""
        negative = self._ltz("abs")
        sign = 1 - 2 * negative
        sign.bound = 1.0  # it is +-1: the product is no larger than self
        return self._new((self * sign).shares)

    __abs__ = abs

    def relu(self) -> SecretTensor:
        """max(self, 0). Cost: 11 rounds (a comparison, then ``where``); bytes per element in
        docs/costs.md. Error: exact."""
        return where(self._ltz("relu"), 0, self)

    def _extreme(self, dim, largest: bool, with_index: bool):
        x = self.flatten() if dim is None else self
        d = 0 if dim is None else dim
        x._sign_ready("min/max")
        (x - x)._sign_ready("min/max")  # differences of two elements: bound 2|x|
        if x.bound * 2 * 2.0**x.frac_bits >= 2.0**63:
            raise RangeError("min/max: differences of elements may not fit 64 bits; declare tighter bounds")
        if x.shares is None:  # a rank without shares knows no shape: like sum's, its bounds are 0
            index = SecretTensor(self.ctx, None, 0, 0.0) if with_index else None
            if index is not None:
                index.bound_known = False
            return self._shape_blind(x._new(None)), index
        if not -len(x.shape) <= d < len(x.shape):
            raise SmpcError(f"min/max: dim {dim} is out of range for a secret of shape {tuple(x.shape)}")
        d %= len(x.shape)
        if x.shape[d] == 0:
            raise InputError("min/max/argmax/argmin of an empty secret: there is no element to pick")
        index = None
        if with_index:
            n = x.shape[d]
            shape = [1] * len(x.shape)
            shape[d] = n
            positions = torch.arange(n, dtype=torch.float64).reshape(shape).expand(tuple(x.shape))
            index = SecretTensor.from_public(self.ctx, positions.contiguous(), frac_bits=0)
        values, idx = compare.reduce_extreme(
            self.ctx, x.shares, d, largest, None if index is None else index.shares
        )
        values = values.reshape(values.shape[:d] + values.shape[d + 1 :])
        value = x._new(values)
        if idx is None:
            return value, None
        idx = idx.reshape(idx.shape[:d] + idx.shape[d + 1 :])
        return value, SecretTensor(self.ctx, idx, 0, float(max(x.shape[d] - 1, 0)))

    def max(self, dim=None) -> SecretTensor:
        """Largest element (along ``dim``; all elements when None) by a log-depth tournament.
        Cost: ceil(log2 n) x 11 rounds; bytes per element in docs/costs.md
        (protocols.compare.reduce_extreme). Error: exact."""
        return self._extreme(dim, True, False)[0]

    def min(self, dim=None) -> SecretTensor:
        """Smallest element (see ``max``)."""
        return self._extreme(dim, False, False)[0]

    def argmax(self, dim=None) -> SecretTensor:
        """A secret index of a largest element (ties: one of them). Cost as ``max``."""
        return self._extreme(dim, True, True)[1]

    def argmin(self, dim=None) -> SecretTensor:
        return self._extreme(dim, False, True)[1]

    # ----- shape -----------------------------------------------------------------------
    def _shape_op(self, fn) -> SecretTensor:
        return self._new(None if self.shares is None else fn(self.shares))

    def reshape(self, *shape) -> SecretTensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
            shape = tuple(shape[0])
        if self.shares is not None and -1 in shape:
            shape = torch.empty(self.shape, device="meta").reshape(shape).shape
        return self._shape_op(lambda s: s.reshape(shape))

    def flatten(self) -> SecretTensor:
        return self.reshape(-1)

    def __getitem__(self, key) -> SecretTensor:
        return self._shape_op(lambda s: s.getitem(key))

    def transpose(self, d0: int, d1: int) -> SecretTensor:
        return self._shape_op(lambda s: s.transpose(d0, d1))

    @property
    def T(self) -> SecretTensor:  # noqa: N802 - torch's name
        return self.transpose(0, 1) if self.shape is None or len(self.shape) == 2 else self

    # ----- output ----------------------------------------------------------------------
    def _recipients(self, to) -> list[int]:
        if to is None:
            return list(range(self.ctx.world_size))
        ranks = [to] if isinstance(to, numbers.Integral) else list(to)
        for r in ranks:
            if not 0 <= r < self.ctx.world_size:
                raise SmpcError(f"cannot reveal to rank {r}: not a party of this job")
        return ranks

    def _open(self, to):
        """The opened ring tensor on the recipients (None elsewhere), refused with RangeError
        at every recipient if it lies beyond the public bound (``fixedpoint.check_open``)."""
        opened = arithmetic.reveal(self.ctx, self.shares, self._recipients(to), self._open_width())
        if opened is not None and self.bound_known:
            what = f"reveal of {self.origin or 'a secret'} ({self.ring.name})"
            check_open(self.ring, opened, self.bound, self.frac_bits, what)
        return opened

    def _open_width(self) -> int:
        # the public bound says how many low bytes of each share determine the value
        return open_width(self.ring, self.bound, self.frac_bits)

    def reveal(self, to=None) -> torch.Tensor | None:
        """The value as float64 on the ranks in ``to`` (default: every party), None elsewhere.
        A value beyond its public bound raises RangeError at every recipient, never opens
        wrapped. Leakage: the value, to the recipients. Cost: 1 round; per element, the
        fewest bytes that the public bound allows plus one spare byte, else a ring element
        (see protocols.arithmetic.reveal and fixedpoint.open_width).

        >>> import smpc
        >>> smpc.simulate(lambda ctx, x=None: smpc.share(ctx, x, owner=0).reveal(to=1), inputs={0: {"x": [1.25, -3.0]}})
        [None, tensor([ 1.2500, -3.0000], dtype=torch.float64), None]
        """
        opened = self._open(to)
        if opened is None:
            return None
        # ranks without shares cannot trust the bound (see arithmetic.reveal)
        value = decode(opened, self.ring, self.frac_bits, fits_int64=self.ctx.is_compute and self._open_width() <= 8)
        # units below 2^53 and 10^decimals are exact floats: one correctly rounded division
        return value / 10.0**self.decimals if self.decimals else value

    def reveal_int(self, to=None) -> np.ndarray | None:
        """Exact integers (an object array of Python ints) for integer-mode secrets: sums of
        cents beyond 2^53 stay exact, unlike float64.

        >>> import smpc
        >>> def total(ctx, cents=None):
        ...     return smpc.share(ctx, cents, owner=0, bound=2**60, frac_bits=0).sum().reveal_int()
        >>> int(smpc.simulate(total, inputs={0: {"cents": [2**53, 1]}})[0])
        9007199254740993
        """
        if self.frac_bits != 0:
            raise SmpcError("reveal_int needs an integer-mode secret (frac_bits=0)")
        if self.decimals:
            raise SmpcError(f"reveal_int of an exact decimal ({self.decimals} decimals): reveal_decimal or "
                            "reveal_exact gives it exactly")
        opened = self._open(to)
        if opened is None:
            return None
        values = self.ring.to_ints(opened, signed=True)
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out.reshape(tuple(self.ring.shape(opened)))

    def reveal_exact(self, to=None) -> np.ndarray | None:
        """Exact values as an object array of ``fractions.Fraction`` (the encoded integer over
        2^frac_bits): statistics finish from these without any float rounding."""
        opened = self._open(to)
        if opened is None:
            return None
        scale = (1 << self.frac_bits) * 10**self.decimals
        values = [Fraction(v, scale) for v in self.ring.to_ints(opened, signed=True)]
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out.reshape(tuple(self.ring.shape(opened)))

    def reveal_decimal(self, to=None) -> np.ndarray | None:
        """An exact decimal as an object array of ``decimal.Decimal`` with exactly ``decimals``
        places (12.30, not 12.3): money printed as it was given. Integer-mode secrets too."""
        if self.frac_bits != 0:
            raise SmpcError("reveal_decimal needs an exact decimal or integer secret (frac_bits=0); "
                            "reveal_exact gives binary fixed point exactly")
        opened = self._open(to)
        if opened is None:
            return None
        values = [Decimal(v).scaleb(-self.decimals) for v in self.ring.to_ints(opened, signed=True)]
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out.reshape(tuple(self.ring.shape(opened)))


# ----- inputs: a party's values become secrets ---------------------------------------------
def share(ctx, value, owner: int, *, bound: float | None = None, frac_bits: int | None = None,
          decimals: int | None = None, name: str | None = None) -> SecretTensor:
    """Secret-share ``value`` held by rank ``owner`` (every other rank passes None).

    ``bound`` is the public largest |value| (default: the ring's default input bound),
    ``frac_bits`` the fixed-point precision (0 for exact integers; default ``ctx.frac_bits``).
    ``decimals`` makes it an exact decimal instead (money: ``decimals=2`` holds cents exactly;
    ``bound`` is then in the value's own units, 1e9 for a billion); a value with more decimals
    is refused, never rounded. The owner checks its values first: NaN, infinity, values over
    the bound, non-integers in integer mode and over-precise decimals raise before anything is
    sent, and the job is aborted on every party. Leakage: the shape of the value.
    Cost: 1 round; a compute owner sends 1 ring element per element (to one party; the
    third gets the shape), an input party 2 (``protocols.arithmetic.share_input``).

    >>> import smpc
    >>> def job(ctx, x=None):
    ...     balance = smpc.share(ctx, x, owner=0, bound=1e9, decimals=2)  # cents, exactly
    ...     return (balance.sum() == 0.3).reveal().item(), balance.sum().reveal_decimal().item()
    >>> smpc.simulate(job, inputs={0: {"x": [0.1, 0.2]}})[1]
    (1.0, Decimal('0.30'))
    """
    if not 0 <= owner < ctx.world_size:
        raise SmpcError(f"owner rank {owner} is not a party of this job (world size {ctx.world_size})")
    f, b, d = _scale(ctx, bound, frac_bits, decimals)
    encoded = _encode_own(ctx, value, f, b, d, name) if ctx.rank == owner else None
    shares = arithmetic.share_input(ctx, encoded, owner)
    return SecretTensor(ctx, shares, frac_bits=f, bound=b * 10**d, origin=_origin(ctx, owner, name), decimals=d)


def share_each(ctx, value, owners, *, shape, bound: float | None = None, frac_bits: int | None = None,
               decimals: int | None = None, name: str | None = None) -> list[SecretTensor]:
    """Every rank in ``owners`` secret-shares its own ``value`` (every other rank passes
    None) of the public ``shape``, all in one round; returns one secret per owner, in
    owner order. For values every party knows the shape of (per-bank aggregates): calling
    ``share`` once per owner costs a round each.

    The owners check their values as ``share`` does, and a value of another shape is
    refused before anything is sent. Leakage: none. Cost: 1 round; a compute owner sends
    1 ring element per element to one party, an input party 2
    (``protocols.arithmetic.share_inputs``).

    >>> import smpc
    >>> def job(ctx, counts=None):
    ...     per_bank = smpc.share_each(ctx, counts, owners=[0, 1, 2], shape=(2,), bound=1e6, frac_bits=0)
    ...     return sum(per_bank[1:], per_bank[0]).reveal().tolist()
    >>> smpc.simulate(job, inputs={0: {"counts": [3, 1]}, 1: {"counts": [5, 0]}, 2: {"counts": [2, 2]}})[0]
    [10.0, 3.0]
    """
    owners = list(owners)
    if not owners or any(not 0 <= o < ctx.world_size for o in owners) or len(set(owners)) < len(owners):
        raise SmpcError(f"share_each: owners {owners} must be distinct ranks of this job")
    shape = tuple(int(d) for d in shape)
    f, b, d = _scale(ctx, bound, frac_bits, decimals)
    encoded = None
    if ctx.rank in owners:
        encoded = _encode_own(ctx, value, f, b, d, name)
        if tuple(ctx.ring.shape(encoded)) != shape:
            who = ctx.name_of(ctx.rank) + (f", column '{name}'" if name else "")
            raise InputError(f"{who}: a value of shape {tuple(ctx.ring.shape(encoded))}, where every party "
                             f"expects {shape}")
    shares = arithmetic.share_inputs(ctx, encoded, owners, shape)
    return [SecretTensor(ctx, s, frac_bits=f, bound=b * 10**d, origin=_origin(ctx, o, name), decimals=d)
            for o, s in zip(owners, shares, strict=True)]


def constant(ctx, value, *, frac_bits: int | None = None) -> SecretTensor:
    """A public value as a (trivially shared) secret, e.g. to start an accumulation.

    >>> import smpc
    >>> smpc.simulate(lambda ctx: (smpc.constant(ctx, [1.5, 2.0]) * 2).reveal().tolist())[0]
    [3.0, 4.0]
    """
    return SecretTensor.from_public(ctx, value, frac_bits=frac_bits)


def _origin(ctx, owner: int, name: str | None) -> str:
    return f"{ctx.name_of(owner)}'s {name or 'input'}"


def _scale(ctx, bound, frac_bits, decimals) -> tuple[int, float, int]:
    """(frac_bits, bound in the value's units, decimals) of an input, every rank alike."""
    if decimals is not None and frac_bits not in (None, 0):
        raise SmpcError(f"an input is either exact decimals (decimals={decimals}) or binary fixed point "
                        f"(frac_bits={frac_bits}), not both")
    f = (ctx.frac_bits if frac_bits is None else int(frac_bits)) if decimals is None else 0
    b = ctx.default_bound if bound is None else float(bound)
    return f, b, int(decimals or 0)


def _encode_own(ctx, value, frac_bits: int, bound: float, decimals: int, name: str | None) -> torch.Tensor:
    """This rank's own input, checked and encoded before anything is sent (``share``,
    ``share_each``); errors name the party and the column."""
    me = ctx.name_of(ctx.rank)
    if value is None:
        raise SmpcError(f"{me} owns this input but passed None")
    who = me + (f", column '{name}'" if name else "")
    if decimals:
        return encode_decimal(value, ctx.ring, decimals, bound, who=who)
    return encode(value, ctx.ring, frac_bits, bound, who=who)


def cat(items: list[SecretTensor], dim: int = 0) -> SecretTensor:
    """Concatenate secrets (local). Fractional bits (or decimals) are aligned to the largest.

    >>> import smpc
    >>> def job(ctx, x=None, y=None):
    ...     a, b = smpc.share(ctx, x, owner=0, bound=100), smpc.share(ctx, y, owner=1, bound=100)
    ...     return smpc.cat([a, b]).reveal().tolist()
    >>> smpc.simulate(job, inputs={0: {"x": [1.0, 2.0]}, 1: {"y": [3.0]}})[0]
    [1.0, 2.0, 3.0]
    """
    return _joined(items, dim, ArithmeticShares.cat)


def stack(items: list[SecretTensor], dim: int = 0) -> SecretTensor:
    """Stack secrets along a new dimension (local), fractional bits aligned as ``cat``'s.

    >>> import smpc
    >>> def job(ctx, x=None, y=None):
    ...     a, b = smpc.share(ctx, x, owner=0, bound=100), smpc.share(ctx, y, owner=1, bound=100)
    ...     return smpc.stack([a, b]).sum(dim=0).reveal().tolist()
    >>> smpc.simulate(job, inputs={0: {"x": [1.0, 2.0]}, 1: {"y": [3.0, 4.0]}})[0]
    [4.0, 6.0]
    """
    return _joined(items, dim, ArithmeticShares.stack)


def _joined(items: list[SecretTensor], dim: int, join) -> SecretTensor:
    f = max(x.frac_bits for x in items)
    d = max(x.decimals for x in items)
    aligned = [x._decimal_ready("cat/stack").with_decimals(d) for x in items] if d else [x.rescale(f) for x in items]
    bound = max(x.bound for x in items)
    first = aligned[0]
    shares = None if first.shares is None else join([x.shares for x in aligned], dim)
    return first._new(shares, f, bound, *aligned)


def where(cond: SecretTensor, if_true, if_false) -> SecretTensor:
    """cond ? if_true : if_false elementwise, for a secret 0/1 ``cond`` (e.g. a comparison).
    Either branch may be public. Cost: 1 round (one multiplication); bytes per element in
    docs/costs.md (protocols.compare.select). Error: exact.

    >>> import smpc
    >>> def capped(ctx, x=None):
    ...     a = smpc.share(ctx, x, owner=0, bound=1e6)
    ...     return smpc.where(a > 100, 100, a).reveal().tolist()
    >>> smpc.simulate(capped, inputs={0: {"x": [50.0, 250.0, -7.5]}})[0]
    [50.0, 100.0, -7.5]
    """
    if not isinstance(cond, SecretTensor) or cond.frac_bits != 0 or cond.bound > 1:
        raise SmpcError("where() needs a secret 0/1 condition, such as the result of a comparison")
    ctx = cond.ctx
    decimal = [x for x in (if_true, if_false) if isinstance(x, SecretTensor) and x.decimals]
    if decimal:  # a public branch joins an exact decimal as a constant in its units
        d = max(x.decimals for x in decimal)
        if_true, if_false = (_decimal_constant(ctx, x, d) if not isinstance(x, SecretTensor) else x
                             for x in (if_true, if_false))
    a = if_true if isinstance(if_true, SecretTensor) else SecretTensor.from_public(ctx, if_true)
    b = if_false if isinstance(if_false, SecretTensor) else SecretTensor.from_public(ctx, if_false)
    if decimal:
        a, b = a._aligned(b, "where")
    f = max(a.frac_bits, b.frac_bits)
    a, b = a.rescale(f), b.rescale(f)
    bound = max(a.bound, b.bound)
    check_fits(cond.ring, a.bound + b.bound, f, "where")
    shares = None if cond.shares is None else compare.select(ctx, cond.shares, a.shares, b.shares)
    out = SecretTensor(ctx, shares, f, bound, a.origin or b.origin, a.decimals)
    out.bound_known = a.bound_known and b.bound_known
    return out


def _decimal_constant(ctx, value, decimals: int) -> SecretTensor:
    """A public value as a trivially shared exact decimal (at ``decimals`` or more)."""
    zero = SecretTensor.from_public(ctx, torch.zeros(_public_tensor(value).shape, dtype=torch.float64), frac_bits=0)
    return zero.with_decimals(decimals) + value


def maximum(a: SecretTensor, b) -> SecretTensor:
    """Elementwise max. Cost: 11 rounds (``<`` then ``where``); bytes per element in
    docs/costs.md. Error: exact.

    >>> import smpc
    >>> def job(ctx, x=None, y=None):
    ...     a, b = smpc.share(ctx, x, owner=0, bound=100), smpc.share(ctx, y, owner=1, bound=100)
    ...     return smpc.maximum(a, b).reveal().tolist()
    >>> smpc.simulate(job, inputs={0: {"x": [1.0, 5.0]}, 1: {"y": [3.0, -2.0]}})[0]
    [3.0, 5.0]
    """
    return where(a < b, b, a)


def minimum(a: SecretTensor, b) -> SecretTensor:
    """Elementwise min. Cost: as ``maximum``.

    >>> import smpc
    >>> def negative_part(ctx, x=None):
    ...     return smpc.minimum(smpc.share(ctx, x, owner=0, bound=100), 0).reveal().tolist()
    >>> smpc.simulate(negative_part, inputs={0: {"x": [3.0, -2.5]}})[0]
    [0.0, -2.5]
    """
    return where(a < b, a, b)
