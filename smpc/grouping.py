"""Secure group-by with distinct counts and thresholds, over rows from many banks.

Three primitives, both built on the join's input sharing (``smpc.join.share_rows``), the
oblivious sort (``smpc.protocols.sort``: secret shuffle, then quicksort with opened
comparisons on distinct keys) and segmented scans (``smpc.protocols.segmented``); results
go back to the bank that brought each row, opened to it alone.

``distinct_threshold``: every bank brings rows (group key, member key, secret 0/1
predicate), at most one row per (group, member) at each bank (the bank merges its own
repeats first, in the clear: predicate = any). For every row it computes, on shares,
  members = the number of distinct members of its group with the predicate set, a member
            held by several banks counting once;
  banks   = the number of distinct banks holding such a member's row in the group;
and the secret flag [members >= min_members and banks >= min_banks], plus
flag * min(members, cap). Each recipient bank receives these two numbers for its own rows
only; every recipient also receives the number of flagged groups.

``window_counts``: one bank (the requester) brings query rows (group key, day), the other
banks data rows (group key, day), each bank's repeats of a (group, day) merged. For every
query row: the number of data rows of its group whose day lies in [day - window, day]
(both ends included), capped at a public maximum or tested against a threshold, opened to
the requester only.

``distinct_in_window``: every bank brings rows (group key, member key, day, secret 0/1
predicate), repeats allowed. For every row dated t: the number of distinct members of its
group with a predicate row dated in [t - window, t], and the flag [that >= min_members],
per row or as "some row of the group is flagged"; results to each row's own bank. Two
sorts: by (group, member) pair, to turn each member's predicate days into disjoint
intervals, then by (group, time) over start and end events, plus query events per row (see
its docstring); one, the second, where every member's rows are at one bank
(``members_at_one_bank``: the banks cut the intervals themselves).

Keys and layout. Group and member keys are 64-bit keyed hashes (``smpc.join.hash_ids``).
The sort key is two words. ``distinct_threshold``: (group, member) where the member word's
lowest-ranking ``bank_bits(banks) + 1`` bits are replaced by [not predicate] (secret, set by
the bank) and the bank index (public, set by the compute parties), so keys are distinct,
a member's rows with the predicate come first in its run, and the member comparison masks
these bits (collision bound for members N^2 / 2^(64 - bank_bits)). ``window_counts``:
(group, time) with time = ((day + 2^24) * 4 + kind) << 37 | bank << 32 | row: kind 0 for
a query's window start (day - window), 1 for data, 2 for a query's end (day), so that a
window's start sorts before data of its first day and its end after data of its last.
All words are in tree order (``sort.tree_order``).

Leakage (all three): every bank's row count, to the compute parties (the sort opens only
outcomes of comparisons between distinct keys in secretly shuffled order). The outputs,
to the banks named in each function.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from smpc.errors import InputError, ProtocolError
from smpc.join import PrivateJoin, bank_bits, share_rows
from smpc.protocols import boolean
from smpc.protocols.segmented import (
    adjacent_equal,
    bits_to_arithmetic,
    group_totals,
    mul,
    segmented_any,
    segmented_scans,
)
from smpc.protocols.sort import PackedBits, less_than_words, pack_bits, sort_rows_from, tree_order
from smpc.ring import RING64
from smpc.sharing import N_COMPUTE, ArithmeticShares, BooleanShares

if TYPE_CHECKING:
    from smpc.context import Context

MAX_ROWS = 2**31 - 1
"""Most rows in one run: counts stay far from the sign bit of the 64-bit comparisons."""
DAY_OFFSET = 2**24
"""Days are stored as day + 2^24 (days since 1970-01-01), so dates from about 44 000 BC on sort."""
MAX_DAY = 2**24 - 1
TIME_SHIFT = 37
BANK_SHIFT = 32
MAX_WINDOW_BANKS = 32
MAX_WINDOW_ROWS = 2**32


def _tree(value: int) -> int:
    return int(tree_order(torch.tensor([value], dtype=torch.int64))[0])


def _as_int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def member_field_mask(n_banks: int) -> int:
    """The member-word bits (tree order) that hold [not predicate] and the bank index."""
    return _tree((1 << (bank_bits(n_banks) + 1)) - 1)


def _not_predicate_bit(n_banks: int) -> int:
    """The bit position (tree order) of [not predicate] in the member word."""
    word = _tree(1 << bank_bits(n_banks)) & ((1 << 64) - 1)
    return word.bit_length() - 1


@dataclass
class GroupResult:
    """What ``distinct_threshold`` or ``window_counts`` gives a rank: on a recipient bank,
    ``rows`` (its own rows' opened columns, input order, int64) and ``total`` (the number
    of flagged groups, or None); elsewhere both None. ``stages``: this party's
    {stage: (rounds, bytes sent)}, for the cost tests."""

    rows: np.ndarray | None = None
    total: int | None = None
    stages: dict[str, tuple[int, int]] = field(default_factory=dict)


class _Meter:
    """Rounds and bytes this party spends per stage (differences of ``ctx.comm_stats``)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.stages: dict[str, tuple[int, int]] = {}
        self._last = self._now()

    def _now(self) -> tuple[int, int]:
        s = self.ctx.comm_stats()
        return s["rounds"], s["bytes_sent"]

    def mark(self, stage: str) -> None:
        now = self._now()
        rounds, sent = self.stages.get(stage, (0, 0))
        self.stages[stage] = (rounds + now[0] - self._last[0], sent + now[1] - self._last[1])
        self._last = now


def _public(ctx: Context, words: torch.Tensor) -> BooleanShares:
    zero = torch.zeros_like(words)
    return BooleanShares(words if ctx.rank == 0 else zero, words if ctx.rank == 2 else zero.clone())


def _not(ctx: Context, x: BooleanShares) -> BooleanShares:
    return x.xor_public(ctx.rank, -1)


def _public_ring64(ctx: Context, values: torch.Tensor) -> ArithmeticShares:
    zero = torch.zeros_like(values)
    return ArithmeticShares(RING64, values if ctx.rank == 0 else zero, values if ctx.rank == 2 else zero.clone())


def _plus_public(ctx: Context, x: ArithmeticShares, value: int) -> ArithmeticShares:
    return x.add_public(ctx.rank, RING64.from_int64(torch.tensor(value, dtype=torch.int64)))


def _column(x: ArithmeticShares, j: int) -> ArithmeticShares:
    return ArithmeticShares(RING64, x.first[:, j].contiguous(), x.second[:, j].contiguous())


def _stack(columns: Sequence[ArithmeticShares]) -> ArithmeticShares:
    return ArithmeticShares(RING64, torch.stack([c.first for c in columns], dim=1),
                            torch.stack([c.second for c in columns], dim=1))


def _signs(ctx: Context, columns: Sequence[ArithmeticShares], step: str) -> list[BooleanShares]:
    """[x < 0] of each (n,) column, all in one ``boolean.msb`` call."""
    n = columns[0].shape[0]
    joined = ArithmeticShares(RING64, torch.cat([c.first for c in columns]), torch.cat([c.second for c in columns]))
    bits = boolean.msb(ctx, joined)
    return [BooleanShares(bits.first[k * n : (k + 1) * n], bits.second[k * n : (k + 1) * n])
            for k in range(len(columns))]


def _inject(ctx: Context, bits: Sequence[BooleanShares]) -> list[ArithmeticShares]:
    """Bits (each (n,), in bit 0) as arithmetic 0/1 columns, one bit injection for all."""
    stacked = BooleanShares(torch.stack([b.first & 1 for b in bits], dim=1),
                            torch.stack([b.second & 1 for b in bits], dim=1))
    both = boolean.bit_to_arithmetic(ctx, stacked, RING64)
    return [_column(both, j) for j in range(len(bits))]


def check_row_count(n: int, what: str) -> None:
    if n > MAX_ROWS:
        raise InputError(f"{what}: {n} rows in all, more than the {MAX_ROWS} one run takes")


# ----- distinct members per group, with thresholds ----------------------------------------
def distinct_threshold(
    ctx: Context,
    owners: Sequence[int],
    groups: np.ndarray | None,
    members: np.ndarray | None,
    predicate: np.ndarray | None = None,
    *,
    min_members: int,
    min_banks: int = 1,
    cap: int,
    recipients: Sequence[int] | None = None,
) -> GroupResult:
    """Per row: [its group has >= min_members distinct members with the predicate, held by
    >= min_banks banks], and that flag times min(members, cap); see the module docstring.

    Every rank calls it; each owner passes its rows: ``groups`` and ``members`` (n,) int64
    keys (``smpc.join.hash_ids``), ``predicate`` (n,) 0/1 or None (all 1), with distinct
    (group, member) pairs (``InputError`` naming the bank otherwise). Returns a
    ``GroupResult``: on every bank in ``recipients`` (default: all owners), ``rows`` of
    shape (n, 2): (flag, flag * min(members, cap)) for its own rows in its input order, and
    ``total``: the number of groups whose rows are flagged.

    Computation (sorted order, n rows in all): adjacent equalities give same_group and
    same_member (member word with the predicate and bank bits masked); a member's first row
    in its group carries the predicate iff any of its rows does, so
    counted = (1 - same_member) * predicate is one AND on packed bits. The bank brings a
    0/1 ``representative`` column: 1 on its first row with the predicate per group (it
    knows all its rows of a group), so a group's total of it counts its banks. Group totals
    by segmented scans; the thresholds and the cap as signs of members - min_members,
    banks - min_banks, cap - members (one ``msb`` call); then flag and [members > cap] are
    injected and multiplied out.

    Cost, with n rows in all, L = ceil(log2 n), c = 2 if min_banks > 1 else 1, and t the
    number of sign tests (2 or 3): 2 rounds to share (3 words per row from each bank);
    the sort (3 rounds of shuffle, then a two-word quicksort, varying with the secret
    order: ~145 rounds and ~1.45 kB per row measured at n = 3e5); then exactly
    7 rounds (adjacent equalities, two words), 1 (AND), 2 (injection), L (scans),
    8 (signs), 1 (AND, if min_banks > 1), 2 (injection), 2 (cap, flag products),
    3 + 1 (back to the banks), stage by stage the most rounds any party takes part in
    (``cost_after_sort``); per row and party about 16 + 1/8 + 8 + 8 (2c + 1) L + 32 t
    + 8 + 16 + 24 + 16 (+ 8 per row returned) bytes, independent of the data (at 3 x 1000
    rows: 426 / 410 / 410 bytes per row with min_banks = 1, 636 / 620 / 620 with 2;
    docs/costs.md). ``tests/test_grouping.py`` checks both against the counters.
    Leakage: every bank's row count (to the compute parties); to each recipient, for each
    of its rows, the flag and, when flagged, min(members, cap); to every recipient, the
    number of flagged groups. Nothing about unflagged groups' sizes, other banks' rows or
    which banks share a group.
    Error: exact (counts below 2^31).
    """
    meter = _Meter(ctx)
    rank = ctx.rank
    n_banks = len(owners)
    if min_members < 1 or min_banks < 0 or cap < 1:
        raise InputError("distinct_threshold: min_members and cap must be at least 1, min_banks at least 0")
    field_mask = member_field_mask(n_banks)
    notpred_pos = _not_predicate_bit(n_banks)
    words = values = None
    n_mine = None
    if rank in owners:
        g = np.zeros(0, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64).reshape(-1)
        m = np.zeros(0, dtype=np.int64) if members is None else np.asarray(members, dtype=np.int64).reshape(-1)
        p = np.ones(len(g), dtype=np.int64) if predicate is None else np.asarray(predicate, dtype=np.int64).reshape(-1)
        if not len(g) == len(m) == len(p):
            raise InputError(f"{ctx.name_of(rank)}: {len(g)} group keys, {len(m)} member keys, {len(p)} predicates")
        if len(p) and not np.isin(p, (0, 1)).all():
            raise InputError(f"{ctx.name_of(rank)}: the predicate must be 0 or 1")
        n_mine = len(g)
        member_word = (m & ~np.int64(field_mask)) | np.where(p == 0, np.int64(_as_int64(1 << notpred_pos)), 0)
        if pd.DataFrame({"g": g, "m": m & ~np.int64(field_mask)}).duplicated().any():
            raise InputError(f"{ctx.name_of(rank)}: two of its rows have the same group and member keys (merge them "
                             "first, or a hash collision: rerun with another salt)")
        words = np.stack([g, member_word], axis=1)
        representative = np.zeros(len(g), dtype=np.int64)
        with_predicate = np.flatnonzero(p == 1)
        representative[with_predicate[~pd.Series(g[with_predicate]).duplicated().to_numpy()]] = 1
        values = representative.reshape(-1, 1)
    keys, reps, counts = share_rows(ctx, owners, words, values, 2, 1)
    meter.mark("share")
    join = PrivateJoin(ctx, owners, n_mine, unique=True)
    if recipients is None:
        recipients = list(owners)
    columns = total = None
    if ctx.is_compute:
        join.counts = counts
        n = sum(counts)
        check_row_count(n, "distinct_threshold")
        bank_index = torch.cat([torch.full((c,), b, dtype=torch.int64) for b, c in enumerate(counts)])
        field = _public(ctx, tree_order(bank_index))
        keys.second[:, 1] ^= field.second
        keys.first[:, 1] ^= field.first
        rows = [keys, reps]
        del keys, reps, field
        join.sorted = sort_rows_from(ctx, rows)
        meter.mark("sort")
        columns, total = _distinct_flags(ctx, join, n, field_mask, notpred_pos, min_members, min_banks, cap, meter)
    rows_out, extra = join.to_owners(columns, 2, recipients=recipients, shared_extra=total, n_extra=1)
    meter.mark("return")
    result = GroupResult(stages=meter.stages)
    if rows_out is not None:
        result.rows, result.total = rows_out, int(extra[0])
    return result


def _distinct_flags(ctx, join: PrivateJoin, n: int, field_mask: int, notpred_pos: int, min_members: int,
                    min_banks: int, cap: int, meter: _Meter):
    if n == 0:
        empty = ArithmeticShares(RING64, torch.zeros((0, 2), dtype=torch.int64), torch.zeros((0, 2), dtype=torch.int64))
        return empty, _public_ring64(ctx, torch.zeros(1, dtype=torch.int64))
    sk = join.sorted.keys
    rep = _column(join.sorted.items[0], 0)
    masked = BooleanShares(sk.first.clone(), sk.second.clone())
    masked.first[:, 1] &= ~field_mask
    masked.second[:, 1] &= ~field_mask
    same_group, same_member = adjacent_equal(ctx, masked, prefixes=2, step="group-adjacent")
    del masked
    notpred = BooleanShares(pack_bits((sk.first[:, 1] >> notpred_pos) & 1),
                            pack_bits((sk.second[:, 1] >> notpred_pos) & 1))
    counted = boolean.and_(ctx, _not(ctx, same_member.shares), _not(ctx, notpred), "group-counted")
    meter.mark("adjacent")
    flags = bits_to_arithmetic(ctx, [same_group, PackedBits(counted, n)], RING64)
    cont, counted_a = _column(flags, 0), _column(flags, 1)
    scan = [counted_a] + ([rep] if min_banks > 1 else [])
    totals = group_totals(ctx, _stack(scan), cont, "group-totals")
    meter.mark("scans")
    members = _column(totals, 0)
    tests = [_plus_public(ctx, members, -min_members)]
    if min_banks > 1:
        tests.append(_plus_public(ctx, _column(totals, 1), -min_banks))
    tests.append(_plus_public(ctx, members.neg(), cap))  # negative iff members > cap
    signs = _signs(ctx, tests, "group-signs")
    flag = _not(ctx, signs[0])
    if min_banks > 1:
        flag = boolean.and_(ctx, flag, _not(ctx, signs[1]), "group-both")
    flag_a, over = _inject(ctx, [flag, signs[-1]])
    meter.mark("thresholds")
    # min(members, cap) = members + over * (cap - members)
    capped = members.add(mul(ctx, over, _plus_public(ctx, members.neg(), cap), "group-cap"))
    start = _plus_public(ctx, cont.neg(), 1)
    both = mul(ctx, _stack([flag_a, flag_a]), _stack([capped, start]), "group-out")
    count = _column(both, 1).sum().reshape((1,))
    meter.mark("outputs")
    return _stack([flag_a, _column(both, 0)]), count


def cost_after_sort(n: int, min_banks: int = 1) -> int:
    """Rounds of ``distinct_threshold`` after the sort, back to the banks included, for
    n >= 2 rows in all, counted stage by stage as the most rounds any party takes part in
    (the sort's own rounds vary with the secret order)."""
    scans = max(0, (n - 1).bit_length())
    return 7 + 1 + 2 + scans + 8 + (1 if min_banks > 1 else 0) + 2 + 2 + 3 + 1


def window_cost_after_sort(n: int, capped: bool = True) -> int:
    """Rounds of ``window_counts`` after the sort, the opening included, for n >= 2 sorted
    rows and at least one query, counted as ``cost_after_sort`` counts them."""
    scans = max(0, (n - 1).bit_length())
    return 6 + 2 + scans + 3 + 8 + 2 + (1 if capped else 0) + 1


# ----- rows in a time window before each query ----------------------------------------------
def window_counts(
    ctx: Context,
    owners: Sequence[int],
    groups: np.ndarray | None,
    days: np.ndarray | None,
    *,
    requester: int,
    window_days: int,
    cap: int,
    min_count: int | None = None,
) -> GroupResult:
    """For each of the requester's rows, the number of other banks' rows of its group whose
    day lies in [day - window_days, day] (both ends included), capped at ``cap``; with
    ``min_count``, only [that number >= min_count]. See the module docstring.

    Every rank calls it; each owner passes ``groups`` (n,) int64 keys and ``days`` (n,)
    int64 (days since 1970-01-01, within +-2^24). A bank other than the requester should
    merge its repeats of a (group, day) first if they are to count once. Returns a
    ``GroupResult``: on the requester, ``rows`` of shape (n, 1) in its input order.

    Computation: each query row becomes two sorted rows (window start, kind 0, at day -
    window_days; end, kind 2, at day), each data row one (kind 1, weight 1); after the sort
    by (group, time), same_group comes from adjacent equalities of the first word, a
    forward segmented scan gives every row the number of data rows of its group up to it,
    the columns go back to input order (inverse shuffle), where a query's end minus its
    start is its count; then a sign test and the cap (or threshold) and an opening to the
    requester only.
    Cost, with n = 2 q + d rows in all (q query rows, d data rows), L = ceil(log2 n):
    2 rounds to share (2 words per sorted row); the sort (3 rounds of shuffle, then a
    two-word quicksort: varies with the secret order); then exactly 6 rounds (adjacent
    equalities, one word), 2 (injection),
    L (forward scan: 2 ring elements per row and round, 1 in the last), 3 (inverse
    shuffle), 8 (sign test, q elements), 2 (injection), 1 (cap product, unless
    ``min_count``), 1 (opening to the requester) (``window_cost_after_sort``); about 210
    bytes per sorted row and party at 3 x 1000 rows (docs/costs.md).
    Leakage: every bank's row count (to the compute parties); to the requester only, the
    capped count (or the flag) of each of its rows. The other banks receive nothing after
    sharing their rows.
    Error: exact.
    """
    meter = _Meter(ctx)
    rank = ctx.rank
    n_banks = len(owners)
    if n_banks > MAX_WINDOW_BANKS:
        raise InputError(f"window_counts: at most {MAX_WINDOW_BANKS} banks, got {n_banks}")
    if window_days < 0 or cap < 1:
        raise InputError("window_counts: window_days must be at least 0 and cap at least 1")
    if requester not in owners:
        raise ProtocolError(f"window_counts: rank {requester} is not a bank")
    words = None
    n_mine = None
    if rank in owners:
        g = np.zeros(0, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64).reshape(-1)
        d = np.zeros(0, dtype=np.int64) if days is None else np.asarray(days, dtype=np.int64).reshape(-1)
        if len(g) != len(d):
            raise InputError(f"{ctx.name_of(rank)}: {len(g)} group keys but {len(d)} days")
        if len(g) >= MAX_WINDOW_ROWS:
            raise InputError(f"{ctx.name_of(rank)}: {len(g)} rows, more than {MAX_WINDOW_ROWS - 1}")
        low = -DAY_OFFSET + (window_days if rank == requester else 0)
        if len(d) and (int(d.min()) < low or int(d.max()) > MAX_DAY):
            raise InputError(f"{ctx.name_of(rank)}: a date lies outside the range the window arithmetic holds")
        n_mine = len(g)
        if rank == requester:
            starts = _time_words((d - window_days + DAY_OFFSET) * 4)
            ends = _time_words((d + DAY_OFFSET) * 4 + 2)
            words = np.stack([np.concatenate([g, g]), np.concatenate([starts, ends])], axis=1)
        else:
            words = np.stack([g, _time_words((d + DAY_OFFSET) * 4 + 1)], axis=1)
    keys, _, counts = share_rows(ctx, owners, words, None, 2, 0)
    meter.mark("share")
    q_index = owners.index(requester)
    columns = None
    if ctx.is_compute:
        check_row_count(sum(counts), "window_counts")
        n = sum(counts)
        public = []
        weights = []
        for b, c in enumerate(counts):
            rows = torch.arange(c, dtype=torch.int64)
            if b == q_index:
                rows = rows % (c // 2) if c else rows  # a query's start and end share its row index
            public.append((b << BANK_SHIFT) | rows)
            weights.append(torch.full((c,), 0 if b == q_index else 1, dtype=torch.int64))
        tie = _public(ctx, tree_order(torch.cat(public)))
        keys.first[:, 1] ^= tie.first
        keys.second[:, 1] ^= tie.second
        weight = _public_ring64(ctx, torch.cat(weights).reshape(n, 1))
        rows = [keys, weight]
        del keys, weight, tie
        ordered = sort_rows_from(ctx, rows)
        meter.mark("sort")
        columns = _window_tail(ctx, ordered, counts, q_index, n, cap, min_count, meter)
    out = _open_to(ctx, columns, requester, None if n_mine is None else n_mine)
    meter.mark("return")
    return GroupResult(rows=out, stages=meter.stages)


def _time_words(natural: np.ndarray) -> np.ndarray:
    shifted = torch.from_numpy(np.ascontiguousarray(natural.astype(np.int64) << TIME_SHIFT))
    return tree_order(shifted).numpy()


def _window_tail(ctx, ordered, counts: list[int], q_index: int, n: int, cap: int, min_count: int | None,
                 meter: _Meter) -> ArithmeticShares:
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(int)
    q = counts[q_index] // 2
    if n == 0 or q == 0:
        return ArithmeticShares(RING64, torch.zeros(q, dtype=torch.int64), torch.zeros(q, dtype=torch.int64))
    sk = ordered.keys
    first = BooleanShares(sk.first[:, :1].contiguous(), sk.second[:, :1].contiguous())
    (same_group,) = adjacent_equal(ctx, first, prefixes=1, step="window-adjacent")
    cont = _column(bits_to_arithmetic(ctx, [same_group], RING64), 0)
    meter.mark("adjacent")
    prefix, _ = segmented_scans(ctx, ordered.items[0], cont, forward=True, backward=False, step="window-scan")
    meter.mark("scans")
    (back,) = ordered.restore([prefix], "window-return")
    lo = int(offsets[q_index])
    starts = ArithmeticShares(RING64, back.first[lo : lo + q, 0].contiguous(), back.second[lo : lo + q, 0].contiguous())
    ends = ArithmeticShares(RING64, back.first[lo + q : lo + 2 * q, 0].contiguous(),
                            back.second[lo + q : lo + 2 * q, 0].contiguous())
    count = ends.sub(starts)
    meter.mark("restore")
    if min_count is not None:
        (below,) = _signs(ctx, [_plus_public(ctx, count, -min_count)], "window-signs")
        (flag,) = _inject(ctx, [_not(ctx, below)])
        meter.mark("thresholds")
        return flag
    (over,) = _signs(ctx, [_plus_public(ctx, count.neg(), cap)], "window-signs")
    (over_a,) = _inject(ctx, [over])
    meter.mark("thresholds")
    capped = count.add(mul(ctx, over_a, _plus_public(ctx, count.neg(), cap), "window-cap"))
    meter.mark("outputs")
    return capped


# ----- distinct members within a sliding time window -----------------------------------------
WINDOW_TIME_SHIFT = 35
"""Both sorts of ``distinct_in_window`` hold a time (day + 2^24, or an interval's end + 1,
below 2^26) at bit 35 of their second key word, above a kind bit (34) and a row index."""
MAX_WINDOW_DAYS = 2**24 - 1
_PAIR_PERSON = b"smpc-pair-v1"


def _pair_words(g: np.ndarray, m: np.ndarray) -> np.ndarray:
    """A 64-bit BLAKE2b of every (group key, member key) pair, its lowest bit cleared (it
    will hold [not predicate]): one word to sort and compare instead of two."""
    raw = np.ascontiguousarray(np.stack([g, m], axis=1).astype("<i8")).tobytes()
    new = hashlib.blake2b(digest_size=8, person=_PAIR_PERSON).copy
    out = bytearray(8 * len(g))
    for i in range(len(g)):
        h = new()
        h.update(raw[16 * i : 16 * i + 16])
        out[8 * i : 8 * i + 8] = h.digest()
    return np.frombuffer(bytes(out), dtype="<i8").astype(np.int64) & ~np.int64(1)


def _window_time_words(times: np.ndarray) -> np.ndarray:
    """Times (below 2^26) at bit 35 of a word, in tree order."""
    shifted = torch.from_numpy(np.ascontiguousarray(times.astype(np.int64) << WINDOW_TIME_SHIFT))
    return tree_order(shifted).numpy()


def distinct_in_window(
    ctx: Context,
    owners: Sequence[int],
    groups: np.ndarray | None,
    members: np.ndarray | None,
    days: np.ndarray | None,
    predicate: np.ndarray | None = None,
    *,
    window_days: int,
    min_members: int,
    min_banks: int = 1,
    cap: int,
    per_group: bool = False,
    recipients: Sequence[int] | None = None,
    members_at_one_bank: bool = False,
) -> GroupResult:
    """Per row r of group g dated t: members(r) = the number of distinct members of g with
    a predicate row dated in [t - window_days, t] (both ends included; a member held by
    several banks, or repeated at one bank or on one day, counts once), banks(r) = the
    number of distinct banks holding such a row, and the secret flag [members(r) >=
    min_members and banks(r) >= min_banks].

    Every rank calls it; each owner passes its rows: ``groups`` and ``members`` (n,) int64
    keys (``smpc.join.hash_ids``), ``days`` (n,) int64 days since 1970-01-01 within
    +-(2^24 - 1), ``predicate`` (n,) 0/1 or None (all 1). Rows may repeat (group, member,
    day) within a bank and across banks. Returns a ``GroupResult``: on every bank in
    ``recipients`` (default: all owners), for its own rows in its input order,
      ``per_group=False``: ``rows`` (n, 2) = (flag, flag * min(members, cap)), ``total`` =
        the number of flagged rows over all banks' rows;
      ``per_group=True``: ``rows`` (n, 1) = [on some day t, the group's window [t -
        window_days, t] reaches min_members (and min_banks)], the same as [some row of its
        group, at any bank, is flagged] (a window's counts peak at a predicate row's day),
        ``total`` = the number of groups so flagged.
    Banks are counted only with ``min_banks`` > 1 (it costs one more block of sort 2).
    ``members_at_one_bank=True`` (every rank passes the same): the caller's promise that
    every member's rows all come from one bank (e.g. the member key includes the bank's
    name); each bank then cuts its own members' intervals in the clear and sort 1 is
    skipped. The compute parties cannot check it: a member held by two banks would count
    twice, as distinct keys are the caller's duty elsewhere.

    Computation. Sort 1 (by pair word, time, row: the pair word is a 64-bit hash of
    (group, member) with its lowest bit set to [not predicate], so a member's predicate
    rows of a group are adjacent and ordered by day). A predicate row at day s covers
    [s, e] with e = min(s' - 1, s + window_days), s' the day of the next row of the run
    (none: infinity): these intervals are disjoint and their union is the union of the
    member's [s, s + window_days], so the number of intervals covering t counts the
    member at most once; a same-day repeat gives an empty interval. On the secret words:
    cond = [(pair_{i+1}, time_{i+1}) < (pair_i, s_i + window_days + 1)] (one two-word
    comparison: the first words are sorted, so this is [same run and s' <= s + window]),
    and the end time e + 1 = cond ? time_{i+1} : s + window_days + 1 is one AND on the
    boolean words (the bank brings s + window_days + 1 as a time word, so no arithmetic-
    to-boolean conversion is needed). Sort 2 (by group, time, kind, row) of B n rows: a
    start (+predicate at s) and an end (-predicate at e + 1) per row, and in row mode a
    query (0 at t) per row; a forward segmented scan over the group sums the weights up
    to each row. Let count(t) = #(starts <= t) - #(ends <= t), the number of intervals
    covering t, i.e. the members of day t's window: constant between event times, 0
    before the group's first. Row mode: starts and ends are kind 0, queries kind 1 (after
    every event of their day), so a query's sum is count(t) = members. The sums go back
    to input order (inverse shuffle of sort 2, whose query rows are laid in input order),
    the sign tests members - min_members and cap - members (one ``msb``), injection, cap
    and flag products, opening. Group mode: no queries, and at equal (group, time) every
    end (kind 0) sorts before every start (kind 1). A row's sum then counts all events
    before its time T plus part of T's: at an end, some of T's ends, so the sum is <=
    count(T - 1); at a start, all of T's ends and some of T's starts, so <= count(T); at
    T's last event, exactly count(T). So [some row's sum >= min_members] is exactly [some
    day's window reaches min_members] (with starts first, a start's sum would still count
    the members whose intervals end on its day: too many). In sorted order [sum >=
    min_members], its group's OR (``segmented_any``: a scan of one bit per row, packed),
    injected, the count of flagged groups at group starts (one product), then back to
    input order through the start rows (laid in input order) and opened. The end block holds one row per input row
    whatever the predicate, so block sizes say nothing.
    Banks (min_banks > 1): each bank knows all its own rows, so it cuts its own predicate
    days per group into the same disjoint intervals in the clear ([s_j, min(s_{j+1} - 1,
    s_j + window_days)] over its distinct days s_j) and brings a second weight column:
    +1 on the first predicate row of each (group, day), and one more block of n end rows
    of kind 0 (-1 at the interval's end + 1 on those rows, weight 0 at the row's own day
    on the others, so the block's size says nothing); the scan then sums both columns,
    the second sum counting the banks as the first counts members (row mode: a query's
    second sum is banks(r)), tested with one more sign in the same ``msb`` call and one
    AND. In group mode a row's two sums count the same events, so both are <= the counts
    of the same day (T - 1 or T): [both reach their thresholds] at a row implies it on
    that day, and the last event of a day where both are reached reads that day's exact
    pair.

    Members at one bank (``members_at_one_bank``): each bank cuts its own rows' predicate
    days per (group, member) into the same intervals in the clear, as it does per group
    for the banks: weight 1 on the first predicate row of each (group, member, day) with
    the end time e + 1 = min(next predicate day of that (group, member), s + window_days +
    1), weight 0 and its own time on every other row (a valid, weightless event). It shares
    words (group, start time, end time) and the weight (plus the banks' end word and two
    weights); no pair word, no sort 1 and no comparison or AND: sort 2's end block is the
    input rows' own ends, -weight at the end time, in input order, and all from sort 2 on
    is as above. A member that stays at one bank has the same intervals either way (a
    same-day repeat now weighs 0 instead of an empty interval), so the results are the
    same.

    Keys and the collision bound: group and member keys are 64-bit keyed hashes
    (probability of a collision <= N^2 / 2^65 each, N rows in all) and the pair word has 63
    hash bits (<= N^2 / 2^64): all three below N^2 / 2^63 (3e6 rows: 1e-6). A collision
    would merge two groups, members or (group, member) runs. Sort keys are distinct by
    their public row index, so the sorts open nothing but comparison outcomes of distinct
    keys in secretly shuffled order.

    Cost, with n rows in all (n >= 1), B = 3 blocks in row mode and 2 in group mode (one
    more with min_banks > 1) and L1 = ceil(log2 (B n)): 2 rounds to share (4 words and 1
    value per row from each bank; 5 and 3 with min_banks > 1); sort 1 (n rows, two-word
    keys carrying two words and a value) and sort 2 (B n rows, two-word keys carrying one
    or two weights), whose rounds and bytes vary with the secret order
    (smpc/protocols/sort.py: the two-word sort measured ~192 rounds and ~870 bytes per row
    at 1e5 rows); outside them,
    exactly 8 (comparison) + 1 (AND) rounds between the sorts, then 6 (adjacent
    equalities) + 2 (injection) + L1 (forward scan), and in row mode 3 (inverse shuffle)
    + 8 (signs) + 2 (injection) + 2 (cap, flag products) + 1 (opening), in group mode
    8 (signs) + L1 + 2 (the group OR) + 2 (injection) + 1 (count) + 3 + 1, and 1 more (AND) in
    either with min_banks > 1 (``window_distinct_cost_after_sorts``; stage by stage the most rounds any party takes
    part in). With ``members_at_one_bank``: 3 words and 1 value per row to share (4 and 3
    with min_banks > 1), no sort 1 and no 8 + 1 rounds between the sorts; the rest as
    above. Bytes outside the sorts, per input row and party, do not depend on the
    data; the scans (B n rows, 16 bytes per row and round but the last, 24 with two
    weights) dominate, and group mode adds a sign test over all B n rows:
    measured at 3 x 1000 rows 835 / 811 / 811 bytes in row mode and 598 / 582 / 582 in
    group mode, with min_banks > 1 1591 / 1527 / 1527 and 1313 / 1289 / 1289, and with
    ``members_at_one_bank`` in group mode 543 / 527 / 527 (docs/costs.md: "distinct in window").
    ``tests/test_grouping.py`` checks rounds and bytes against the counters.
    Leakage: every bank's row count (to the compute parties); to each recipient, for each
    of its rows, the flag (row mode: and, when flagged, min(members, cap); group mode: its
    group's flag); to every recipient, the total above. Nothing about other banks' rows,
    unflagged windows, or which banks or days fill a window. With ``members_at_one_bank``
    the same or less: the compute parties see sort 2's comparison outcomes only (no sort
    1, no opened comparison of its rows), every bank still brings one end row per input
    row (weight 0 where nothing ends, so block sizes say nothing), and the number of words
    shared per row follows the public flag, not the data.
    Error: exact (counts below 2^31).
    """
    meter = _Meter(ctx)
    rank = ctx.rank
    if min_members < 1 or cap < 1 or min_banks < 0:
        raise InputError("distinct_in_window: min_members and cap must be at least 1, min_banks at least 0")
    banks = min_banks > 1
    if not 0 <= window_days <= MAX_WINDOW_DAYS:
        raise InputError(f"distinct_in_window: window_days must lie in [0, {MAX_WINDOW_DAYS}], got {window_days}")
    words = values = None
    n_mine = None
    if rank in owners:
        party = ctx.name_of(rank)
        g = np.zeros(0, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64).reshape(-1)
        m = np.zeros(0, dtype=np.int64) if members is None else np.asarray(members, dtype=np.int64).reshape(-1)
        d = np.zeros(0, dtype=np.int64) if days is None else np.asarray(days, dtype=np.int64).reshape(-1)
        p = np.ones(len(g), dtype=np.int64) if predicate is None else np.asarray(predicate, dtype=np.int64).reshape(-1)
        if not len(g) == len(m) == len(d) == len(p):
            raise InputError(f"{party}: {len(g)} group keys, {len(m)} member keys, {len(d)} days, "
                             f"{len(p)} predicates")
        if len(p) and not np.isin(p, (0, 1)).all():
            raise InputError(f"{party}: the predicate must be 0 or 1")
        if len(d) and (int(d.min()) < -MAX_DAY or int(d.max()) > MAX_DAY):
            raise InputError(f"{party}: a date lies outside the range the window arithmetic holds")
        n_mine = len(g)
        time = d + DAY_OFFSET
        if members_at_one_bank:
            # the bank cuts its own members' intervals in the clear, as it cuts its own for the banks column
            weight, end_time = _own_intervals([g, m], time, p, window_days)
            columns = [g, _window_time_words(time), _window_time_words(end_time)]
            values = weight.reshape(-1, 1)
        else:
            pair = _pair_words(g, m) | (p == 0).astype(np.int64)
            columns = [g, pair, _window_time_words(time), _window_time_words(time + window_days + 1)]
            values = p.reshape(-1, 1)
        if banks:
            bank_start, bank_end, end_time = _bank_intervals(g, time, p, window_days)
            columns.append(_window_time_words(end_time))
            values = np.stack([values[:, 0], bank_start, bank_end], axis=1)
        words = np.stack(columns, axis=1)
    n_words = (3 if members_at_one_bank else 4) + banks
    shared, pred, counts = share_rows(ctx, owners, words, values, n_words, 3 if banks else 1)
    meter.mark("share")
    if recipients is None:
        recipients = list(owners)
    width = 1 if per_group else 2
    columns = total = None
    if ctx.is_compute:
        n = sum(counts)
        check_row_count(n, "distinct_in_window")
        if n == 0:
            columns = ArithmeticShares(RING64, torch.zeros((0, width), dtype=torch.int64),
                                       torch.zeros((0, width), dtype=torch.int64))
            total = _public_ring64(ctx, torch.zeros(1, dtype=torch.int64))
        else:
            if members_at_one_bank:
                ends = (_words(shared, 0), _words(shared, 2), _column(pred, 0))
                bank_end = _words(shared, 3) if banks else None
            else:
                ends = _member_ends(ctx, shared, pred, n, meter)
                bank_end = _words(shared, 4) if banks else None
            columns, total = _window_distinct(ctx, _words(shared, 0), _words(shared, 1 if members_at_one_bank else 2),
                                              pred, ends, bank_end, n, min_members, min_banks, cap, per_group, meter)
    out, extra = _open_rows(ctx, owners, counts, n_mine, columns, width, total, recipients, "window-distinct-open")
    meter.mark("return")
    result = GroupResult(stages=meter.stages)
    if out is not None:
        result.rows, result.total = out, int(extra[0])
    return result


def _bank_intervals(g: np.ndarray, time: np.ndarray, p: np.ndarray, window_days: int):
    """One bank's own intervals per group (``_own_intervals`` keyed by the group): returns
    (bank_start, bank_end, end_time) per row."""
    bank_start, end_time = _own_intervals([g], time, p, window_days)
    return bank_start, bank_start.copy(), end_time


def _own_intervals(keys: Sequence[np.ndarray], time: np.ndarray, p: np.ndarray, window_days: int):
    """One bank's own intervals, in the clear: per key (the group, or (group, member)), its
    predicate days s_1 < s_2 < ... cover [s_j, min(s_{j+1} - 1, s_j + window_days)],
    disjoint, whose union is where the key has a predicate row of this bank in the window.
    Returns (weight, end_time) per row: 1 and the interval's end + 1 on the first predicate
    row of each (key, day), 0 and the row's own time (a valid time, weightless) elsewhere."""
    n = len(time)
    weight = np.zeros(n, dtype=np.int64)
    end_time = time.astype(np.int64).copy()
    rows = np.flatnonzero(p == 1)
    frame = pd.DataFrame({**{f"k{j}": k[rows] for j, k in enumerate(keys)}, "t": time[rows]})
    firsts = rows[~frame.duplicated().to_numpy()]
    order = firsts[np.lexsort((time[firsts], *(k[firsts] for k in reversed(keys))))]
    if len(order):
        same_next = np.ones(len(order) - 1, dtype=bool)
        for k in keys:
            same_next &= k[order][1:] == k[order][:-1]
        same_next = np.append(same_next, False)
        following = np.append(time[order][1:], 0)
        ends = time[order] + window_days + 1
        end_time[order] = np.where(same_next, np.minimum(following, ends), ends)
        weight[order] = 1
    return weight, end_time


def _words(x: BooleanShares, j: int) -> BooleanShares:
    return BooleanShares(x.first[:, j].contiguous(), x.second[:, j].contiguous())


def _cat_words(parts: Sequence[BooleanShares]) -> BooleanShares:
    return BooleanShares(torch.cat([q.first for q in parts]), torch.cat([q.second for q in parts]))


def _member_ends(ctx, shared: BooleanShares, values: ArithmeticShares, n: int, meter: _Meter):
    """Sort 1 and the ends of the members' intervals on secret data (members may span
    banks): (group, end time + 1, predicate) per row, in the order of sort 1."""
    pair, start_time = _words(shared, 1), _words(shared, 2)
    pred = _stack([_column(values, 0)])
    index = _public(ctx, tree_order(torch.arange(n, dtype=torch.int64)))
    key1 = BooleanShares(torch.stack([pair.first, start_time.first ^ index.first], dim=1),
                         torch.stack([pair.second, start_time.second ^ index.second], dim=1))
    carried = BooleanShares(shared.first[:, [0, 3]].contiguous(), shared.second[:, [0, 3]].contiguous())
    rows = [key1, carried, pred]
    del key1, carried, index, pair
    first = sort_rows_from(ctx, rows)
    meter.mark("sort")
    # the end of each row's interval: the next row's time if it is of the same run and within the window
    sk = first.keys
    time_mask = _tree(((1 << 26) - 1) << WINDOW_TIME_SHIFT)
    own_end = _words(first.items[0], 1)
    mine = BooleanShares(torch.stack([sk.first[:, 0], own_end.first], dim=1),
                         torch.stack([sk.second[:, 0], own_end.second], dim=1))
    # row i against row i + 1; the last row against itself ("not less": it keeps its own end)
    nxt = BooleanShares(
        torch.cat([torch.stack([sk.first[1:, 0], sk.first[1:, 1] & time_mask], dim=1), mine.first[-1:]]),
        torch.cat([torch.stack([sk.second[1:, 0], sk.second[1:, 1] & time_mask], dim=1), mine.second[-1:]]))
    cond = less_than_words(ctx, nxt, mine, "window-distinct-next").unpack()
    mask = BooleanShares(-cond.first, -cond.second)  # a shared bit in bit 0 spread over the word: XOR-linear
    next_time = BooleanShares(nxt.first[:, 1].contiguous(), nxt.second[:, 1].contiguous())
    del nxt, mine
    end_time = own_end.xor(boolean.and_(ctx, mask, next_time.xor(own_end), "window-distinct-end"))
    meter.mark("ends")
    return _words(first.items[0], 0), end_time, _column(first.items[1], 0)


def _window_distinct(ctx, group: BooleanShares, start_time: BooleanShares, values: ArithmeticShares,
                     ends: tuple[BooleanShares, BooleanShares, ArithmeticShares], bank_end: BooleanShares | None,
                     n: int, min_members: int, min_banks: int, cap: int, per_group: bool, meter: _Meter):
    """Sort 2 and all after it. ``values`` (n, 1 or 3): start weight (+ the banks' start and
    end weights), input order; ``ends``: (group, end time + 1, weight) of the members'
    interval ends, one per input row in any order (sort 1's, or input order)."""
    banks = min_banks > 1
    blocks = (2 if per_group else 3) + banks
    end_group, end_time, end_weight = ends
    # sort 2. Row mode: starts and queries in input order, member ends as given, then (with
    # min_banks) the banks' own interval ends in input order; at equal (group, time) events
    # (kind 0) before queries (kind 1), so a query sees every event of its day.
    # Group mode: no queries; starts (kind 1) in input order, so the way back brings each row
    # its own start, and ends (kind 0) before starts at equal (group, time), so that no
    # running sum counts a start before the ends of its time (see the docstring).
    p_in = _column(values, 0)
    bank_end = [] if bank_end is None else [bank_end]
    kinds = torch.zeros(blocks * n, dtype=torch.int64)
    kinds[(0 if per_group else n) : (1 if per_group else 2) * n] = 1  # group mode's starts, row mode's queries
    tie = _public(ctx, tree_order((kinds << (WINDOW_TIME_SHIFT - 1)) | torch.arange(blocks * n, dtype=torch.int64)))
    zero = torch.zeros(n, dtype=torch.int64)

    def column(parts: list[ArithmeticShares | None]) -> ArithmeticShares:  # None: a block of zeros
        return ArithmeticShares(RING64, torch.cat([zero if q is None else q.first for q in parts]),
                                torch.cat([zero if q is None else q.second for q in parts]))

    query = [] if per_group else [None]  # the query block's weights
    times = [start_time] + ([] if per_group else [start_time]) + [end_time] + bank_end
    words2 = _cat_words(times).xor(tie)
    groups2 = _cat_words([group] + ([] if per_group else [group]) + [end_group] + ([group] if banks else []))
    key2 = BooleanShares(torch.stack([groups2.first, words2.first], dim=1),
                         torch.stack([groups2.second, words2.second], dim=1))
    columns = [column([p_in, *query, end_weight.neg()] + ([None] if banks else []))]
    if banks:
        columns.append(column([_column(values, 1), *query, None, _column(values, 2).neg()]))
    items2 = _stack(columns)
    del ends, end_group, end_time, end_weight, groups2, words2, columns, tie, times
    rows = [key2, items2]
    del key2, items2
    second = sort_rows_from(ctx, rows)
    meter.mark("sort")
    sk2 = second.keys
    (same_group,) = adjacent_equal(ctx, BooleanShares(sk2.first[:, :1].contiguous(), sk2.second[:, :1].contiguous()),
                                   prefixes=1, step="window-distinct-adjacent")
    cont = _column(bits_to_arithmetic(ctx, [same_group], RING64), 0)
    meter.mark("adjacent")
    weights = 2 if banks else 1
    scanned = ArithmeticShares(RING64, second.items[0].first[:, :weights].contiguous(),
                               second.items[0].second[:, :weights].contiguous())
    prefix, _ = segmented_scans(ctx, scanned, cont, forward=True, backward=False, step="window-distinct-scan")
    meter.mark("scans")
    if not per_group:
        (back,) = second.restore([prefix], "window-distinct-return")
        count = ArithmeticShares(RING64, back.first[n : 2 * n, 0].contiguous(), back.second[n : 2 * n, 0].contiguous())
        tests = [_plus_public(ctx, count, -min_members), _plus_public(ctx, count.neg(), cap)]
        if banks:
            bank_count = ArithmeticShares(RING64, back.first[n : 2 * n, 1].contiguous(),
                                          back.second[n : 2 * n, 1].contiguous())
            tests.append(_plus_public(ctx, bank_count, -min_banks))
        meter.mark("restore")
        signs = _signs(ctx, tests, "window-distinct-signs")
        below, over = signs[0], signs[1]
        enough = _not(ctx, below)
        if banks:
            enough = boolean.and_(ctx, enough, _not(ctx, signs[2]), "window-distinct-both")
        flag, over_a = _inject(ctx, [enough, over])
        meter.mark("thresholds")
        capped = count.add(mul(ctx, over_a, _plus_public(ctx, count.neg(), cap), "window-distinct-cap"))
        shown = mul(ctx, flag, capped, "window-distinct-out")
        meter.mark("outputs")
        return _stack([flag, shown]), flag.sum().reshape((1,))
    # every running sum undercounts (or equals) the counts of one time, and the last event of
    # each time reads them exactly: the group reaches the thresholds at some time iff some row does
    tests = [_plus_public(ctx, _column(prefix, 0), -min_members)]
    if banks:
        tests.append(_plus_public(ctx, _column(prefix, 1), -min_banks))
    signs = _signs(ctx, tests, "window-distinct-signs")
    reach = _not(ctx, signs[0])
    if banks:
        reach = boolean.and_(ctx, reach, _not(ctx, signs[1]), "window-distinct-both")
    meter.mark("thresholds")
    # the group's flag is the OR of its rows' bits: a boolean scan, a bit per row on the wire
    reached = segmented_any(ctx, reach, same_group.unpack(), "window-distinct-any")
    meter.mark("group-any")
    (flag,) = _inject(ctx, [reached])
    meter.mark("group-flags")
    start = _plus_public(ctx, cont.neg(), 1)
    groups_flagged = mul(ctx, start, flag, "window-distinct-groups").sum().reshape((1,))
    meter.mark("outputs")
    (back,) = second.restore([_stack([flag])], "window-distinct-return")
    own = ArithmeticShares(RING64, back.first[:n].contiguous(), back.second[:n].contiguous())
    meter.mark("restore")
    return own, groups_flagged


def window_distinct_cost_after_sorts(n: int, per_group: bool = False, min_banks: int = 1,
                                     members_at_one_bank: bool = False) -> int:
    """Rounds of ``distinct_in_window`` outside its sorts (two, or one with
    ``members_at_one_bank``), from the end of sort 1 (or the sharing) to the opening
    included, for n >= 1 rows in all, counted as ``cost_after_sort`` counts.

    >>> window_distinct_cost_after_sorts(1000, per_group=True) - window_distinct_cost_after_sorts(
    ...     1000, per_group=True, members_at_one_bank=True)
    9
    """
    both = 1 if min_banks > 1 else 0
    scans = max(0, ((2 if per_group else 3) * n + both * n - 1).bit_length())
    ends, grouping = (0 if members_at_one_bank else 8 + 1), 6 + 2 + scans
    if per_group:
        return ends + grouping + 8 + both + scans + 2 + 2 + 1 + 3 + 1
    return ends + grouping + 3 + 8 + both + 2 + 2 + 1


def _open_rows(ctx: Context, owners: Sequence[int], counts: list[int] | None, n_own: int | None,
               columns: ArithmeticShares | None, width: int, extra: ArithmeticShares | None,
               recipients: Sequence[int], step: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Open ``columns`` ((n, width), input order, given on the compute parties) to the
    banks, each recipient its own rows plus ``extra`` (one value); as ``PrivateJoin.
    to_owners`` without the way back. Cost: 1 round; 8 bytes per value to each recipient
    input party from every compute party, to a compute-party recipient from its
    predecessor."""
    rank = ctx.rank
    for r in recipients:
        if r not in owners:
            raise ProtocolError(f"rank {r} is not a bank of this run")
    sends = {}
    if ctx.is_compute:
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(int)
        for r in recipients:
            if r >= N_COMPUTE or r == (rank + 1) % N_COMPUTE:
                k = owners.index(r)
                sends[r] = torch.cat([columns.first[offsets[k] : offsets[k + 1]].reshape(-1), extra.first.reshape(-1)])
    senders = [] if rank not in recipients else ([(rank - 1) % N_COMPUTE] if ctx.is_compute else
                                                 list(range(N_COMPUTE)))
    got = ctx.exchange(step, sends=sends, recv_from=senders)
    if rank not in recipients:
        return None, None
    if ctx.is_compute:
        k = owners.index(rank)
        rows = slice(int(offsets[k]), int(offsets[k + 1]))
        total = torch.cat([columns.first[rows].reshape(-1) + columns.second[rows].reshape(-1),
                           extra.first.reshape(-1) + extra.second.reshape(-1)]) + got[senders[0]]
    else:
        total = got[0] + got[1] + got[2]
    if total.numel() != n_own * width + 1:
        raise ProtocolError(f"distinct_in_window: expected {n_own * width + 1} results, got {total.numel()}")
    return total[: n_own * width].reshape(n_own, width).numpy().copy(), total[n_own * width :].numpy().copy()


def _open_to(ctx: Context, shares: ArithmeticShares | None, to: int, n_own: int | None) -> np.ndarray | None:
    """Open a (q,) ring64 column to rank ``to`` alone: a compute party gets the missing
    component from its predecessor, an input party all three. Cost: 1 round; 8 bytes per
    value from each sender."""
    rank = ctx.rank
    sends = {}
    if ctx.is_compute and (to >= N_COMPUTE or to == (rank + 1) % N_COMPUTE):
        sends[to] = shares.first.reshape(-1)
    senders = [] if rank != to else ([(rank - 1) % N_COMPUTE] if ctx.is_compute else list(range(N_COMPUTE)))
    got = ctx.exchange("window-open", sends=sends, recv_from=senders)
    if rank != to:
        return None
    if ctx.is_compute:
        total = shares.first.reshape(-1) + shares.second.reshape(-1) + got[senders[0]]
    else:
        total = got[0] + got[1] + got[2]
    if total.numel() != n_own:
        raise ProtocolError(f"window_counts: expected {n_own} results, got {total.numel()}")
    return total.numpy().copy().reshape(n_own, 1)


__all__ = [
    "GroupResult",
    "cost_after_sort",
    "distinct_in_window",
    "distinct_threshold",
    "member_field_mask",
    "window_cost_after_sort",
    "window_counts",
    "window_distinct_cost_after_sorts",
]
