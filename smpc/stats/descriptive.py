"""count, sum, mean, var, std, min, max over secret columns, with pandas' semantics.

Exactness: sums are exact (integers, or fixed-point values summed exactly at their encoding).
mean and var are finished in exact rational arithmetic from revealed sufficient statistics
(n, sum x, sum x^2), so they equal pandas to float64 rounding (relative ~1e-16) on the
encoded inputs; the encoding itself rounds non-integer inputs to 2^-frac_bits.

Leakage (stated for every function): what it returns, plus the sufficient statistics named
in its docstring, which its outputs determine anyway.
"""

from __future__ import annotations

import math
from fractions import Fraction

from smpc.secret import where
from smpc.stats.columns import Column


def _first(array):
    return None if array is None else array.reshape(-1)[0]


def count(col: Column, to=None) -> int | None:
    """Number of non-missing values. Leakage: that count. Cost: 1 round (reveal)."""
    n = _first(col.present.sum().reveal_int(to))
    return None if n is None else int(n)


def moments(col: Column, to=None) -> tuple[int, Fraction, Fraction] | None:
    """(n, sum x, sum x^2) exactly, as Python int and Fractions.

    sum x^2 is an exact dot product of the encoded values (no truncation, 2*frac_bits
    fractional bits). Leakage: n, sum x and sum x^2. Cost: 2 rounds (one exact dot, one
    reveal); 1 ring element per party for the dot, 3 for the reveal.
    """
    sums = col.values.sum()
    squares = col.values.dot(col.values, dim=0, exact=True)
    n = col.present.sum()
    opened = [n.reveal_exact(to), sums.reveal_exact(to), squares.reveal_exact(to)]
    if opened[0] is None:
        return None
    return int(_first(opened[0])), _first(opened[1]), _first(opened[2])


def sum(col: Column, to=None) -> float | None:  # noqa: A001 - mirrors statistics/pandas naming
    """Sum of the non-missing values (exact before the final conversion to float).
    Leakage: the sum. Cost: 1 round."""
    total = _first(col.values.sum().reveal_exact(to))
    return None if total is None else float(total)


def mean(col: Column, to=None) -> float | None:
    """Arithmetic mean (pandas skipna). NaN when no value is present.
    Leakage: n and sum x. Cost: 1 round."""
    n = col.present.sum()
    total = col.values.sum()
    n_val, total_val = n.reveal_exact(to), total.reveal_exact(to)
    if n_val is None:
        return None
    n_int = int(_first(n_val))
    return float(_first(total_val) / n_int) if n_int else math.nan


def var_from_moments(n: int, s1: Fraction, s2: Fraction, ddof: int = 1) -> float:
    """Exact (n s2 - s1^2) / (n (n - ddof)) rounded once to float64; NaN as pandas when
    n <= ddof."""
    if n - ddof <= 0:
        return math.nan
    value = (n * s2 - s1 * s1) / (n * (n - ddof))
    return float(value) if value > 0 else 0.0


def var(col: Column, ddof: int = 1, to=None) -> float | None:
    """Variance with ``ddof`` (1 by default, as pandas). Leakage: n, sum x, sum x^2 (they
    determine mean and variance, the usual companions of this output). Cost: 2 rounds."""
    m = moments(col, to)
    return None if m is None else var_from_moments(*m, ddof=ddof)


def std(col: Column, ddof: int = 1, to=None) -> float | None:
    """Standard deviation (sqrt of ``var``, computed after the exact variance)."""
    v = var(col, ddof=ddof, to=to)
    return None if v is None else math.sqrt(v)


def _extreme(col: Column, largest: bool, to):
    # an integer past every value (they reach bound + 1/2 unit at most: 99.99 at 16 bits is
    # 99.990005), encoded exactly, so "no value" is equality with it and not |v| > bound
    far = math.floor(col.bound) + 2
    sentinel = -far if largest else far
    masked = where(col.present, col.values, sentinel)
    result = masked.max() if largest else masked.min()
    value = _first(result.reveal_exact(to))
    if value is None:
        return None
    return math.nan if value == sentinel else float(value)


def max(col: Column, to=None) -> float | None:  # noqa: A001
    """Largest non-missing value by a secure tournament (NaN if none).
    Leakage: the maximum. Cost: 1 + 10 ceil(log2 n) rounds."""
    return _extreme(col, True, to)


def min(col: Column, to=None) -> float | None:  # noqa: A001
    """Smallest non-missing value (see ``max``)."""
    return _extreme(col, False, to)


# Python's statistics names
variance = var
stdev = std
