"""How well a score separates good from bad loans across the consortium: AUC, KS and Gini."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

import numpy as np
import pandas as pd

from smpc.analyses import disclosure
from smpc.analyses.common import (
    MAX_ROWS_PER_BANK,
    amount_units,
    count_view,
    default_flags,
    inputs_checked,
)
from smpc.analyses.disclosure import RULE_PARAMS
from smpc.analyses.registry import Param, register, report_progress
from smpc.errors import InputError
from smpc.fixedpoint import MAX_DECIMALS
from smpc.secret import share_each, stack
from smpc.stats.roc import roc_sums
from smpc.stats.rows import share_rows

OVERALL = "all"
"""The one population's key without ``by``."""


# ----- each bank's own checks and rows ------------------------------------------------------
def outcome_flags(table: pd.DataFrame, party: str, label: str, positive: str | None,
                  negative: str | None) -> np.ndarray:
    """0/1 flags of ``label`` (1 = ``positive``). With ``positive`` every other value must be
    ``negative`` where declared, else one and the same value at this bank: a third value (a
    typo, 'unknown') is refused naming the row, never counted as a negative."""
    flags = default_flags(table, party, label, positive)
    if positive is None:
        return flags
    text = table[label].astype(str).to_numpy()
    others = text[flags == 0]
    if negative is not None:
        bad = np.flatnonzero((flags == 0) & (text != negative))
    else:
        bad = np.flatnonzero((flags == 0) & (text != others[0])) if len(others) else np.array([], dtype=np.int64)
    if len(bad):
        expected = f"'{positive}' or '{negative}'" if negative is not None else f"'{positive}' or one other label"
        raise InputError(f"{party}, column '{label}': row {int(bad[0]) + 1} is neither {expected} "
                         "(a label takes the positive value and its complement only)")
    return flags


def _group_keys(table: pd.DataFrame, party: str, by: str) -> np.ndarray:
    if by not in table.columns:
        raise InputError(f"{party}: column '{by}' is missing from its data")
    col = table[by]
    if col.isna().any():
        row = int(np.flatnonzero(col.isna().to_numpy())[0])
        raise InputError(f"{party}, column '{by}': row {row + 1} has no group key")
    return col.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)).to_numpy()


def _local(table, party, *, score, label, positive, negative, by, groups, score_decimals, score_bound):
    """(score units, flags, group keys or None) of one bank, every value checked."""
    if len(table) > MAX_ROWS_PER_BANK:
        raise InputError(f"{party}: {len(table)} rows exceed the {MAX_ROWS_PER_BANK} rows a bank may contribute")
    units = amount_units(table, party, score, score_decimals, score_bound)
    flags = outcome_flags(table, party, label, positive, negative)
    keys = None
    if by is not None:
        keys = _group_keys(table, party, by)
        if groups is not None:
            outside = np.flatnonzero(~np.isin(keys, np.asarray(list(groups), dtype=object)))
            if len(outside):
                raise InputError(f"{party}, column '{by}': row {outside[0] + 1} has a group key not in the "
                                 "declared groups")
    return units, flags, keys


def _membership(flags: np.ndarray, keys: np.ndarray | None, populations: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) 0/1 matrices (rows x populations)."""
    member = np.ones((len(flags), 1), dtype=np.int64) if keys is None else (
        keys[:, None] == np.asarray(populations, dtype=object)[None, :]).astype(np.int64)
    return member * flags[:, None], member * (1 - flags[:, None])


def _check_params(score_decimals: int, score_bound: float) -> None:
    if not 0 <= score_decimals <= MAX_DECIMALS:
        raise InputError(f"auc_ks: parameter 'score_decimals' must be in 0..{MAX_DECIMALS}, got {score_decimals}")
    if not score_bound > 0:
        raise InputError(f"auc_ks: parameter 'score_bound' must be positive, got {score_bound:g}")


# ----- results ----------------------------------------------------------------------------
def _cell(rows: int, positives: int, twice_u: int, gap: int) -> dict:
    negatives = rows - positives
    out = {"rows": int(rows), "positives": int(positives), "negatives": int(negatives)}
    if positives == 0 or negatives == 0:
        return {**out, "auc": None, "ks": None, "gini": None,
                "note": "undefined: the population holds only one class"}
    auc = Fraction(int(twice_u), 2 * positives * negatives)
    return {**out, "auc": float(auc), "ks": float(Fraction(int(gap), positives * negatives)),
            "gini": float(2 * auc - 1)}


def _result(score, by, populations, cells, min_cell_size, rules) -> dict:
    """``cells``: per population (rows, positives, 2U, gap), rows < 0 where suppressed."""
    shown = {}
    for key, (rows, positives, twice_u, gap) in zip(populations, cells, strict=True):
        shown[key] = {"suppressed": True} if rows < 0 else _cell(rows, positives, twice_u, gap)
    meta = {"score": score, "min_cell_size": min_cell_size, **rules.metadata()}
    if by is None:
        return {**shown[OVERALL], **meta}
    return {"by": by, "groups": shown, **meta}


def _plain_sums(units: np.ndarray, positive: np.ndarray) -> tuple[int, int, int, int]:
    """(rows, positives, 2U, gap) in exact integers from sorted scores."""
    order = np.argsort(units, kind="stable")
    u, y = units[order], positive[order].astype(np.int64)
    rows, p = len(u), int(y.sum())
    n = rows - p
    if rows == 0:
        return 0, 0, 0, 0
    ends = np.flatnonzero(np.append(u[1:] != u[:-1], True))  # last row of each distinct score
    pos_at = np.cumsum(y)[ends]
    neg_at = np.cumsum(1 - y)[ends]
    pos_in = np.diff(np.concatenate([[0], pos_at]))
    neg_in = np.diff(np.concatenate([[0], neg_at]))
    neg_below = neg_at - neg_in
    twice_u = int(sum(int(a) * (2 * int(b) + int(c)) for a, b, c in zip(pos_in, neg_below, neg_in, strict=True)))
    gap = max(abs(int(a) * n - int(b) * p) for a, b in zip(pos_at, neg_at, strict=True))
    return rows, p, twice_u, gap


def _populations(by, groups, keys_seen) -> list[str]:
    if by is None:
        return [OVERALL]
    return list(groups) if groups is not None else sorted(keys_seen)


def auc_ks_plain(tables: Mapping[str, pd.DataFrame], *, score, label, positive=None, negative=None, by=None,
                 groups=None, score_decimals=6, score_bound=1e9, min_cell_size=1, min_contributors=None,
                 max_dominance=100.0) -> dict:
    _check_params(score_decimals, score_bound)
    rules = disclosure.resolve("auc_ks", len(tables), min_cell_size, min_contributors, max_dominance)
    local = {bank: _local(t, bank, score=score, label=label, positive=positive, negative=negative, by=by,
                          groups=groups, score_decimals=score_decimals, score_bound=score_bound)
             for bank, t in tables.items()}
    populations = _populations(by, groups, set().union(*(set(v[2]) for v in local.values())) if by else set())
    per_bank = []
    pooled_units, pooled_pos, pooled_neg = [], [], []
    for units, flags, keys in local.values():
        pos, neg = _membership(flags, keys, populations)
        per_bank.append([int(v) for v in (pos + neg).sum(axis=0)])
        pooled_units.append(units)
        pooled_pos.append(pos)
        pooled_neg.append(neg)
    units = np.concatenate(pooled_units)
    pos, neg = np.concatenate(pooled_pos), np.concatenate(pooled_neg)
    suppressed = disclosure.suppressed_plain(rules, per_bank)
    cells = []
    for g in range(len(populations)):
        inside = (pos[:, g] + neg[:, g]) > 0
        sums = _plain_sums(units[inside], pos[inside, g])
        cells.append((-1, 0, 0, 0) if suppressed[g] else sums)
    return _result(score, by, populations, cells, min_cell_size, rules)


def _auc_ks_check(table, party, *, score, label, positive=None, negative=None, by=None, groups=None,
                  score_decimals=6, score_bound=1e9, min_cell_size=1, min_contributors=None,
                  max_dominance=100.0) -> None:
    _check_params(score_decimals, score_bound)
    disclosure.resolve("auc_ks", 1, min_cell_size, min_contributors, max_dominance)
    _local(table, party, score=score, label=label, positive=positive, negative=negative, by=by, groups=groups,
           score_decimals=score_decimals, score_bound=score_bound)


_PARAMS = [
    Param("score", "column", required=True,
          description="numeric score every bank holds (a bureau score, the bank's PD); higher = more likely positive"),
    Param("label", "column", required=True, description="loan outcome: 0/1 flags, or labels with `positive`"),
    Param("positive", "str", description="the label value that marks a default (e.g. 'bad'); omit for 0/1 flags"),
    Param("negative", "str", description="the complement label (e.g. 'good'); any third value is refused"),
    Param("by", "column", description="optional categorical column: one AUC/KS per group"),
    Param("groups", "strs", owner="categories", owner_column="by",
          description="declared list of group keys; if omitted each bank discloses its set of keys"),
    Param("score_decimals", "int", default=6, owner="decimals", owner_column="score",
          description="decimal places of the scores; they are shared exactly as integers of 10^-decimals"),
    Param("score_bound", "float", default=1e9, owner="bound", owner_column="score",
          description="public largest |score|"),
    Param("min_cell_size", "int", default=1, description="suppress populations with fewer (but more than zero) loans"),
    *RULE_PARAMS,
]


@register("auc_ks", params=_PARAMS, plaintext=auc_ks_plain, check=_auc_ks_check, ring=64)
def auc_ks(ctx, table, owners, *, score, label, positive=None, negative=None, by=None, groups=None,
           score_decimals=6, score_bound=1e9, min_cell_size=1, min_contributors=None,
           max_dominance=100.0) -> dict | None:
    """Consortium AUC (Mann-Whitney, ties counted 1/2), KS (max |TPR - FPR|) and Gini (2 AUC - 1) of a score.

    Every bank checks its score (numeric, within ``score_bound``, at most ``score_decimals``
    decimals), its labels (the positive value and one complement only) and group keys first,
    refusing with the bank, column and row. Each bank then shares its rows (score as exact
    integer units, and per population whether the row is a positive or a negative) and its
    per-population counts. On shares the pooled rows are sorted by score
    (``smpc.stats.roc``: a secret shuffle and a quicksort on distinct keys), ties are
    grouped, and per population two exact integers come out: twice the Mann-Whitney U and
    max |TPR - FPR| P N over the thresholds between distinct scores. The disclosure rules
    (``smpc.analyses.disclosure``: min_cell_size, min_contributors, max_dominance on the
    banks' counts) are decided on shares; a suppressed population opens as a sentinel.
    Rows, positives, 2U and the gap open to the job's recipients only; AUC, KS and Gini are
    computed from those exact integers (float64 of the exact rationals).
    Leakage: every bank's row count (to every party: the shapes of the shared rows); to the
    recipients, per released population its rows, positives, AUC and KS, and which
    populations are suppressed. No score, rank or label is opened. The group keys: the
    declared ``groups``, or each bank's own set of keys (to every party).
    Cost: 4 rounds of input (counts, rows, per-population counts; 2 more without declared
    groups), the secure sort of the n pooled rows (~8 + 3 + 190 rounds; ~870 bytes per row
    and party at n = 1e5), 8 rounds for the tie groups, ceil(log2 n) for the segmented
    scan, 3 for the sums and gaps, ceil(log2 2n) x 11 for the largest gap, then the
    disclosure rules (11 + ceil(log2 L)) and 2 to open. Per row and party, about 1 + 2G
    ring elements per scan round and 2G comparisons in the tournament for G populations.
    Error: none: 2U and the gap are exact integers; AUC, KS and Gini are the nearest float64.
    """
    rules = disclosure.resolve("auc_ks", len(owners), min_cell_size, min_contributors, max_dominance)
    _check_params(score_decimals, score_bound)
    party = ctx.name_of(ctx.rank)
    mine = None
    if table is not None and ctx.rank in owners:
        report_progress(ctx, 0.02, "checking this bank's scores and labels")
        mine = _local(table, party, score=score, label=label, positive=positive, negative=negative, by=by,
                      groups=groups, score_decimals=score_decimals, score_bound=score_bound)
    keys_seen: set = set()
    if by is not None and groups is None:
        inputs_checked(ctx, owners)
        published = ctx.publish_each(None if mine is None else sorted(set(mine[2])), owners)
        keys_seen = set().union(*map(set, published))
    populations = _populations(by, groups, keys_seen)
    g = len(populations)
    rows_mine = counts_mine = None
    if mine is not None:
        units, flags, keys = mine
        pos, neg = _membership(flags, keys, populations)
        rows_mine = np.column_stack([units, pos, neg]).astype(np.float64)
        counts_mine = [int(v) for pair in zip((pos + neg).sum(axis=0), pos.sum(axis=0), strict=True) for v in pair]
    unit_bound = float(score_bound * 10**score_decimals)
    report_progress(ctx, 0.05, "sharing every bank's rows")
    rows, _ = share_rows(ctx, owners, rows_mine, width=1 + 2 * g, bound=max(unit_bound, 1.0), frac_bits=0,
                         name=f"columns '{score}' and '{label}'")
    parts = share_each(ctx, counts_mine, owners, shape=(2 * g,), bound=float(MAX_ROWS_PER_BANK), frac_bits=0,
                           name="population counts")
    if not ctx.is_compute and ctx.rank not in ctx.result_ranks:
        return None
    totals = sum(parts[1:], parts[0]).reshape(g, 2)
    loans = count_view(totals[:, 0], owners)
    positives = count_view(totals[:, 1], owners)
    report_progress(ctx, 0.1, "sorting the pooled scores on shares")
    twice_u, gap = roc_sums(rows[:, 0], rows[:, 1 : 1 + g], rows[:, 1 + g :], positives, loans - positives)
    report_progress(ctx, 0.9, "checking the disclosure rules on shares")
    per_bank = [p.reshape(g, 2)[:, 0] for p in parts]
    released = disclosure.released_on_shares(rules, per_bank, MAX_ROWS_PER_BANK, total=loans)
    values = stack([loans, positives, twice_u, gap], dim=1)
    opened = disclosure.open_cells(values, released, g, [-1, 0, 0, 0], ctx.result_ranks)
    if opened is None:
        return None
    report_progress(ctx, 1.0, "done")
    cells = [tuple(int(v) for v in row) for row in opened]
    return _result(score, by, populations, cells, min_cell_size, rules)


__all__ = ["auc_ks", "auc_ks_plain", "outcome_flags"]
