"""Mann-Whitney AUC and Kolmogorov-Smirnov separation of a secret score, on secret rows.

The pooled rows are sorted by score (``smpc.protocols.sort``: a secret shuffle, then a
quicksort whose comparisons may open because the keys are made distinct by the row index),
rows with equal scores are grouped on shares (``segmented.adjacent_equal``), and two exact
integers come out per population (a column of the 0/1 matrices below):

- twice the Mann-Whitney U: 2U = sum over positive rows of (2 x negatives with a lower
  score + negatives with the same score), so AUC = 2U / (2 P N) with ties counted 1/2
  (``roc_sums`` says how it comes from running counts and one segmented scan);
- the largest gap max_t |TPR(t) - FPR(t)| P N = max |C+_i N - C_i P| over the last row of
  every tie group (the thresholds between distinct scores; C+_i the running positives),
  so KS = gap / (P N).

Running counts are local (prefix sums of shares); the within-tie sums are one segmented
scan; the maximum is a tournament. Nothing about a score or a rank is opened: the sort's
opened comparisons are of distinct keys in a secretly shuffled order.
"""

from __future__ import annotations

import math

import torch

from smpc.errors import SmpcError
from smpc.protocols import boolean, segmented, sort
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


def _sort_keys(ctx, scores: SecretTensor, negative_label: ArithmeticShares, n: int) -> tuple[BooleanShares, int]:
    """Distinct sort keys (n, W) in tree order and the number of low key bits below the score:
    (score + offset, [row is a negative], row index) compared lexicographically, so that tie
    groups are contiguous with their positives first. Packed into one 64-bit word when the
    score's range allows (half the sort's bytes), else the score in a word of its own.
    Cost: 8 rounds (one bit decomposition of one or two words per row)."""
    ring = ctx.ring
    index_bits = max(1, (n - 1).bit_length())
    low_bits = index_bits + 1
    offset = math.ceil(scores.bound * 2.0**scores.frac_bits) + 1
    index = ring.from_int64(torch.arange(n, dtype=torch.int64))
    low = negative_label.mul_int(1 << index_bits).add_public(ctx.rank, index)
    one_word = 2.0 * offset * 2.0**low_bits < 2.0**63
    shifted = scores.shares.reshape((n,)).add_public(ctx.rank, ring.from_int64(torch.full((n,), offset)))
    if one_word:
        words = boolean.bit_decompose(ctx, shifted.mul_int(1 << low_bits).add(low))
        return words._map(lambda w: sort.tree_order(w).reshape(n, 1)), low_bits
    both = boolean.bit_decompose(ctx, ArithmeticShares.cat([shifted, low], 0))
    keys = both._map(lambda w: torch.stack([sort.tree_order(w[:n]), sort.tree_order(w[n:])], dim=1))
    return keys, 0


def _score_part(keys: BooleanShares, low_bits: int) -> BooleanShares:
    """The key word(s) that hold the score: the first word, its low (label, index) bits cleared."""
    first = keys._map(lambda w: w[:, :1].contiguous())
    if not low_bits:
        return first
    mask = sort.tree_order(torch.tensor([~((1 << low_bits) - 1)], dtype=torch.int64))
    return first.and_public(mask)


def roc_sums(scores: SecretTensor, positive: SecretTensor, negative: SecretTensor, positives: SecretTensor,
             negatives: SecretTensor) -> tuple[SecretTensor, SecretTensor]:
    """(2U, gap), each a secret integer vector of shape (G,), for G populations at once.

    ``scores``: (n,) secret, any fixed point (its encoding sorts as the values do).
    ``positive``/``negative``: (n, G) secret 0/1 integers, row i's membership in population
    g as a positive/negative (both 0 for a row outside it); a row is positive or negative
    in every population it belongs to. ``positives``/``negatives``: (G,) their column sums
    (P, N), e.g. from the banks' own counts. AUC_g = 2U_g / (2 P_g N_g), KS_g = gap_g / (P_g N_g).

    Rows are sorted by (score, negative, row index), so within a tie group the positives
    come first: for a positive row the running count of negatives C_i is the negatives
    below its score and the in-group suffix sum B_i of negatives is all of its group's, and
    2U = sum_i pos_i (2 C_i + B_i) needs only the backward segmented scan.
    Leakage: none (nothing is opened; the sort opens comparisons of distinct keys in a
    secretly shuffled order, which depend on n only).
    Cost: 8 rounds to form the keys, the sort (3 rounds of shuffle + the quicksort: ~170
    rounds and ~435 bytes per row and party for n = 1e5 with a one-word key, which every
    score of under 2^(62 - log2 n) encoded units gets), 8 rounds for the tie groups,
    ceil(log2 n) for the segmented scan (G + 1 ring elements per row and round), 1 for 2U,
    2 for the gaps (3G elements per row), and ceil(log2 2n) x 11 for the tournament (2 n G
    comparisons and selections)."""
    ctx = scores.ctx
    if any(x.frac_bits != 0 for x in (positive, negative, positives, negatives)):
        raise SmpcError("roc_sums: the 0/1 memberships and their counts must be integers (frac_bits=0)")
    n = scores.shape[0] if scores.shape is not None else 0
    g = positive.shape[1] if positive.shape is not None else 0
    rows = float(max(n, 1))
    if scores.shares is None:  # a rank without shares: the results' metadata only
        out = (_integer(ctx, None, 4 * rows * rows), _integer(ctx, None, rows * rows))
        for secret in out:
            secret.bound_known = False
        return out
    ring = ctx.ring
    negative_label = negative.sum(1).shares  # 1 for a negative row (in whichever population)
    keys, low_bits = _sort_keys(ctx, scores, negative_label, n)
    items = cat([positive, negative], dim=1)
    ordered = sort.sort_rows(ctx, keys, [items.shares])
    (same,) = segmented.adjacent_equal(ctx, _score_part(ordered.keys, low_bits))
    cont = segmented.bits_to_arithmetic(ctx, [same], ring).reshape((n,))
    rows_sorted = _integer(ctx, ordered.items[0], 1.0)
    pos, neg = rows_sorted[:, :g], rows_sorted[:, g:]
    _, suffix = segmented.segmented_scans(ctx, neg.shares, cont, forward=False, backward=True)
    run_pos, run_neg = _running(pos, rows), _running(neg, rows)
    weight = _integer(ctx, (2 * run_neg + _integer(ctx, suffix, rows)).shares, 3 * rows)
    twice_u = _integer(ctx, pos.dot(weight, dim=0).shares, 3 * rows * rows)
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
