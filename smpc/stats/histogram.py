"""Histogram with public bin edges (numpy.histogram semantics)."""

from __future__ import annotations

import torch

from smpc.errors import InputError
from smpc.secret import cat
from smpc.stats.columns import Column


def histogram(col: Column, edges, to=None) -> list[int] | None:
    """Counts of non-missing values per bin [e_k, e_k+1), the last bin closed [e_m-1, e_m],
    values outside the edges not counted — as ``numpy.histogram(x, bins=edges)``.

    All n x (m+1) comparisons with the edges run in one batched comparison.
    Leakage: the counts. Cost: 10 rounds for the comparisons + 1 round (exact masked sum) +
    1 reveal; bytes ~ (m+1) comparisons per row.
    """
    edges_t = torch.as_tensor(edges, dtype=torch.float64).reshape(-1)
    if edges_t.numel() < 2 or not bool((edges_t[1:] > edges_t[:-1]).all()):
        raise InputError(f"histogram of '{col.name}': edges must be at least two increasing numbers")
    # no value lies beyond +-(bound + 1/2 unit): an edge out there (inf included) compares the
    # same at +-(bound + 1), which the ring holds, so numpy's open-ended bins work too
    reach = float(col.bound) + 1.0
    edges_t = edges_t.clamp(-reach, reach)
    values = col.values
    rows = values.shape[0] if values.shape is not None else 0
    column = values.reshape(rows, 1) if values.shape is not None else values
    below = column < edges_t.reshape(1, -1)  # [x < e_k] for every edge, one batch
    last_closed = 1 - (column > float(edges_t[-1]))  # [x <= e_m]
    indicators = _cat_last(below, last_closed)
    per_edge = col.present.matmul(indicators, exact=True)  # counts of x < e_k (and <= e_m)
    opened = per_edge.reveal_int(to)
    if opened is None:
        return None
    counts = [int(v) for v in opened.reshape(-1)]
    m = len(edges_t) - 1
    below_counts, at_most_last = counts[: m + 1], counts[m + 1]
    bins = [below_counts[k + 1] - below_counts[k] for k in range(m - 1)]
    bins.append(at_most_last - below_counts[m - 1])
    return bins


def _cat_last(a, b):
    return cat([a, b], dim=1)
