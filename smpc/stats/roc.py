"""Mann-Whitney AUC and Kolmogorov-Smirnov separation of a secret score, on secret rows.

The pooled rows are sorted by score (``smpc.protocols.sort``: a secret shuffle, then a
quicksort whose comparisons may open because the keys are made distinct by the row index),
rows with equal scores are grouped on shares (``segmented.adjacent_equal``), and two exact
integers come out per population (a column of the 0/1 matrices below):

- twice the Mann-Whitney U: 2U = sum over positive rows of (2 x negatives with a lower
  score + negatives with the same score), so AUC = 2U / (2 P N) with ties counted 1/2;
  with the sorted rows' running count of negatives C_i and the inclusive prefix F_i and
  suffix B_i of negatives within the row's tie group, 2U = sum_i pos_i (2 C_i - F_i + B_i);
- the largest gap max_t |TPR(t) - FPR(t)| P N = max |C+_i N - C_i P| over the last row of
  every tie group (the thresholds between distinct scores; C+_i the running positives),
  so KS = gap / (P N).

Running counts are local (prefix sums of shares); the within-tie sums are one segmented
scan; the maximum is a tournament. Nothing about a score or a rank is opened: the sort's
opened comparisons are of distinct keys in a secretly shuffled order.
"""

from __future__ import annotations

import torch

from smpc.protocols import segmented, sort
from smpc.secret import SecretTensor, cat
from smpc.sharing import ArithmeticShares, BooleanShares


def _cumsum(ring, t: torch.Tensor) -> torch.Tensor:
    """Prefix sums along the row dimension of one share tensor, mod 2^k: int64 sums wrap mod
    2^64; a two-lane (ring128) share adds the carries out of its low lane, summed as 32-bit
    halves so that nothing overflows before n reaches 2^31."""
    if ring.lanes == 1:
        return torch.cumsum(t, dim=0)
    lo, hi = t[0], t[1]
    low = torch.cumsum(lo & 0xFFFFFFFF, dim=0)
    high = torch.cumsum((lo >> 32) & 0xFFFFFFFF, dim=0)
    carry = (high + (low >> 32)) >> 32
    return torch.stack([(high << 32) + low, torch.cumsum(hi, dim=0) + carry])


def _running(x: SecretTensor, bound: float) -> SecretTensor:
    s = x.shares
    shares = ArithmeticShares(s.ring, _cumsum(s.ring, s.first), _cumsum(s.ring, s.second))
    return SecretTensor(x.ctx, shares, 0, bound, x.origin)


def _integer(ctx, shares, bound: float) -> SecretTensor:
    return SecretTensor(ctx, shares, 0, float(bound))


def roc_sums(scores: SecretTensor, positive: SecretTensor, negative: SecretTensor, positives: SecretTensor,
             negatives: SecretTensor) -> tuple[SecretTensor, SecretTensor]:
    """(2U, gap), each a secret integer vector of shape (G,), for G populations at once.

    ``scores``: (n,) secret, any fixed point (its encoding sorts as the values do), bound
    under 2^63 encoded. ``positive``/``negative``: (n, G) secret 0/1 integers, row i's
    membership in population g as a positive/negative (both 0 for a row outside it).
    ``positives``/``negatives``: (G,) their column sums (P, N), e.g. from the banks' own
    counts. AUC_g = 2U_g / (2 P_g N_g) and KS_g = gap_g / (P_g N_g).
    Leakage: none (nothing is opened; the sort opens comparisons of distinct keys in a
    secretly shuffled order, which depend on n only).
    Cost: the sort (8 rounds of conversion + 3 of shuffle + the quicksort: ~120 rounds and
    ~1300 bytes per row and party for n = 1e5 with the two-word key), 6 + 2 rounds for the
    tie groups, ceil(log2 n) for the segmented scan (2G + 1 ring elements per row and
    round), 1 for 2U, 2 for the gaps (3G elements per row), and ceil(log2 2n) x 11 for the
    tournament (2 n G comparisons and selections)."""
    ctx = scores.ctx
    n = scores.shape[0] if scores.shape is not None else 0
    g = positive.shape[1] if positive.shape is not None else 0
    rows = float(max(n, 1))
    if scores.shares is None:  # a rank without shares: the results' metadata only
        out = (_integer(ctx, None, 4 * rows * rows), _integer(ctx, None, rows * rows))
        for secret in out:
            secret.bound_known = False
        return out
    ring = ctx.ring
    items = cat([positive, negative], dim=1)
    ordered = sort.sort_values(ctx, scores.shares.reshape((n,)), [items.shares])
    score_word = BooleanShares(ordered.keys.first[:, :1].contiguous(), ordered.keys.second[:, :1].contiguous())
    (same,) = segmented.adjacent_equal(ctx, score_word)
    cont = segmented.bits_to_arithmetic(ctx, [same], ring).reshape((n,))
    rows_sorted = _integer(ctx, ordered.items[0], 1.0)
    pos, neg = rows_sorted[:, :g], rows_sorted[:, g:]
    prefix, suffix = segmented.segmented_scans(ctx, neg.shares, cont)
    run_pos, run_neg = _running(pos, rows), _running(neg, rows)
    weight = 2 * run_neg - _integer(ctx, prefix, rows) + _integer(ctx, suffix, rows)
    twice_u = _integer(ctx, pos.dot(_integer(ctx, weight.shares, 4 * rows), dim=0).shares, 4 * rows * rows)
    # the last row of each tie group: 1 - cont of the row after it (the last row always)
    cont_t = _integer(ctx, cont, 1.0)
    zero = SecretTensor.from_public(ctx, torch.zeros(1, dtype=torch.float64), frac_bits=0)
    last = 1 - cat([cont_t[1:], zero]).reshape(n, 1)
    counts = cat([_integer(ctx, negatives.shares, rows), _integer(ctx, positives.shares, rows)]).reshape(1, 2 * g)
    products = cat([run_pos, run_neg], dim=1) * _expand(counts, (n, 2 * g))
    gap = _integer(ctx, (products[:, :g] - products[:, g:]).shares, rows * rows)
    gap = _integer(ctx, (gap * _expand(last, (n, g))).shares, rows * rows)
    largest = cat([gap, -gap], dim=0).max(dim=0)
    return twice_u, _integer(ctx, largest.shares, rows * rows)


def _expand(x: SecretTensor, shape) -> SecretTensor:
    return x._new(x.shares.expand(tuple(shape)))


__all__ = ["roc_sums"]
