"""The secure group-by primitives of smpc.grouping against numpy/pandas on random rows:
distinct members with a predicate, duplicates across banks counting once, distinct banks,
caps, empty banks and groups, five banks as input parties; windows with their exact edges;
and the exact rounds and bytes of every stage after the sort."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import smpc
from smpc.errors import InputError
from smpc.grouping import cost_after_sort, distinct_threshold, window_cost_after_sort, window_counts
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
