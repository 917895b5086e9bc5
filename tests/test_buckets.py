"""Bucketed joins: multi_lending split into K padded bucket sessions, run in this process or
on worker processes, against the single session and the plaintext twin."""

from __future__ import annotations

import collections
import math
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
from recording import run_recorded

from smpc.analyses import get
from smpc.analyses.fraud import (
    _ml_public,
    multi_lending,
    multi_lending_bucket,
    multi_lending_buckets,
    multi_lending_plain,
)
from smpc.buckets import (
    OVERFLOW_LOG2,
    bucket_key,
    bucket_of,
    choose_buckets,
    overflow_bound,
    pad_rows,
    split_rows,
)
from smpc.errors import InputError, PartyUnavailable
from smpc.join import hash_ids, salt_key
from smpc.workers import InProcessEngine, ProcessEngine, run_bucketed

PARAMS = dict(id="id", balance="bal", balance_threshold=2.5e9, min_lenders=3, balance_bound=1e10)


def books(seed: int = 7, rows: int = 40, empty: str | None = None) -> dict[str, pd.DataFrame]:
    """Three banks' loans: ids repeated within a bank, one customer at every bank, balances of
    1e9 and negative ones, and optionally one bank with no rows."""
    rng = np.random.default_rng(seed)
    out = {}
    for bank in ("bank_a", "bank_b", "bank_c"):
        ids = [f"c{int(i)}" for i in rng.integers(0, rows, rows)] + ["everywhere", "everywhere"]
        bal = np.concatenate([rng.integers(-5 * 10**8, 2 * 10**9, rows) / 100, [1e9, 3e8]])
        out[bank] = pd.DataFrame({"id": ids, "bal": bal})
    if empty is not None:
        out[empty] = out[empty].iloc[:0]
    return out


# ----- the bucket hash and the pad ------------------------------------------------------------
def test_bucket_key_is_derived_from_the_salt_with_its_own_label():
    assert bucket_key("salt-1") != bucket_key("salt-2")
    assert bucket_key("salt-1") != salt_key("salt-1")
    keys = hash_ids([f"id{i}" for i in range(400)], "salt-1")
    a, b = bucket_of(keys, 4, "salt-1"), bucket_of(keys, 4, "salt-2")
    assert np.array_equal(a, bucket_of(keys.copy(), 4, "salt-1"))  # the same at every bank
    assert (a != b).mean() > 0.5  # another consortium secret, another partition
    assert set(np.bincount(a, minlength=4)) and np.bincount(a, minlength=4).min() > 60


@pytest.mark.parametrize("n,k", [(2000, 4), (600, 2), (1500, 7)])
def test_the_pad_bounds_overflow_by_2_to_the_minus_40_and_the_bound_holds_exactly(n, k):
    pad = pad_rows(n, k)
    assert overflow_bound(n, k, pad) <= OVERFLOW_LOG2 < overflow_bound(n, k, pad - 1)
    # the Chernoff bound is above the exact binomial tail (k * Pr[Bin(n, 1/k) > P]) at every P near it
    for p in (pad - 40, pad - 10, pad):
        tail = sum(math.comb(n, j) * (k - 1) ** (n - j) for j in range(p + 1, n + 1))  # times k^n, in integers
        assert math.log2(k * tail) - n * math.log2(k) <= overflow_bound(n, k, p) + 1e-9


def test_choose_buckets_rule():
    assert choose_buckets(10**6, 1) == 1
    assert choose_buckets(10**6, 2) == 4
    assert choose_buckets(2**18 * 2, 2) == 2
    assert choose_buckets(2**18 * 2 + 1, 2) == 4
    with pytest.raises(InputError):
        choose_buckets(10, 0)


def test_dummy_rows_have_reserved_distinct_keys_and_real_rows_come_first():
    keys = hash_ids([f"x{i}" for i in range(50)], "s")
    values = np.arange(50, dtype=np.int64).reshape(50, 1)
    out = split_rows("bank_b", keys, values, 3, "s", 1, 3, np.array([-99], dtype=np.int64))
    assert out.pad == pad_rows(50, 3) < 50
    other = split_rows("bank_a", keys, values, 3, "s", 0, 3, np.array([-99], dtype=np.int64))
    for b in range(3):
        real = len(out.rows[b])
        assert len(out.keys[b]) == out.pad
        assert (out.keys[b][:real] >= 0).all()  # top bit cleared
        assert np.array_equal(out.values[b][:real, 0], out.rows[b])
        assert (out.keys[b][real:] < 0).all() and (out.values[b][real:, 0] == -99).all()
        # one session's keys: a bank's keys distinct, and dummies distinct from every other key
        assert np.unique(out.keys[b]).size == out.pad
        both = np.concatenate([out.keys[b], other.keys[b]])
        dummies = both[both < 0]  # the reserved top bit
        assert np.unique(dummies).size == dummies.size and not set(dummies.tolist()) & set(keys.tolist())
        assert (other.keys[b] < 0).sum() == out.pad - len(other.rows[b])


def skewed_ids(n: int, buckets: int, salt: str = "smpc-consortium-v1") -> list[str]:
    """n ids that all fall into bucket 0."""
    candidates = [f"skew{i}" for i in range(n * buckets * 3)]
    which = bucket_of(hash_ids(candidates, salt), buckets, salt)
    chosen = [c for c, b in zip(candidates, which.tolist(), strict=True) if b == 0]
    return chosen[:n]


def test_a_bank_whose_bucket_exceeds_the_pad_is_refused_before_any_session_starts():
    ids = skewed_ids(1000, 2)
    assert pad_rows(1000, 2) < 1000
    tables = books()
    tables["bank_b"] = pd.DataFrame({"id": ids, "bal": np.ones(len(ids))})
    events = []
    with pytest.raises(InputError, match=r"bank_b: its customers fall too unevenly into the 2 buckets") as info:
        run_bucketed("multi_lending", tables, PARAMS, buckets=2, engine=InProcessEngine(),
                     on_event=lambda kind, b: events.append((kind, b)))
    assert "1000" not in str(info.value)  # the bank's bucket size stays with the bank
    assert events == []


def test_an_all_one_bucket_skew_within_the_pad_is_handled_exactly():
    tables = books(rows=10)
    tables["bank_a"] = pd.DataFrame({"id": skewed_ids(12, 4) + ["everywhere"], "bal": [1e9] * 13})
    result, _ = run_bucketed("multi_lending", tables, PARAMS, buckets=4, engine=InProcessEngine())
    assert result == multi_lending_plain(tables, **PARAMS)


# ----- results --------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 4, 7])
@pytest.mark.parametrize("empty", [None, "bank_b"])
def test_bucketed_results_equal_the_single_session_and_the_plaintext_twin(k, empty):
    tables = books(seed=k, empty=empty)
    plain = multi_lending_plain(tables, **PARAMS)
    single, _ = get("multi_lending").run_local(tables, PARAMS)
    result, cost = run_bucketed("multi_lending", tables, PARAMS, buckets=k, engine=InProcessEngine())
    assert result == single == plain
    assert plain["flagged_count"] > 0 and "everywhere" in plain["by_bank"]["bank_a"]["flagged_ids"]
    assert cost["buckets"] == k
    if k > 1:  # the merge: every compute party sends its 8-byte count share to its successor, once
        assert len(cost["sessions"]) == k and cost["merge"] == {"rounds": 1, "bytes": 24}
        assert set(cost["phase_seconds"]) == {"prepare", "sessions", "merge"}


def test_negative_thresholds_never_flag_a_dummy_and_four_banks_use_input_parties():
    tables = books(seed=3)
    tables["bank_d"] = tables["bank_a"].assign(bal=-tables["bank_a"]["bal"])
    params = dict(PARAMS, balance_threshold=-1e6, min_lenders=2)
    plain = multi_lending_plain(tables, **params)
    result, _ = run_bucketed("multi_lending", tables, params, buckets=3, engine=InProcessEngine())
    assert result == plain


def test_k_of_one_is_the_single_session_with_its_cost():
    tables = books(seed=11)
    single, cost1 = get("multi_lending").run_local(tables, PARAMS)
    result, cost = run_bucketed("multi_lending", tables, PARAMS, buckets=1)
    assert result == single
    assert cost["buckets"] == 1 and "sessions" not in cost
    assert set(cost1) <= set(cost)


# ----- exact costs of a bucket session --------------------------------------------------------
def _steps(received) -> tuple[collections.Counter, collections.Counter]:
    count, size = collections.Counter(), collections.Counter()
    for _, tag, payload in received:
        step = tag.split("#")[0]
        count[step] += 1
        size[step] += payload.numel() * payload.element_size()
    return count, size


def _sort_rounds(count) -> int:
    """The quicksort's rounds: one per step (a step is one exchange), 7 per level but fewer
    at a level whose segments are all small; the depth depends on the secret shuffle."""
    return len({s for s in count if s.startswith("qsort")})


def test_a_bucket_session_costs_the_single_session_formula_at_its_padded_rows():
    names = ["bank_a", "bank_b", "bank_c"]
    tables = books(seed=5)
    k = 2
    prep = {r: multi_lending_buckets(tables[names[r]], names[r], r, 3, k, **PARAMS) for r in range(3)}
    public = _ml_public(3, **PARAMS)
    pads = [prep[r][1].pad for r in range(3)]
    n = sum(pads)
    (bucket, recv_b) = run_recorded(
        lambda ctx, keys, values: (multi_lending_bucket(ctx, [0, 1, 2], keys, values, **public), ctx.comm_stats()),
        args=lambda r: {"keys": prep[r][1].keys[0], "values": prep[r][1].values[0]}, party_names=names,
        result_ranks=[0, 1, 2])
    # the single session on tables of exactly the padded sizes
    same = {b: pd.DataFrame({"id": [f"p{b}{i}" for i in range(p)], "bal": np.ones(p)}) for b, p in zip(names, pads,
                                                                                                     strict=True)}
    (single, recv_s) = run_recorded(
        lambda ctx, table: (multi_lending(ctx, table, [0, 1, 2], **PARAMS), ctx.comm_stats()),
        args=lambda r: {"table": same[names[r]]}, party_names=names, result_ranks=[0, 1, 2])
    outside = []
    for rank in range(3):
        cb, sb = _steps(recv_b[rank])
        cs, ss = _steps(recv_s[rank])
        rounds_b, rounds_s = bucket[rank][1]["rounds"], single[rank][1]["rounds"]
        assert rounds_b - _sort_rounds(cb) == rounds_s - _sort_rounds(cs)
        outside.append(rounds_b - _sort_rounds(cb))
        other = {s for s in cs if not s.startswith("qsort")}
        assert other == {s for s in cb if not s.startswith("qsort")}
        for s in other:  # every step but the sort's: the same messages and bytes
            assert cb[s] == cs[s], s
            assert sb[s] == ss[s] - (8 * cs[s] if s == "join-open" else 0), s  # the count stays shared
        # the quicksort: 7 rounds per level, each with the same messages as the single session's levels
        assert {s.split("-", 1)[1] for s in cb if s.startswith("qsort")} == {
            s.split("-", 1)[1] for s in cs if s.startswith("qsort")}
    # the job's rounds outside the sort at N padded rows (rank 0: it takes part in every one),
    # ceil(log2 N) of them the scans
    assert max(outside) == outside[0] == 34 + math.ceil(math.log2(n))


# ----- worker processes -----------------------------------------------------------------------
def test_worker_processes_give_the_same_results_and_report_every_worker():
    tables = books(seed=13)
    engine = ProcessEngine(workers=2)
    result, cost = run_bucketed("multi_lending", tables, PARAMS, buckets=4, engine=engine)
    assert result == multi_lending_plain(tables, **PARAMS)
    assert {s["worker"] for s in cost["sessions"]} == {0, 1}
    assert len(cost["peak_rss_per_worker"]) == 6 and min(cost["peak_rss_per_worker"].values()) > 0
    assert cost["rounds"] < sum(s["rounds"] for s in cost["sessions"])  # two chains, not one
    assert engine.pids == {}


def test_a_killed_worker_aborts_the_job_with_party_unavailable_and_leaves_no_process():
    tables = books(seed=17, rows=60)
    engine = ProcessEngine(workers=2)
    killed = []

    def kill(kind: str, b: int) -> None:
        if kind == "started" and b == 0 and not killed:
            killed.append(dict(engine.pids))
            os.kill(engine.pids[(1, 0)], signal.SIGKILL)

    start = time.monotonic()
    with pytest.raises(PartyUnavailable):
        run_bucketed("multi_lending", tables, PARAMS, buckets=4, engine=engine, timeout=60, on_event=kill)
    assert time.monotonic() - start < 60  # never waits out the timeout
    assert killed
    for pid in killed[0].values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_dp_noise_is_added_once_to_the_merged_count():
    tables = books(seed=19)
    params = dict(PARAMS, dp_epsilon=1.0)
    plain = multi_lending_plain(tables, **params)
    result, cost = run_bucketed("multi_lending", tables, params, buckets=3, engine=InProcessEngine())
    assert result["by_bank"] == plain["by_bank"]
    assert result["noise"] == plain["noise"] and result["epsilon_spent"] == 1.0
    assert cost["merge"]["rounds"] == 2  # the noise is shared, then the noisy sum opened


@pytest.mark.parametrize("module", ["smpc.buckets", "smpc.workers", "smpc.transport.pipes"])
def test_the_new_modules_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_the_bank_side_example_runs():
    import doctest

    from smpc.analyses import fraud

    (test,) = doctest.DocTestFinder().find(fraud.multi_lending_buckets, "multi_lending_buckets", globs=vars(fraud))
    assert doctest.DocTestRunner().run(test).failed == 0
