"""Statistical disclosure control for released cells, decided on shares.

A cell (a column of ``describe``, a bin, a group, a pair of columns, the one total of
``default_rate_overall``) is released only when the rules below hold; otherwise it is
reported as suppressed, and nothing of it is opened. Every rule is evaluated inside MPC on
the per-bank aggregates that each bank shares anyway, and only a 0/1 release flag per cell
results, which never leaves the shares: the analyses open ``where(flag, value, sentinel)``
to the result's recipients, so a suppressed cell opens as a public sentinel (a count of -1).

- ``min_cell_size`` m: without the contributor rule, a cell with 1..m-1 records is
  suppressed (an empty cell is released as empty).
- ``min_contributors`` k (default min(3, banks)): at least k banks each hold at least
  max(1, m) records of the cell. With k >= 1 an empty cell is suppressed too, and a cell
  whose records come from k - 1 banks or fewer releases nothing: with k = 3, a zero-row
  bank makes every cell of a three-bank job suppressed, and no two banks can subtract their
  own aggregates from a released one to learn the third's (the n-1 disclosure).
- ``max_dominance`` p (percent, 100 = off): a cell in which one bank's contribution exceeds
  p % of the cell's total is suppressed; contributions are the magnitudes the cell releases
  (sums of |amount| for amounts, record counts for pure counts).

The plaintext twin ``suppressed_plain`` applies the same rules to the same integers, so
``--check`` and tests agree with the secure run cell by cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from smpc.analyses.registry import Param
from smpc.errors import InputError, RangeError
from smpc.secret import SecretTensor, cat, where

DEFAULT_MIN_CONTRIBUTORS = 3
BASIS = 10_000
"""max_dominance is handled in basis points (1/100 of a percent): exact integer comparisons."""

RULE_PARAMS = [
    Param("min_contributors", "int",
          description="release a cell only if at least this many banks each hold min_cell_size (at least 1) of "
                      "its records; default min(3, number of banks); 0 turns the rule off"),
    Param("max_dominance", "float", default=100.0,
          description="suppress a cell in which one bank contributes more than this percent of the total "
                      "(0 < p <= 100, at most 2 decimals; 100 = off)"),
]


@dataclass(frozen=True)
class Rules:
    """The disclosure rules of one job, resolved for its number of banks."""

    min_cell_size: int
    min_contributors: int
    max_dominance: float
    banks: int

    @property
    def contributor_rows(self) -> int:
        return max(1, self.min_cell_size)

    @property
    def dominance_bp(self) -> int | None:
        """p in basis points, or None when the rule is off."""
        bp = round(self.max_dominance * 100)
        return None if bp >= BASIS else bp

    @property
    def active(self) -> bool:
        return self.min_contributors > 0 or self.min_cell_size > 1 or self.dominance_bp is not None

    def metadata(self) -> dict:
        """What a result states about the rules it was released under."""
        return {"min_contributors": self.min_contributors, "max_dominance": self.max_dominance}


def resolve(analysis: str, banks: int, min_cell_size: int = 1, min_contributors: int | None = None,
            max_dominance: float | None = 100.0) -> Rules:
    """The job's rules; ``InputError`` naming the parameter for values outside their range.
    The defaults depend only on the public number of banks."""
    if min_cell_size < 0:
        raise InputError(f"{analysis}: parameter 'min_cell_size' must be >= 0, got {min_cell_size}")
    k = min(DEFAULT_MIN_CONTRIBUTORS, banks) if min_contributors is None else int(min_contributors)
    if k < 0:
        raise InputError(f"{analysis}: parameter 'min_contributors' must be >= 0, got {k}")
    p = 100.0 if max_dominance is None else float(max_dominance)
    if not (0 < p <= 100) or abs(p * 100 - round(p * 100)) > 1e-9 * max(1.0, p * 100):
        raise InputError(f"{analysis}: parameter 'max_dominance' must be a percent in (0, 100] with at most "
                         f"2 decimals, got {max_dominance!r}")
    return Rules(int(min_cell_size), k, p, banks)


# ----- the rules in the clear (plaintext twins) ---------------------------------------------
def suppressed_plain(rules: Rules, counts: Sequence[Sequence[int]],
                     measures: Sequence[Sequence[Sequence[int]]] | None = None) -> list[bool]:
    """Per cell, whether it is suppressed. ``counts[b][c]``: bank b's records in cell c;
    ``measures[b][c]``: bank b's contributions to cell c that the dominance rule weighs
    (magnitudes, one or more per cell; None: the counts)."""
    cells = len(counts[0]) if counts else 0
    out = []
    for c in range(cells):
        per_bank = [int(n[c]) for n in counts]
        total = sum(per_bank)
        if rules.min_contributors > 0:
            hidden = sum(n >= rules.contributor_rows for n in per_bank) < rules.min_contributors
        else:
            hidden = 0 < total < rules.min_cell_size
        bp = rules.dominance_bp
        if bp is not None:
            weights = [[int(v) for v in m[c]] for m in measures] if measures is not None else [[n] for n in per_bank]
            for j in range(len(weights[0]) if weights else 0):
                column = [w[j] for w in weights]
                hidden = hidden or any(BASIS * v > bp * sum(column) for v in column)
        out.append(bool(hidden))
    return out


# ----- the rules on shares ------------------------------------------------------------------
@dataclass
class Measure:
    """Per bank, a secret vector of magnitudes (>= 0, ``cells * per_cell`` entries, cell-major)
    that the dominance rule weighs, its public bound per bank, and, where sums of the bound
    exceed what a 64-bit comparison decides, the same magnitudes shifted right by ``shift``
    bits (shared exactly by the bank: ``high_parts``)."""

    values: list[SecretTensor]
    bound: float
    per_cell: int = 1
    high_parts: list[SecretTensor] | None = None
    shift: int = 0


def dominance_shift(rules: Rules, bound: float) -> int:
    """The right shift whose high parts decide dominance for magnitudes up to ``bound`` per
    bank (0: the magnitudes themselves fit); ``RangeError`` if none does."""
    bp = rules.dominance_bp
    if bp is None:
        return 0
    span = bp * rules.banks + BASIS
    if span * bound < 2.0**62:
        return 0
    # the high parts' comparison needs span * bound / 2^s < 2^62, the exact fallback 2 span 2^s < 2^62
    s = math.ceil(math.log2(span * bound)) - 61
    if not 2 * span * 2.0**s < 2.0**62:
        raise RangeError(f"max_dominance: magnitudes up to {bound:.4g} per bank over {rules.banks} banks are too "
                         "large to compare exactly; declare a tighter bound")
    return s


def _poly_product(polys: list[list[SecretTensor]]) -> list[SecretTensor]:
    """The product of polynomials with secret coefficient vectors, by a balanced tree: one
    multiplication round per level, every coefficient product of a level in one batch."""
    while len(polys) > 1:
        pairs = [(polys[i], polys[i + 1]) for i in range(0, len(polys) - 1, 2)]
        left, right, where_to = [], [], []
        for p, q in pairs:
            for i in range(len(p)):
                for j in range(len(q)):
                    left.append(p[i])
                    right.append(q[j])
                    where_to.append(i + j)
        width = left[0].shape[0]
        products = cat(left) * cat(right)
        merged = []
        offset = 0
        for p, q in pairs:
            coeffs: list[SecretTensor | None] = [None] * (len(p) + len(q) - 1)
            for _ in range(len(p) * len(q)):
                term = products[offset * width : (offset + 1) * width]
                t = where_to[offset]
                coeffs[t] = term if coeffs[t] is None else coeffs[t] + term
                offset += 1
            merged.append(coeffs)
        if len(polys) % 2:
            merged.append(polys[-1])
        polys = merged
    return polys[0]


def released_on_shares(rules: Rules, counts: list[SecretTensor], count_bound: float,
                       total: SecretTensor | None = None, measure: Measure | None = None) -> SecretTensor | None:
    """Per cell a secret 0/1: 1 where every rule holds. ``counts``: per bank its records per
    cell (bound ``count_bound`` each); ``total``: their sum (for the min_cell_size rule
    without contributors); ``measure``: what dominance weighs (default: the counts).
    None when no rule applies (every cell is released).

    Every comparison of every rule runs in one batch (10 rounds); a bank counts as a
    contributor when its count is at least max(1, min_cell_size); "at least k of B banks"
    is an integer polynomial in those bits (inclusion-exclusion over the elementary
    symmetric polynomials e_j of the bits: [C >= k] = sum_(j >= k) (-1)^(j-k) C(j-1, k-1) e_j),
    computed with the dominance factors by one product tree: ceil(log2 leaves) rounds, where
    the leaves are the banks' (1 + a_b z) and each bank's (1 - dominated); dominance of
    magnitudes too large for one 64-bit comparison costs one round more.
    Leakage: none (nothing is opened)."""
    if not rules.active:
        return None
    ctx = counts[0].ctx
    if not ctx.is_compute:  # a rank without shares follows along to receive the opened cells
        return SecretTensor(ctx, None, 0, 1.0)
    counts = [_fits64(n, count_bound) for n in counts]
    cells = counts[0].shape[0] if counts[0].shape is not None else 0
    banks = len(counts)
    k = rules.min_contributors
    if k > banks:  # public: fewer banks than the rule needs, nothing is released
        return SecretTensor.from_public(ctx, torch.zeros(cells, dtype=torch.float64), frac_bits=0)
    tests: list[tuple[SecretTensor, float]] = []  # (x, c): the comparison x < c, one batch
    if k > 0:
        tests += [(n, float(rules.contributor_rows)) for n in counts]
    elif rules.min_cell_size > 1:
        tests += [(total, float(rules.min_cell_size)), (total, 1.0)]
    bp = rules.dominance_bp
    direct = split = None
    if bp is not None:
        measure = measure or Measure(counts, count_bound)
        direct, split = _dominance_tests(rules, measure)
        for x in direct + split:
            tests.append((x, 0.0))
    limits = torch.cat([torch.full((x.shape[0],), c, dtype=torch.float64) for x, c in tests])
    below = cat([x for x, _ in tests]) < limits
    pieces = []
    offset = 0
    for x, _ in tests:
        pieces.append(below[offset : offset + x.shape[0]])
        offset += x.shape[0]
    leaves: list[list[SecretTensor]] = []
    if k > 0:
        leaves += [[_one(ctx, cells), 1 - pieces[b]] for b in range(banks)]
        pieces = pieces[banks:]
    elif rules.min_cell_size > 1:
        small = pieces[0] - pieces[1]  # [0 < n < m] = [n < m] - [n < 1] for n >= 0
        leaves.append([1 - small])
        pieces = pieces[2:]
    if bp is not None:
        leaves += _dominance_leaves(pieces, measure, cells, len(direct), len(split))
    product = _poly_product(leaves)
    if k == 0:
        flag = product[0]
    else:
        flag = None
        for j in range(k, len(product)):
            term = product[j] * ((-1) ** (j - k) * math.comb(j - 1, k - 1))
            flag = term if flag is None else flag + term
    return SecretTensor(ctx, flag.shares, 0, 1.0)


def _one(ctx, cells: int) -> SecretTensor:
    return SecretTensor.from_public(ctx, torch.ones(cells, dtype=torch.float64), frac_bits=0)


def _dominance_tests(rules: Rules, m: Measure) -> tuple[list[SecretTensor], list[SecretTensor]]:
    """The secrets whose sign decides dominance: D_b = p T - 10^4 A_b < 0 (p in basis points,
    T the total), directly where it fits 64 bits; otherwise, with A_b = 2^s h_b + l_b,
    H_b = p sum(h) - 10^4 h_b and M = p banks + 10^4: D_b < 0 exactly when H_b <= -M, or
    |H_b| < M and D_b < 0 (then |D_b| < 2 M 2^s fits 64 bits, so its low 64 bits decide).
    Returns (direct tests, split tests: per bank H_b + M - 1, H_b - M and D_b, each < 0)."""
    bp = rules.dominance_bp
    banks = len(m.values)
    total = sum(m.values[1:], m.values[0])
    diffs = [total * bp - a * BASIS for a in m.values]
    if m.high_parts is None:
        if dominance_shift(rules, m.bound):
            raise RangeError("max_dominance: magnitudes this large need their high parts shared (Measure.high_parts)")
        return [_fits64(d, (bp * banks + BASIS) * m.bound) for d in diffs], []
    span = bp * banks + BASIS
    high_total = sum(m.high_parts[1:], m.high_parts[0])
    highs = [high_total * bp - h * BASIS for h in m.high_parts]
    tests = []
    for h, d in zip(highs, diffs, strict=True):
        h64 = _fits64(h, span * m.bound / 2.0**m.shift + 1)
        tests += [h64 + (span - 1), h64 - span, _fits64(d, 2.0**62)]  # H <= -M, H < M, D < 0
    return [], tests


def _fits64(x: SecretTensor, bound: float) -> SecretTensor:
    """``x`` under the public bound its construction gives it (sums of squares of the
    operands' bounds overstate it), so that a 64-bit comparison accepts it."""
    return SecretTensor(x.ctx, x.shares, x.frac_bits, float(bound))


def _dominance_leaves(pieces: list[SecretTensor], m: Measure, cells: int, n_direct: int,
                      n_split: int) -> list[list[SecretTensor]]:
    """Degree-0 leaves (1 - dominated) per bank, each over all cells (a cell is dominated
    when any of its ``per_cell`` magnitudes is)."""
    if n_direct:
        dominated = pieces[:n_direct]
    else:
        c1 = pieces[0:n_split:3]
        c2 = pieces[1:n_split:3]
        c3 = pieces[2:n_split:3]
        between = [b - a for a, b in zip(c1, c2, strict=True)]
        products = cat(between) * cat(c3)
        width = c1[0].shape[0]
        dominated = [a + products[i * width : (i + 1) * width] for i, a in enumerate(c1)]
    leaves = []
    for d in dominated:
        keep = 1 - d
        if m.per_cell > 1:  # a cell survives only if none of its magnitudes dominates
            parts = [keep[j :: m.per_cell] for j in range(m.per_cell)]
            leaves += [[p] for p in parts]
        else:
            leaves.append([keep])
    return leaves


def open_cells(values: SecretTensor, flag: SecretTensor | None, cells: int, sentinel: Sequence[int], to):
    """Open ``values`` (``cells`` rows of ``len(sentinel)`` integers, cell-major) to the ranks
    in ``to``; where ``flag`` is 0 the public ``sentinel`` row is opened instead, so a
    suppressed cell's values never leave the shares. Returns an object array of Python ints
    (cells x len(sentinel)) on the recipients, None elsewhere.
    Cost: 1 round for the selection (none without a flag) and 1 to open."""
    width = len(sentinel)
    values = values.reshape(cells, width)
    if flag is not None:
        ctx = values.ctx
        index = torch.arange(cells).repeat_interleave(width)
        cond = flag if flag.shares is None else flag[index]
        fallback = torch.tensor([list(sentinel)] * cells, dtype=torch.float64).reshape(-1)
        values = where(cond, values.reshape(-1), SecretTensor.from_public(ctx, fallback, frac_bits=0))
    opened = values.reveal_int(to)
    return None if opened is None else opened.reshape(cells, width)
