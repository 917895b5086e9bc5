"""Credit analyses: consortium-wide default statistics over the banks' loan books."""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction

import pandas as pd

from smpc import dp
from smpc.analyses import disclosure
from smpc.analyses.common import (
    MAX_ROWS_PER_BANK,
    amount_units,
    bounded_view,
    cap_customer_rows,
    check_dp,
    check_row_count,
    count_view,
    default_flags,
    dp_params,
    suppressed,
)
from smpc.analyses.registry import Param, register, report_progress
from smpc.secret import share_each


def _local_totals(table: pd.DataFrame, party: str, label: str, positive: str | None, amount: str | None,
                  decimals: int, bound: float, shift: int | None = None) -> list[int]:
    """One bank's exact aggregates: [rows, defaults] (+ [sum of amount units]); with a
    ``shift`` (dominance on amounts) also the sum of |amount units| (and that sum >> shift
    where shift > 0)."""
    flags = default_flags(table, party, label, positive)
    check_row_count(party, len(flags))
    totals = [len(flags), int(flags.sum())]
    if amount:
        units = [int(v) for v in amount_units(table, party, amount, decimals, bound)]
        totals.append(sum(units))
        if shift is not None:
            magnitude = sum(abs(v) for v in units)
            totals += [magnitude, magnitude >> shift] if shift else [magnitude]
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


def _overall_rules(banks: int, min_cell_size: int, min_contributors, max_dominance) -> disclosure.Rules:
    return disclosure.resolve("default_rate_overall", banks, min_cell_size, min_contributors, max_dominance)


def _dp_scales(amount, amount_decimals, amount_bound, epsilon, cap) -> list:
    """Contribution scales of rows and defaults (sensitivity ``cap`` each) and, with an
    amount, of its sum (``cap`` loans of at most amount_bound, in units)."""
    sensitivities = [cap, cap]
    if amount:
        sensitivities.append(cap * math.ceil(Fraction(repr(float(amount_bound))) * 10**amount_decimals))
    return dp.scales(epsilon, sensitivities)


def _dp_result(values, amount, amount_decimals, amount_bound, min_cell_size, epsilon, cap) -> dict:
    scales = _dp_scales(amount, amount_decimals, amount_bound, epsilon, cap)
    meta = {"epsilon_spent": float(epsilon), "mechanism": dp.MECHANISM, "noise_parties": len(dp.NOISE_RANKS),
            "rows_per_customer": cap, "min_cell_size": min_cell_size}
    rows, defaults = int(values[0]), int(values[1])
    if min_cell_size > 1 and rows < min_cell_size:
        return suppressed(**meta)
    out = _result(max(rows, 0), defaults, int(values[2]) if amount else None, amount_decimals) if rows > 0 else {
        "rows": rows, "suppressed": False, "defaults": defaults, "default_rate": math.nan}
    out["rows"], out["defaults"] = rows, defaults
    if rows > 0:
        out["default_rate"] = min(1.0, max(0.0, out["default_rate"]))
    stats = {"rows": dp.statistic(rows, scales[0]), "defaults": dp.statistic(defaults, scales[1])}
    intervals = {k: v["interval95"] for k, v in stats.items()}
    intervals["default_rate"] = dp.ratio_interval(defaults, scales[1], rows, scales[0], 0.0, 1.0)
    if amount:
        unit = 10**amount_decimals
        stats["amount_sum"] = dp.statistic(int(values[2]), scales[2], unit)
        intervals["amount_sum"] = stats["amount_sum"]["interval95"]
        intervals["mean_amount"] = dp.ratio_interval(int(values[2]), scales[2], rows, scales[0], -amount_bound,
                                                     amount_bound, unit)
    return {**out, "interval95": intervals,
            "noise": {k: {"scale": v["noise_scale"], "std": v["noise_std"]} for k, v in stats.items()}, **meta}


def _overall_plain(tables: Mapping[str, pd.DataFrame], *, label: str, positive: str | None = None,
                   amount: str | None = None, amount_decimals: int = 2, amount_bound: float = 1e12,
                   min_cell_size: int = 1, min_contributors: int | None = None, max_dominance: float = 100.0,
                   dp_epsilon=None, dp_customer=None, dp_rows_per_customer=1) -> dict:
    rules = _overall_rules(len(tables), min_cell_size, min_contributors, max_dominance)
    check_dp("default_rate_overall", dp_epsilon, dp_customer, dp_rows_per_customer)
    if dp_epsilon is not None:
        per_bank = [_local_totals(cap_customer_rows(t, bank, dp_customer, dp_rows_per_customer), bank, label,
                                  positive, amount, amount_decimals, amount_bound) for bank, t in tables.items()]
        totals = [sum(v[i] for v in per_bank) for i in range(3 if amount else 2)]
        return _dp_result(totals, amount, amount_decimals, amount_bound, min_cell_size, dp_epsilon,
                          dp_rows_per_customer)
    per_bank = [_local_totals(t, bank, label, positive, amount, amount_decimals, amount_bound, shift=0)
                for bank, t in tables.items()]
    totals = [sum(v[i] for v in per_bank) for i in range(3 if amount else 2)]
    measures = [[[v[3]]] for v in per_bank] if amount else None
    if disclosure.suppressed_plain(rules, [[v[0]] for v in per_bank], measures)[0]:
        return suppressed(rules, min_cell_size=int(rules.min_cell_size))
    return {**_result(totals[0], totals[1], totals[2] if amount else None, amount_decimals), **rules.metadata()}


def _overall_check(table: pd.DataFrame, party: str, *, label: str, positive: str | None = None,
                   amount: str | None = None, amount_decimals: int = 2, amount_bound: float = 1e12,
                   min_cell_size: int = 1, min_contributors: int | None = None, max_dominance: float = 100.0,
                   dp_epsilon=None, dp_customer=None, dp_rows_per_customer=1) -> None:
    _overall_rules(1, min_cell_size, min_contributors, max_dominance)
    check_dp("default_rate_overall", dp_epsilon, dp_customer, dp_rows_per_customer)
    if dp_customer is not None:
        cap_customer_rows(table, party, dp_customer, dp_rows_per_customer)
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
    *disclosure.RULE_PARAMS,
    *dp_params(),
]


@register("default_rate_overall", params=_PARAMS, plaintext=_overall_plain, check=_overall_check)
def default_rate_overall(ctx, table, owners, *, label, positive=None, amount=None, amount_decimals=2,
                         amount_bound=1e12, min_cell_size=1, min_contributors=None, max_dominance=100.0,
                         dp_epsilon=None, dp_customer=None, dp_rows_per_customer=1) -> dict | None:
    """Consortium-wide loan count, number of defaults and default rate, and optionally the total and mean amount.

    Every bank checks its own columns (missing column, empty or non-numeric values, labels,
    amounts beyond ``amount_bound`` or with more decimals than ``amount_decimals`` raise
    ``InputError``/``RangeError`` naming the bank, column and row; nothing is revealed), then
    aggregates its rows locally and exactly (row count, defaults, sum of amounts in integer
    units of 10^-amount_decimals). Only those 2-3 integers are secret-shared (ring128, integer
    mode) and summed on shares. The consortium total is one cell for the disclosure rules
    (``smpc.analyses.disclosure``, decided on shares: min_cell_size and min_contributors on
    the banks' loan counts, max_dominance on their sums of |amount|, or on their loan counts
    without ``amount``); a suppressed total opens as a public sentinel. The totals are
    opened to the job's recipients (``ctx.result_ranks``) only; rate and mean are computed
    from the exact totals.
    Leakage: to the recipients, the total row count, the number of defaults and, with
    ``amount``, the sum of the amounts (rate and mean follow from them); no bank's own count
    or sums. If the rules suppress the total: only that fact. Nothing to any other party.
    Cost: one round in which every bank shares its 2-3 ring elements (16 bytes each; 1-2
    more with max_dominance < 100 and ``amount``); one round to reveal; with any disclosure
    rule (by default min_contributors = min(3, banks) >= 1) 11 + ceil(log2 L) more: one
    batched comparison, a product tree over L leaves (banks with min_contributors, plus banks
    with max_dominance; one round more where sums of |amount| exceed 64-bit comparisons) and
    one selection.
    Error: none: counts and sums are exact; rate and mean are the nearest float64.
    Privacy: with ``dp_epsilon`` the row count, defaults (and amount sum) get discrete
    Laplace noise (``smpc.dp``), epsilon split evenly over them; sensitivities
    dp_rows_per_customer, dp_rows_per_customer (and that many amounts of at most
    amount_bound, which each bank checks against its own declaration). Rate and mean are
    post-processed; a noisy row count below min_cell_size reports the total suppressed;
    min_contributors and max_dominance are not evaluated. Cost then: 3 rounds (share,
    noise, open).
    """
    rules = _overall_rules(len(owners), min_cell_size, min_contributors, max_dominance)
    check_dp("default_rate_overall", dp_epsilon, dp_customer, dp_rows_per_customer)
    party = ctx.name_of(ctx.rank)
    if dp_epsilon is not None:
        mine = None
        if table is not None and ctx.rank in owners:
            rows = cap_customer_rows(table, party, dp_customer, dp_rows_per_customer)
            mine = _local_totals(rows, party, label, positive, amount, amount_decimals, amount_bound)
        unit_bound = float(max(1.0, amount_bound * 10**amount_decimals))
        parts = share_each(ctx, mine, owners, shape=(3 if amount else 2,), bound=MAX_ROWS_PER_BANK * unit_bound,
                           frac_bits=0, name="loan totals")
        if not ctx.is_compute and ctx.rank not in ctx.result_ranks:
            return None
        noisy = dp.noisy_open(ctx, sum(parts[1:], parts[0]),
                              _dp_scales(amount, amount_decimals, amount_bound, dp_epsilon, dp_rows_per_customer),
                              ctx.result_ranks)
        return None if noisy is None else _dp_result([int(v) for v in noisy], amount, amount_decimals, amount_bound,
                                                     min_cell_size, dp_epsilon, dp_rows_per_customer)
    unit_bound = float(max(1.0, amount_bound * 10**amount_decimals))
    magnitude_bound = float(MAX_ROWS_PER_BANK) * unit_bound
    shift = None
    if amount and rules.dominance_bp is not None:
        shift = disclosure.dominance_shift(rules, magnitude_bound)
    mine = None
    if table is not None and ctx.rank in owners:
        report_progress(ctx, 0.05, "checking and aggregating this bank's loans")
        mine = _local_totals(table, party, label, positive, amount, amount_decimals, amount_bound, shift)
    report_progress(ctx, 0.1, "sharing every bank's totals")
    width = (3 if amount else 2) + (0 if shift is None else (2 if shift else 1))
    parts = share_each(ctx, mine, owners, shape=(width,), bound=MAX_ROWS_PER_BANK * unit_bound, frac_bits=0,
                           name="loan totals")
    if not ctx.is_compute and ctx.rank not in ctx.result_ranks:
        return None  # input parties that receive no result learn nothing
    total = sum(parts[1:], parts[0])
    counts = count_view(total[:2], owners)  # the rules' comparisons need a count's bound
    measure = None
    if shift is not None:
        measure = disclosure.Measure([bounded_view(p[3:4], magnitude_bound) for p in parts], magnitude_bound,
                                     high_parts=[bounded_view(p[4:5], magnitude_bound / 2.0**shift) for p in parts]
                                     if shift else None, shift=shift)
    report_progress(ctx, 0.75, "checking the disclosure rules on shares")
    released = disclosure.released_on_shares(rules, [p[0:1] for p in parts], MAX_ROWS_PER_BANK,
                                             total=counts[0:1], measure=measure)
    report_progress(ctx, 0.85, "revealing the totals")
    opened = total[: 3 if amount else 2]
    sums = disclosure.open_cells(opened, released, 1, [-1, 0, 0] if amount else [-1, 0], ctx.result_ranks)
    if sums is None:
        return None
    sums = [int(v) for v in sums[0]]
    report_progress(ctx, 1.0, "done")
    if sums[0] < 0:
        return suppressed(rules, min_cell_size=int(rules.min_cell_size))
    return {**_result(sums[0], sums[1], sums[2] if amount else None, amount_decimals), **rules.metadata()}


__all__ = ["default_rate_overall"]
