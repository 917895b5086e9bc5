"""Group-by over a categorical key: counts, sums, means and rates per group."""

from __future__ import annotations

from fractions import Fraction

from smpc.secret import SecretTensor, cat, stack
from smpc.stats.columns import Column


def group_totals(onehot: SecretTensor, cols: list[Column]) -> tuple[SecretTensor, SecretTensor]:
    """(counts, sums): per group g, the number of present values and their sum, for each
    column, as secrets (G x d), from a secret n x G one-hot membership matrix (integer mode;
    each bank builds it for its own rows from the public list of group keys).
    Cost: 1 round (one exact matmul of the one-hot matrix with values and masks); 2 G d
    ring elements per party. Leakage: none (nothing is revealed here).
    """
    values = stack([c.values for c in cols], dim=1)
    masks = stack([c.present for c in cols], dim=1)
    both = cat([values, masks.rescale(values.frac_bits)], dim=1)
    totals = onehot.transpose(0, 1).matmul(both, exact=True)  # G x 2d at frac f
    d = len(cols)
    sums = totals[:, :d]
    counts = totals[:, d:]
    return counts, sums


def groupby_mean(onehot: SecretTensor, cols: list[Column], to=None):
    """Per group and column: (count, sum, mean) as exact values, means NaN for empty groups.
    Leakage: every group's count and sum (a rate for a 0/1 column is sum / count)."""
    counts, sums = group_totals(onehot, cols)
    c, s = counts.reveal_exact(to), sums.reveal_exact(to)
    if c is None:
        return None
    out = []
    for g in range(c.shape[0]):
        row = []
        for j in range(c.shape[1]):
            n = int(c[g, j])
            total = s[g, j]
            row.append((n, float(total), float(Fraction(total) / n) if n else float("nan")))
        out.append(row)
    return out
