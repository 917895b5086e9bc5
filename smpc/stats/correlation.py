"""Covariance and Pearson correlation matrices over secret columns (pandas semantics:
pairwise-complete observations, ddof=1)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from smpc.secret import cat, stack
from smpc.stats.columns import Column


def cross_moments(cols: list[Column], to=None):
    """Exact pairwise sufficient statistics, as object arrays of Fractions (d x d):
    n[i, j] rows where both are present, s[i, j] = sum of x_i over those rows,
    q[i, j] = sum of x_i^2 over them, p[i, j] = sum x_i x_j.

    Missing values are zero in ``values``, so X^T X already counts only pairwise-complete
    rows; with M the masks, X^T M, M^T M and (X*X)^T M give the rest. Cost: 3 rounds
    (an exact square, two exact matmuls, no truncation) + 1 reveal; (2d)^2 + d^2 ring elements.
    Leakage: n, s, q, p (they determine the covariance and correlation matrices and means).
    """
    values = stack([c.values for c in cols], dim=1)  # n x d, frac f
    masks = stack([c.present for c in cols], dim=1)  # n x d, integer
    both = cat([values, masks.rescale(values.frac_bits)], dim=1)  # n x 2d at frac f
    gram = both.transpose(0, 1).matmul(both, exact=True)  # 2d x 2d at 2f
    q = _exact_square(values).transpose(0, 1).matmul(masks, exact=True)  # d x d at 2f
    opened = gram.reveal_exact(to), q.reveal_exact(to)
    if opened[0] is None:
        return None
    g, q_val = opened
    d = len(cols)
    scale = Fraction(1 << values.frac_bits)  # masks were scaled by 2^f
    n = g[d:, d:] / (scale * scale)
    s = g[:d, d:] / scale
    p = g[:d, :d]
    return n, s, q_val, p


def _exact_square(values):
    from smpc.protocols import arithmetic
    from smpc.secret import SecretTensor

    shares = None if values.shares is None else arithmetic.square(values.ctx, values.shares, 0)
    return SecretTensor(values.ctx, shares, 2 * values.frac_bits, values.bound * values.bound)


def cov(cols: list[Column], ddof: int = 1, to=None) -> np.ndarray | None:
    """Covariance matrix (pairwise complete, ``ddof``), exact before the final rounding.
    Leakage: see ``cross_moments``."""
    m = cross_moments(cols, to)
    if m is None:
        return None
    n, s, _q, p = m
    d = len(cols)
    out = np.full((d, d), math.nan)
    for i in range(d):
        for j in range(d):
            nij = int(n[i, j])
            if nij - ddof > 0:
                out[i, j] = float((nij * p[i, j] - s[i, j] * s[j, i]) / (nij * (nij - ddof)))
    return out


def corr(cols: list[Column], to=None) -> np.ndarray | None:
    """Pearson correlation matrix (pairwise complete, as pandas.DataFrame.corr).
    The ratio is formed exactly; one square root in float64 at the end.
    Leakage: see ``cross_moments``."""
    m = cross_moments(cols, to)
    if m is None:
        return None
    n, s, q, p = m
    d = len(cols)
    out = np.full((d, d), math.nan)
    for i in range(d):
        for j in range(d):
            nij = int(n[i, j])
            if nij < 2:
                continue
            num = nij * p[i, j] - s[i, j] * s[j, i]
            vi = nij * q[i, j] - s[i, j] ** 2
            vj = nij * q[j, i] - s[j, i] ** 2
            if vi <= 0 or vj <= 0:
                continue
            out[i, j] = float(num) / math.sqrt(float(vi) * float(vj)) if i != j else 1.0
    return out
