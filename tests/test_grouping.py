"""The secure group-by primitives of smpc.grouping against numpy/pandas on random rows:
distinct members with a predicate, duplicates across banks counting once, distinct banks,
caps, empty banks and groups, five banks as input parties; windows with their exact edges;
distinct members within a sliding window (repeats within and across banks and days, window
edges, single-member groups, windows that end the day others start), per row and per group;
and the exact rounds and bytes of every stage after the sorts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import smpc
from smpc.errors import InputError
from smpc.grouping import (
    cost_after_sort,
    distinct_in_window,
    distinct_threshold,
    window_cost_after_sort,
    window_counts,
    window_distinct_cost_after_sorts,
)
from smpc.join import hash_ids


def _keys(values) -> np.ndarray:
    return hash_ids([str(v) for v in values])


def _bank_rows(n_banks: int, rows: int, seed: int, groups: int = 8, members: int = 12) -> list[pd.DataFrame]:
    rng = np.random.default_rng(seed)
    out = []
    for b in range(n_banks):
        n = 0 if b == n_banks - 1 and n_banks > 3 else rows  # the last of five banks brings nothing
        frame = pd.DataFrame({"g": rng.integers(0, groups, n), "m": rng.integers(0, members, n),
                              "p": (rng.random(n) < 0.6).astype(np.int64)})
        out.append(frame.groupby(["g", "m"], as_index=False)["p"].max())  # each bank merges its repeats
    return out


def _expected(frames: list[pd.DataFrame], k: int, min_banks: int, cap: int):
    rows = pd.concat([f.assign(b=b) for b, f in enumerate(frames)], ignore_index=True)
    counted = rows[rows["p"] == 1]
    members = counted.groupby("g")["m"].nunique()
    banks = counted.groupby("g")["b"].nunique()
    flagged = {g for g in members.index if members[g] >= k and banks[g] >= min_banks}
    per_bank = []
    for f in frames:
        flags = np.array([g in flagged for g in f["g"]], dtype=np.int64)
        counts = np.array([min(int(members[g]), cap) if g in flagged else 0 for g in f["g"]], dtype=np.int64)
        per_bank.append(np.stack([flags, counts], axis=1).reshape(-1, 2))
    return per_bank, len(flagged)


def _run_distinct(frames, k, min_banks, cap, as_input_parties=False):
    n_banks = len(frames)
    owners = list(range(3, 3 + n_banks)) if as_input_parties else list(range(n_banks))
    world = 3 + n_banks if as_input_parties else 3

    def job(ctx):
        if ctx.rank not in owners:
            return distinct_threshold(ctx, owners, None, None, min_members=k, min_banks=min_banks, cap=cap)
        f = frames[owners.index(ctx.rank)]
        return distinct_threshold(ctx, owners, _keys(f["g"]), _keys(f["m"]), f["p"].to_numpy(),
                                  min_members=k, min_banks=min_banks, cap=cap)

    results = smpc.simulate(job, ring=64, input_parties=world - 3)
    return [results[o] for o in owners], [results[r] for r in range(world) if r not in owners]


@pytest.mark.parametrize("n_banks, as_input_parties", [(3, False), (5, True)])
@pytest.mark.parametrize("k, min_banks, cap", [(2, 1, 3), (3, 2, 100), (1, 3, 1)])
def test_distinct_threshold_equals_pandas(n_banks, as_input_parties, k, min_banks, cap):
    frames = _bank_rows(n_banks, 30, seed=k * 10 + n_banks)
    got, others = _run_distinct(frames, k, min_banks, cap, as_input_parties)
    expect, flagged = _expected(frames, k, min_banks, cap)
    for result, rows in zip(got, expect, strict=True):
        assert result.rows.tolist() == rows.tolist()
        assert result.total == flagged
    assert all(r.rows is None and r.total is None for r in others)


def test_a_member_held_by_several_banks_counts_once_and_needs_its_predicate_somewhere():
    # group 1: member "x" at all three banks, predicate set only at bank 2; member "y" at bank 0
    frames = [pd.DataFrame({"g": [1, 1], "m": ["x", "y"], "p": [0, 1]}),
              pd.DataFrame({"g": [1], "m": ["x"], "p": [0]}),
              pd.DataFrame({"g": [1, 2], "m": ["x", "x"], "p": [1, 0]})]
    got, _ = _run_distinct(frames, 2, 1, 10)
    assert [r.rows.tolist() for r in got] == [[[1, 2], [1, 2]], [[1, 2]], [[1, 2], [0, 0]]]
    got, _ = _run_distinct(frames, 3, 1, 10)
    assert all(r.rows[:, 0].sum() == 0 for r in got) and got[0].total == 0


def test_repeated_group_and_member_at_one_bank_is_refused_naming_the_bank():
    frames = [pd.DataFrame({"g": [1, 1], "m": ["x", "x"], "p": [1, 0]}),
              pd.DataFrame({"g": [1], "m": ["y"], "p": [1]}), pd.DataFrame({"g": [2], "m": ["z"], "p": [1]})]
    with pytest.raises(InputError, match="party 0: two of its rows have the same group and member"):
        _run_distinct(frames, 1, 1, 5)


def _window_expected(frames, window, cap, min_count):
    others = pd.concat(frames[1:], ignore_index=True)
    out = []
    for g, d in zip(frames[0]["g"], frames[0]["d"], strict=True):
        n = int(((others["g"] == g) & (others["d"] >= d - window) & (others["d"] <= d)).sum())
        out.append(int(n >= min_count) if min_count else min(n, cap))
    return out


@pytest.mark.parametrize("window, cap, min_count", [(0, 100, None), (3, 2, None), (5, 100, 2)])
def test_window_counts_equal_pandas_with_both_ends_included(window, cap, min_count):
    rng = np.random.default_rng(window)
    frames = [pd.DataFrame({"g": rng.integers(0, 4, 25), "d": rng.integers(0, 12, 25)})]
    frames += [pd.DataFrame({"g": rng.integers(0, 4, 25), "d": rng.integers(0, 12, 25)}).drop_duplicates()
               for _ in range(4)]
    frames[1] = pd.concat([frames[1], pd.DataFrame({"g": [9, 9], "d": [100 - window, 100]})])
    frames[0] = pd.concat([frames[0], pd.DataFrame({"g": [9, 9], "d": [100, 100 + window + 1]})])
    owners = list(range(3, 8))

    def job(ctx):
        f = frames[owners.index(ctx.rank)] if ctx.rank in owners else None
        return window_counts(ctx, owners, None if f is None else _keys(f["g"]),
                             None if f is None else f["d"].to_numpy(), requester=3, window_days=window, cap=cap,
                             min_count=min_count)

    results = smpc.simulate(job, ring=64, input_parties=5)
    assert results[3].rows[:, 0].tolist() == _window_expected(frames, window, cap, min_count)
    assert all(results[r].rows is None for r in range(8) if r != 3)


def _stage_costs(results) -> tuple[int, list[int]]:
    after = [{k: v for k, v in r.stages.items() if k not in ("share", "sort")} for r in results]
    rounds = sum(max(a[k][0] for a in after) for k in after[0])
    return rounds, [sum(v[1] for v in a.values()) for a in after]


@pytest.mark.parametrize("min_banks, bytes_per_row", [(1, (425.70666, 409.70666, 409.70666)),
                                                      (2, (635.68, 619.68, 619.68))])
def test_distinct_threshold_costs_exactly_what_it_states_after_the_sort(min_banks, bytes_per_row):
    per_bank = 1000
    sent = []
    for seed in (1, 2):  # the costs after the sort do not depend on the data

        def job(ctx, seed=seed):
            rng = np.random.default_rng(seed * 7 + ctx.rank)
            g = _keys(rng.integers(0, 50, per_bank))
            return distinct_threshold(ctx, [0, 1, 2], g, _keys([f"{ctx.rank}-{i}" for i in range(per_bank)]),
                                      rng.integers(0, 2, per_bank), min_members=2, min_banks=min_banks, cap=5)

        results = smpc.simulate(job, ring=64)
        rounds, by_party = _stage_costs(results)
        assert rounds == cost_after_sort(3 * per_bank, min_banks)
        assert all(r.stages["share"] == (2, 16 + 2 * 3 * 8 * per_bank) for r in results)
        sent.append(by_party)
    assert sent[0] == sent[1]
    assert [b / (3 * per_bank) for b in sent[0]] == pytest.approx(bytes_per_row, abs=1e-4)


def test_window_counts_cost_exactly_what_they_state_after_the_sort():
    for capped in (True, False):
        def job(ctx, capped=capped):
            rng = np.random.default_rng(ctx.rank)
            return window_counts(ctx, [0, 1, 2], _keys(rng.integers(0, 30, 200)), rng.integers(0, 60, 200),
                                 requester=0, window_days=3, cap=5, min_count=None if capped else 2)

        results = smpc.simulate(job, ring=64)
        rounds, _ = _stage_costs(results)
        assert rounds == window_cost_after_sort(2 * 200 + 2 * 200, capped)


# ----- distinct members within a sliding window -----------------------------------------------
def _in_window_expected(frames, window, k, cap, per_group, min_banks=1):
    rows = pd.concat([f.assign(b=b) for b, f in enumerate(frames)], ignore_index=True)
    counted = rows[rows["p"] == 1]
    days = {g: part for g, part in counted.groupby("g")}

    def members_banks(g, t):
        part = days.get(g)
        if part is None:
            return 0, 0
        inside = part[(part["d"] >= t - window) & (part["d"] <= t)]
        return inside["m"].nunique(), inside["b"].nunique()

    per_row = [[members_banks(g, t) for g, t in zip(f["g"], f["d"], strict=True)] for f in frames]
    hit = [[(c if c >= k and b >= min_banks else None) for c, b in counts] for counts in per_row]
    if not per_group:
        out = [np.array([[int(c is not None), min(c, cap) if c is not None else 0] for c in counts],
                        dtype=np.int64).reshape(-1, 2) for counts in hit]
        return out, sum(int(c is not None) for counts in hit for c in counts)
    flagged = {g for f, counts in zip(frames, hit, strict=True) for g, c in zip(f["g"], counts, strict=True)
               if c is not None}
    out = [np.array([[int(g in flagged)] for g in f["g"]], dtype=np.int64).reshape(-1, 1) for f in frames]
    return out, len(flagged)


def _window_frames(seed: int, window: int) -> list[pd.DataFrame]:
    rng = np.random.default_rng(seed)
    frames = []
    for b in range(5):
        n = 0 if b == 4 else 30  # the last bank brings nothing
        frames.append(pd.DataFrame({"g": rng.integers(0, 5, n), "m": rng.integers(0, 6, n),
                                    "d": rng.integers(0, 20, n), "p": (rng.random(n) < 0.6).astype(np.int64)}))
    # group 7: member "a" twice on one day at bank 0 and again at bank 1 (counts once), member "b"
    # exactly `window` days before "a", member "c" window + 1 days before (outside); group 8 has one
    # member; a non-predicate row of "d" inside the window counts for nothing
    frames[0] = pd.concat([frames[0], pd.DataFrame({"g": [7, 7, 7, 8, 7], "m": ["a", "a", "b", "z", "d"],
                                                    "d": [50, 50, 50 - window, 40, 49], "p": [1, 1, 1, 1, 0]})])
    frames[1] = pd.concat([frames[1], pd.DataFrame({"g": [7, 7, 8], "m": ["a", "c", "z"],
                                                    "d": [50, 49 - window, 40], "p": [1, 1, 1]})])
    frames[2] = pd.concat([frames[2], pd.DataFrame({"g": [7, 7], "m": ["a", "e"], "d": [50 + window, 51 + window],
                                                    "p": [0, 0]})])
    return [f.reset_index(drop=True) for f in frames]


def _run_in_window(frames, window, k, cap, per_group, min_banks=1, local=False):
    owners = list(range(3, 3 + len(frames)))

    def job(ctx):
        if ctx.rank not in owners:
            return distinct_in_window(ctx, owners, None, None, None, window_days=window, min_members=k, cap=cap,
                                      per_group=per_group, min_banks=min_banks, members_at_one_bank=local)
        f = frames[owners.index(ctx.rank)]
        return distinct_in_window(ctx, owners, _keys(f["g"]), _keys(f["m"]), f["d"].to_numpy(), f["p"].to_numpy(),
                                  window_days=window, min_members=k, cap=cap, per_group=per_group,
                                  min_banks=min_banks, members_at_one_bank=local)

    results = smpc.simulate(job, ring=64, input_parties=len(frames))
    return [results[o] for o in owners], [results[r] for r in range(3)]


@pytest.mark.parametrize("per_group", [False, True])
@pytest.mark.parametrize("window, k, cap, min_banks", [(0, 1, 5, 1), (3, 2, 2, 1), (6, 3, 100, 1), (0, 1, 5, 2),
                                                       (4, 2, 3, 3)])
def test_distinct_in_window_equals_pandas_on_five_banks(window, k, cap, min_banks, per_group):
    frames = _window_frames(window * 3 + k, window)
    got, compute = _run_in_window(frames, window, k, cap, per_group, min_banks)
    expect, total = _in_window_expected(frames, window, k, cap, per_group, min_banks)
    assert 0 < total
    for result, rows in zip(got, expect, strict=True):
        assert result.rows.tolist() == rows.tolist()
        assert result.total == total
    assert all(r.rows is None and r.total is None for r in compute)


def test_distinct_in_window_edges_repeats_and_single_members():
    window = 4
    frames = _window_frames(11, window)
    got, _ = _run_in_window(frames, window, 1, 100, False)
    # group 7 at day 50: "a" (three rows at two banks, one day) and "b" (exactly window days
    # before) count once each, "c" (window + 1 days before) not; at b's day, b and c; at d's
    # day (49, no predicate itself), b and c; group 8: its one member
    assert got[0].rows[-5:, 1].tolist() == [2, 2, 2, 1, 2]
    assert got[1].rows[-3:, 1].tolist() == [2, 1, 1]
    # window days after "a"'s last predicate row it still counts, window + 1 days after not
    assert got[2].rows[-2:].tolist() == [[1, 1], [0, 0]]
    assert got[4].rows.shape == (0, 2) and got[4].total == got[0].total


def test_distinct_in_window_counts_banks_within_the_window():
    # group 1 at day 10: members x and y at bank 0 (day 10), z at bank 1 (day 5): three
    # members at two banks with a window of 5 (z exactly window days before), one bank with 4
    frames = [pd.DataFrame({"g": [1, 1], "m": ["x", "y"], "d": [10, 10], "p": [1, 1]}),
              pd.DataFrame({"g": [1], "m": ["z"], "d": [5], "p": [1]}),
              pd.DataFrame({"g": [1, 1], "m": ["x", "w"], "d": [10, 9], "p": [0, 0]})]
    got, _ = _run_in_window(frames, 4, 2, 10, False, min_banks=2)
    assert [r.rows.tolist() for r in got] == [[[0, 0], [0, 0]], [[0, 0]], [[0, 0], [0, 0]]]
    got, _ = _run_in_window(frames, 5, 2, 10, False, min_banks=2)
    assert [r.rows.tolist() for r in got] == [[[1, 3], [1, 3]], [[0, 0]], [[1, 3], [0, 0]]]
    assert got[0].total == 3


def _ties_frames(local: bool = False) -> list[pd.DataFrame]:
    """Windows of 3 days that touch without overlapping, and a peak on a day of several starts
    and ends, at three banks; ``local``: without bank 2's repeat of d and with member keys
    prefixed by their bank (no member spans banks; the same groups flagged)."""
    rows = [  # (bank, group, member, day, predicate)
        # group 1: a's window [10, 13] ends the day before b's starts: never two at once
        (0, 1, "a", 10, 1), (1, 1, "b", 14, 1),
        # group 3: b exactly window days after a: two at once on day 13
        (0, 3, "a", 10, 1), (1, 3, "b", 13, 1),
        # group 2: bank 0's members leave on day 14 as bank 2's arrive (and bank 1's
        # non-predicate row): two members at one bank at a time, four in all
        (0, 2, "a1", 10, 1), (0, 2, "a2", 10, 1), (2, 2, "b1", 14, 1), (2, 2, "b2", 14, 1),
        (1, 2, "c", 14, 0),
        # group 5 (window 3): a, b cover 30..33, x, y 32..35, d, e, f 34..37; the only peak is
        # day 34 (x, y, d, e, f: 5 members at 3 banks), where a and b leave and d, e, f arrive;
        # d repeats on its day at two banks, g's row has no predicate
        (0, 5, "a", 30, 1), (1, 5, "b", 30, 1), (1, 5, "x", 32, 1), (2, 5, "y", 32, 1),
        (0, 5, "d", 34, 1), (0, 5, "d", 34, 1), (2, 5, "d", 34, 1), (0, 5, "e", 34, 1), (1, 5, "f", 34, 1),
        (2, 5, "g", 34, 0),
    ]
    if local:
        rows.remove((2, 5, "d", 34, 1))
    frame = pd.DataFrame(rows, columns=["b", "g", "m", "d", "p"])
    frames = [frame[frame["b"] == b].drop(columns="b").reset_index(drop=True) for b in range(3)]
    return _at_one_bank(frames) if local else frames


@pytest.mark.parametrize("k, min_banks, flagged", [
    (2, 1, {3, 2, 5}), (3, 1, {5}), (5, 1, {5}), (6, 1, set()), (2, 2, {3, 5}), (5, 3, {5}), (3, 3, {5}),
    (4, 2, {5}), (6, 3, set())])
@pytest.mark.parametrize("local", [False, True])
def test_distinct_in_window_ends_leave_before_starts_arrive_on_one_day(k, min_banks, flagged, local):
    """A window that ends the day before another starts never meets it: a group's count at a
    start must not include members (or banks) whose windows ended that day, in either mode,
    with members cut on shares or (``members_at_one_bank``) by their bank."""
    frames = _ties_frames(local)
    for per_group in (True, False):
        got, _ = _run_in_window(frames, 3, k, 100, per_group, min_banks, local=local)
        expect, total = _in_window_expected(frames, 3, k, 100, per_group, min_banks)
        for result, rows in zip(got, expect, strict=True):
            assert result.rows.tolist() == rows.tolist()
            assert result.total == total
        if per_group:
            assert {g for f, r in zip(frames, got, strict=True) for g, x in zip(f["g"], r.rows[:, 0], strict=True)
                    if x == 1} == flagged
            assert total == len(flagged)


def _at_one_bank(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """The same rows with every member key prefixed by its bank: no member spans banks."""
    return [f.assign(m=[f"{b}:{m}" for m in f["m"]]) for b, f in enumerate(frames)]


def _local_frames(seed: int, window: int) -> list[pd.DataFrame]:
    frames = _at_one_bank(_window_frames(seed, window))
    # group 9 at bank 0: q's predicate days 10, 12 (twice) and 12 + window + 1 cut its intervals
    # at its next day; r repeats day 10 + window; q's day-11 row has no predicate; bank 1's s
    # exactly window days after q's second day
    extra = pd.DataFrame({"g": [9, 9, 9, 9, 9, 9, 9], "m": ["q", "q", "q", "q", "r", "r", "q"],
                          "d": [10, 12, 12, 13 + window, 10 + window, 10 + window, 11], "p": [1, 1, 1, 1, 1, 1, 0]})
    frames[0] = pd.concat([frames[0], extra.assign(m="0:" + extra["m"])], ignore_index=True)
    frames[1] = pd.concat([frames[1], pd.DataFrame({"g": [9], "m": ["1:s"], "d": [12 + window], "p": [1]})],
                          ignore_index=True)
    return frames


@pytest.mark.parametrize("per_group", [False, True])
@pytest.mark.parametrize("window, k, cap, min_banks", [(0, 1, 5, 1), (3, 2, 2, 2), (4, 2, 3, 3), (2, 3, 100, 1)])
def test_distinct_in_window_members_at_one_bank_equals_pandas_and_the_two_sort_mode(window, k, cap, min_banks,
                                                                                      per_group):
    frames = _local_frames(window * 5 + k, window)
    expect, total = _in_window_expected(frames, window, k, cap, per_group, min_banks)
    assert 0 < total
    local, compute = _run_in_window(frames, window, k, cap, per_group, min_banks, local=True)
    spanning, compute_two = _run_in_window(frames, window, k, cap, per_group, min_banks)
    for one, two, rows in zip(local, spanning, expect, strict=True):
        assert one.rows.tolist() == two.rows.tolist() == rows.tolist()
        assert one.total == two.total == total
    # one sort and no ends stage against two sorts and the ends between them
    assert all("ends" not in r.stages and "ends" in s.stages for r, s in zip(compute, compute_two, strict=True))
    assert local[4].rows.shape == (0, 1 if per_group else 2)  # the empty bank
    assert all(r.rows is None and r.total is None for r in compute)


def test_distinct_in_window_members_at_one_bank_cuts_intervals_at_the_next_day():
    window = 4
    got, _ = _run_in_window(_local_frames(3, window), window, 1, 100, False, local=True)
    # group 9: q's intervals [10, 11], [12, 16], [17, 21]; r's [14, 18]; s's [16, 20]. q at 10
    # and 12 (twice): q alone; q at 17: q, r, s (q's 12 is window + 1 days before: already
    # counted as q); r at 14 (twice): q (exactly window days before) and r; q's day-11 row (no
    # predicate): q; s at 16: q (12, window days before), r and s
    assert got[0].rows[-7:, 1].tolist() == [1, 1, 1, 3, 2, 2, 1]
    assert got[1].rows[-1:, 1].tolist() == [3]


def test_distinct_in_window_refuses_bad_parameters():
    frames = [pd.DataFrame({"g": [1], "m": ["x"], "d": [1], "p": [1]}) for _ in range(3)]

    def job(ctx, **kw):
        f = frames[ctx.rank]
        return distinct_in_window(ctx, [0, 1, 2], _keys(f["g"]), _keys(f["m"]), f["d"].to_numpy(), f["p"].to_numpy(),
                                  min_members=1, cap=1, **kw)

    with pytest.raises(InputError, match="min_banks at least 0"):
        smpc.simulate(lambda ctx: job(ctx, window_days=1, min_banks=-1), ring=64)
    with pytest.raises(InputError, match="window_days must lie in"):
        smpc.simulate(lambda ctx: job(ctx, window_days=-1), ring=64)


@pytest.mark.parametrize("per_group, min_banks, local, bytes_per_row", [
    (False, 1, False, (764.09333, 740.09333, 740.09333)), (True, 1, False, (557.86, 541.86, 541.86)),
    (False, 2, False, (1468.15333, 1404.15333, 1404.15333)), (True, 2, False, (1207.74667, 1183.74667, 1183.74667)),
    (False, 1, True, (707.83333, 683.83333, 683.83333)), (True, 1, True, (501.6, 485.6, 485.6)),
    (False, 2, True, (1411.89333, 1347.89333, 1347.89333)), (True, 2, True, (1151.48667, 1127.48667, 1127.48667))])
def test_distinct_in_window_costs_exactly_what_it_states_after_the_sorts(per_group, min_banks, local, bytes_per_row):
    per_bank = 400
    sent = []
    for seed in (1, 2):  # the costs outside the sorts do not depend on the data

        def job(ctx, seed=seed):
            rng = np.random.default_rng(seed * 7 + ctx.rank)
            # with members_at_one_bank, member keys of one bank only (bank-local data)
            return distinct_in_window(ctx, [0, 1, 2], _keys(rng.integers(0, 30, per_bank)),
                                      _keys(rng.integers(0, 20, per_bank) + (100 * ctx.rank if local else 0)),
                                      rng.integers(0, 60, per_bank), rng.integers(0, 2, per_bank), window_days=5,
                                      min_members=2, cap=5, per_group=per_group, min_banks=min_banks,
                                      members_at_one_bank=local)

        results = smpc.simulate(job, ring=64)
        rounds, by_party = _stage_costs(results)
        assert rounds == window_distinct_cost_after_sorts(3 * per_bank, per_group, min_banks, local)
        assert ("ends" in results[0].stages) != local
        # words and values per row: group, pair, start, start + window + 1 (own end with
        # members_at_one_bank: no pair), predicate; the banks' end word and two weights
        width = (4 if local else 5) + (3 if min_banks > 1 else 0)
        assert all(r.stages["share"] == (2, 16 + 2 * width * 8 * per_bank) for r in results)
        sent.append(by_party)
    assert sent[0] == sent[1]
    assert [b / (3 * per_bank) for b in sent[0]] == pytest.approx(bytes_per_row, abs=1e-4)
