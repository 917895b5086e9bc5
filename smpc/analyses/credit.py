"""Credit analyses: consortium-wide default statistics over the banks' loan books."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

import numpy as np
import pandas as pd

import smpc
from smpc.analyses.registry import Param, register, report_progress
from smpc.errors import InputError, RangeError
from smpc.sharing import N_COMPUTE

COMPUTE_RANKS = list(range(N_COMPUTE))


# ----- input checks (shared by the secure function and its plaintext twin) ----------------
# A refusal travels to the coordinator, the other banks and the requester, so messages name
# the bank, column, row and problem but never the value in the cell.
def _column(table: pd.DataFrame, party: str, column: str) -> pd.Series:
    if column not in table.columns:
        have = ", ".join(map(str, table.columns[:20]))
        raise InputError(f"{party}: column '{column}' is missing from its data (it has: {have})")
    return table[column]


def default_flags(table: pd.DataFrame, party: str, label: str, positive: str | None) -> np.ndarray:
    """0/1 default flags (int64) of one bank's ``label`` column; ``InputError`` naming the
    party, column, row and problem for anything that is not a clean flag or label."""
    col = _column(table, party, label)
    missing = col.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise InputError(f"{party}, column '{label}': row {row + 1} is empty")
    if positive is not None:
        return (col.astype(str) == positive).to_numpy(dtype=np.int64)
    numeric = pd.to_numeric(col, errors="coerce")
    bad = numeric.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{party}, column '{label}': row {row + 1} is not numeric; "
            "a 0/1 flag column is expected (or pass positive=<label> for a labelled column)"
        )
    values = numeric.to_numpy(dtype=np.float64)
    not_flag = (values != 0) & (values != 1)
    if not_flag.any():
        row = int(np.flatnonzero(not_flag)[0])
        raise InputError(f"{party}, column '{label}': row {row + 1} is not 0 or 1")
    return values.astype(np.int64)


MAX_DECIMALS = 6
EXACT_UNITS = 2**53
"""Amount units below this convert between float64 and integers exactly."""


def check_amount_scale(column: str, decimals: int, bound: float) -> None:
    """The public scale of an amount column: 0..6 decimals, and a bound whose units stay
    below 2^53 so that every amount converts to an integer exactly (beyond, int64 wraps or
    float64 drops cents without a word)."""
    if not 0 <= decimals <= MAX_DECIMALS:
        raise InputError(f"column '{column}': decimals must be in 0..{MAX_DECIMALS}, got {decimals}")
    if not 0 < bound * 10.0**decimals < EXACT_UNITS:
        raise RangeError(
            f"column '{column}': a bound of {bound:g} at {decimals} decimals is {bound * 10.0**decimals:.4g} units; "
            f"it must be positive and below 2^53 ({EXACT_UNITS:.4g}) so amounts convert exactly: declare a tighter "
            "bound or fewer decimals"
        )


def amount_units(table: pd.DataFrame, party: str, column: str, decimals: int, bound: float) -> np.ndarray:
    """Amounts as exact integers of 10^-decimals (cents for 2); ``InputError`` for empty,
    non-numeric or over-precise values, ``RangeError`` beyond ``bound``.

    A value is over-precise unless it is the float nearest some k / 10^decimals: then
    k / 10^decimals, correctly rounded, gives the value back (exact for k < 2^53), so
    1234567.891 at 2 decimals is refused however large the amount, not rounded to .89."""
    check_amount_scale(column, decimals, bound)
    col = _column(table, party, column)
    numeric = pd.to_numeric(col, errors="coerce")
    bad = numeric.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = "is empty" if pd.isna(col.iloc[row]) else "is not numeric"
        raise InputError(f"{party}, column '{column}': row {row + 1} {what}")
    values = numeric.to_numpy(dtype=np.float64)
    over = np.abs(values) > bound
    if over.any():
        row = int(np.flatnonzero(over)[0])
        raise RangeError(f"{party}, column '{column}': row {row + 1} exceeds the declared bound {bound:g}")
    units = np.round(values * 10.0**decimals)
    off = units / 10.0**decimals != values
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise InputError(
            f"{party}, column '{column}': row {row + 1} has more than {decimals} decimal places "
            "(declare more decimals)"
        )
    return units.astype(np.int64)


MAX_ROWS_PER_BANK = 2**30
"""Public cap on one bank's rows; it bounds the shared aggregates (sums of squares too)."""


def bounded_view(x: smpc.SecretTensor, bound: float) -> smpc.SecretTensor:
    """``x`` under a tighter public bound that holds by construction: values the owners
    computed from their checked rows (a count, a 0/1 flag, one value), shared in one batch
    with larger aggregates. Comparisons need bounds under 2^63, which sums of squares exceed."""
    return smpc.SecretTensor(x.ctx, x.shares, x.frac_bits, float(bound))


def count_view(x: smpc.SecretTensor, owners) -> smpc.SecretTensor:
    """Record counts summed over ``owners`` (every bank checked its row count against
    MAX_ROWS_PER_BANK before sharing), with the bound of such a count."""
    return bounded_view(x, len(owners) * MAX_ROWS_PER_BANK)


def _local_totals(table: pd.DataFrame, party: str, label: str, positive: str | None, amount: str | None,
                  decimals: int, bound: float) -> list[int]:
    """One bank's exact aggregates: [rows, defaults] (+ [sum of amount units])."""
    flags = default_flags(table, party, label, positive)
    if len(flags) > MAX_ROWS_PER_BANK:
        raise InputError(f"{party}: {len(flags)} rows exceed the {MAX_ROWS_PER_BANK} rows a bank may contribute")
    totals = [len(flags), int(flags.sum())]
    if amount:
        totals.append(sum(int(v) for v in amount_units(table, party, amount, decimals, bound)))
    return totals


def _result(rows: int, defaults: int, amount_total: int | None, decimals: int) -> dict:
    out = {
        "rows": int(rows),
        "suppressed": False,
        "defaults": int(defaults),
        "default_rate": float(Fraction(int(defaults), int(rows))) if rows else float("nan"),
    }
    if amount_total is not None:
        scale = 10**decimals
        out["amount_sum"] = float(Fraction(int(amount_total), scale))
        out["mean_amount"] = float(Fraction(int(amount_total), scale * int(rows))) if rows else float("nan")
    return out


def _suppressed(min_cell_size: int) -> dict:
    return {"suppressed": True, "min_cell_size": int(min_cell_size)}


def _overall_plain(tables: Mapping[str, pd.DataFrame], *, label: str, positive: str | None = None,
                   amount: str | None = None, amount_decimals: int = 2, amount_bound: float = 1e12,
                   min_cell_size: int = 1) -> dict:
    totals = [0, 0, 0]
    for bank, table in tables.items():
        for i, v in enumerate(_local_totals(table, bank, label, positive, amount, amount_decimals, amount_bound)):
            totals[i] += v
    if totals[0] < min_cell_size:
        return _suppressed(min_cell_size)
    return _result(totals[0], totals[1], totals[2] if amount else None, amount_decimals)


def _overall_check(table: pd.DataFrame, party: str, *, label: str, positive: str | None = None,
                   amount: str | None = None, amount_decimals: int = 2, amount_bound: float = 1e12,
                   min_cell_size: int = 1) -> None:
    default_flags(table, party, label, positive)
    if amount:
        amount_units(table, party, amount, amount_decimals, amount_bound)


_PARAMS = [
    Param("label", "column", required=True,
          description="loan outcome column: 0/1 flags, or labels together with `positive`"),
    Param("positive", "str", description="the label value that marks a default (e.g. 'bad'); omit for 0/1 flags"),
    Param("amount", "column",
          description="optional amount column (e.g. credit_amount) whose sum and mean are revealed"),
    Param("amount_decimals", "int", default=2, owner="decimals", owner_column="amount",
          description="decimal places of the amounts; they are shared exactly as integers of 10^-decimals"),
    Param("amount_bound", "float", default=1e12, owner="bound", owner_column="amount",
          description="public largest |amount| of any single loan"),
    Param("min_cell_size", "int", default=1, description="reveal nothing (but that fact) below this many loans"),
]


@register("default_rate_overall", params=_PARAMS, plaintext=_overall_plain, check=_overall_check)
def default_rate_overall(ctx, table, owners, *, label, positive=None, amount=None, amount_decimals=2,
                         amount_bound=1e12, min_cell_size=1) -> dict | None:
    """Consortium-wide loan count, number of defaults and default rate, and optionally the total and mean amount.

    Every bank checks its own columns (missing column, empty or non-numeric values, labels,
    amounts beyond ``amount_bound`` or with more decimals than ``amount_decimals`` raise
    ``InputError``/``RangeError`` naming the bank, column and row; nothing is revealed), then
    aggregates its rows locally and exactly (row count, defaults, sum of amounts in integer
    units of 10^-amount_decimals). Only those 2-3 integers are secret-shared (ring128, integer
    mode), summed on shares and revealed to the three compute parties; rate and mean are
    computed from the exact totals. With ``min_cell_size`` > 1 the parties first compare the
    total count with it on shares and reveal only whether it is too small.
    Leakage: the total row count, the number of defaults and, with ``amount``, the sum of the
    amounts (rate and mean follow from them); no bank's own count or sums. Below
    ``min_cell_size`` loans in total: only that fact.
    Cost: one round in which every bank shares its 2-3 ring elements (16 bytes each); one
    round to reveal; with min_cell_size > 1 one comparison (10 rounds) and one more reveal
    round.
    Error: none: counts and sums are exact; rate and mean are the nearest float64.
    """
    party = ctx.name_of(ctx.rank)
    mine = None
    if table is not None and ctx.rank in owners:
        report_progress(ctx, 0.05, "checking and aggregating this bank's loans")
        mine = _local_totals(table, party, label, positive, amount, amount_decimals, amount_bound)
    unit_bound = float(max(1.0, amount_bound * 10**amount_decimals))
    report_progress(ctx, 0.1, "sharing every bank's totals")
    width = 3 if amount else 2
    parts = ctx.share_each(mine, owners, shape=(width,), bound=MAX_ROWS_PER_BANK * unit_bound, frac_bits=0,
                           name="loan totals")
    if not ctx.is_compute:
        return None  # input parties learn nothing
    total = sum(parts[1:], parts[0])
    counts = count_view(total[:2], owners)  # the comparison with min_cell_size needs a count's bound
    amounts = total[2:] if amount else None
    if min_cell_size > 1:
        report_progress(ctx, 0.75, "checking the minimum cell size on shares")
        small = counts[0:1] < min_cell_size
        if int(small.reveal_int(to=COMPUTE_RANKS)[0]):
            report_progress(ctx, 1.0, "suppressed: fewer loans than the minimum cell size")
            return _suppressed(min_cell_size)
    report_progress(ctx, 0.85, "revealing the totals")
    opened = smpc.cat([counts, amounts]) if amounts is not None else counts
    sums = opened.reveal_int(to=COMPUTE_RANKS)
    report_progress(ctx, 1.0, "done")
    return _result(int(sums[0]), int(sums[1]), int(sums[2]) if amount else None, amount_decimals)

__all__ = ["amount_units", "default_flags", "default_rate_overall"]
