"""The private join: id normalisation and hashing, input of rows from compute-party and
input-party banks, sorting by key with duplicate-free tie-breaking, group flags, and results
travelling back to the banks that own the rows, and nowhere else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import recording
import torch

import smpc
from smpc.errors import InputError, RangeError
from smpc.join import (
    aggregate_by_id,
    bank_field_mask,
    hash_ids,
    normalise_ids,
    private_join,
    table_ids,
    tie_breakers,
)
from smpc.protocols.sort import tree_order
from smpc.sharing import N_COMPUTE, ArithmeticShares

U64 = (1 << 64) - 1


def run_recorded(fn, world: int, inputs: dict, names: list[str] | None = None, **kwargs):
    """Run ``fn(ctx, **kwargs, **inputs[rank])`` on ring64; return (results, received)."""
    return recording.run_recorded(fn, world, 64, party_names=names,
                                  args=lambda rank: {**kwargs, **inputs.get(rank, {})})


def _open_keys(ctx, join):
    keys = join.sorted.keys
    prev, nxt = (ctx.rank - 1) % 3, (ctx.rank + 1) % 3
    got = ctx.exchange("test-open", sends={nxt: keys.first}, recv_from=[prev])[prev]
    return keys.first ^ keys.second ^ got


# ----- ids and keys ---------------------------------------------------------------------------
def test_ids_are_normalised_before_hashing():
    ids = normalise_ids([" A-17 ", "Ａ-17", 1234, 1234.0, np.int64(99), "x y"], "bank_a", "cid")
    assert ids == ["A-17", "A-17", "1234", "1234", "99", "x y"]
    keys = hash_ids(ids, "salt-1")
    assert keys.dtype == np.int64 and keys[0] == keys[1] and keys[2] == keys[3] and keys[0] != keys[2]
    assert not np.array_equal(hash_ids(ids, "salt-2"), keys)  # the salt keys the hash
    assert hash_ids(["A-17"], "salt-1")[0] == keys[0]  # deterministic across banks


@pytest.mark.parametrize(
    "bad, problem",
    [
        (["C1", ""], "row 2 has an empty id"),
        (["C1", "   "], "row 2 has an empty id"),
        (["C1", None], "row 2 has an empty id"),
        ([1.0, float("nan")], "row 2 has an empty id"),
        ([1.5], "not an id"),
        (["ok", "QWE\tRTY"], "row 2 has an id with a non-printable character (U+0009) at position 4"),
        (["PAN\u200b4111111111111111"], "non-printable character (U+200B) at position 4"),
        ([True], "not an id"),
        (["x" * 300], "characters"),
        ([12345678901234567.0, 1.0], "beyond 2^53"),
    ],
)
def test_malformed_or_empty_ids_are_refused_naming_bank_and_column(bad, problem):
    """The refusal travels to the other banks: it names bank, column, row and problem, but
    never the id (a card number pasted with a zero-width space is still a card number)."""
    with pytest.raises(InputError) as err:
        table_ids(pd.DataFrame({"cid": pd.Series(bad, dtype=object)}), "bank_b", "cid")
    text = str(err.value)
    assert "bank_b" in text and "'cid'" in text and problem in text
    assert not any(word in text for word in ("4111", "QWE", "RTY", "12345678901234567", "True"))


def test_missing_id_column_names_the_bank():
    with pytest.raises(InputError, match="bank_c: column 'customer_id' is missing"):
        table_ids(pd.DataFrame({"cid": ["a"]}), "bank_c", "customer_id")


def test_aggregate_by_id_merges_a_banks_rows_per_customer():
    ids, sums = aggregate_by_id(["a", "b", "a", "c", "a"], np.array([1, 2, 3, 4, 5]))
    assert ids == ["a", "b", "c"] and sums.reshape(-1).tolist() == [9, 2, 4]


def test_tie_breakers_are_distinct_and_sort_by_bank_then_row():
    words = tie_breakers([3, 0, 2])
    natural = [int(v) & U64 for v in tree_order(words).tolist()]
    assert natural == sorted(natural) and len(set(natural)) == 5
    assert natural[3] >> 40 == 2  # bank index above the row index


# ----- the join -------------------------------------------------------------------------------
def _bank_rows():
    ids = {
        0: ["k1", "k2", "k1", "k3"],  # k1 twice at bank 0
        1: ["k2", "k4"],
        2: [],  # a bank with no rows
        3: ["k1", "k5", "k2"],
    }
    values = {b: np.arange(len(v), dtype=np.int64).reshape(-1, 1) * 10 + b for b, v in ids.items()}
    return ids, values


@pytest.mark.parametrize("unique", [False, True])
def test_join_groups_rows_by_customer_and_returns_each_bank_its_rows_only(unique):
    ids, values = _bank_rows()
    if unique:  # one row per customer and bank
        ids[0] = ["k1", "k2", "k3"]
        values[0] = np.array([[1], [2], [3]])
    owners = [0, 1, 3, 4]  # banks 0, 1 are compute parties; banks 2 (empty), 3 input parties
    rank_of_bank = dict(zip(range(4), owners, strict=True))

    def job(ctx, ids=None, values=None):
        keys = None if ids is None else hash_ids(ids, "s")
        join = private_join(ctx, owners, keys, values, n_values=1, unique=unique)
        opened = result = None
        if ctx.is_compute:
            opened = _open_keys(ctx, join)
            result = ArithmeticShares.cat([join.totals(join.values), join.totals(join.ones())], dim=1)
        own, _ = join.to_owners(result, 2)
        return opened, own

    inputs = {rank_of_bank[b]: {"ids": ids[b], "values": values[b]} for b in ids}
    results, received = run_recorded(job, world=5, inputs=inputs)
    opened = results[0][0]
    n = sum(len(v) for v in ids.values())
    assert opened.shape == (n, 1 if unique else 2)
    # sort keys after tie-breaking are distinct (the quicksort's precondition) and sorted
    natural = [tuple(int(v) & U64 for v in tree_order(row).tolist()) for row in opened]
    assert len(set(natural)) == n and natural == sorted(natural)
    # every bank's rows: its customers' totals and row counts across all banks (pandas)
    frames = [pd.DataFrame({"id": ids[b], "v": values[b].reshape(-1), "bank": b}) for b in ids]
    rows = pd.concat(frames, ignore_index=True)
    totals = rows.groupby("id")["v"].transform("sum")
    sizes = rows.groupby("id")["v"].transform("size")
    for b, rank in rank_of_bank.items():
        own = results[rank][1]
        mask = rows["bank"] == b
        assert own.shape == (int(mask.sum()), 2)
        assert own[:, 0].tolist() == totals[mask].tolist()
        assert own[:, 1].tolist() == sizes[mask].tolist()
    # compute party 2 holds no data and is not a recipient: no result message reaches it
    assert results[2][1] is None
    assert not [m for m in received[2] if m[1].startswith("join-open")]
    # an input-party bank receives exactly one message per compute party: its own rows
    for b in (2, 3):
        got = received[rank_of_bank[b]]
        assert sorted(p for p, _, _ in got) == [0, 1, 2]
        assert all(tag.startswith("join-open") and m.numel() == 2 * len(ids[b]) for _, tag, m in got)


def test_join_with_only_input_party_banks_and_a_single_recipient():
    ids = {3: ["a", "b"], 4: ["b", "c"], 5: ["b"]}

    def job(ctx, ids=None):
        join = private_join(ctx, [3, 4, 5], None if ids is None else hash_ids(ids), unique=True)
        cols = join.totals(join.ones()) if ctx.is_compute else None
        own, _ = join.to_owners(cols, 1, recipients=[4])
        return None if own is None else own[:, 0].tolist()

    inputs = {r: {"ids": v} for r, v in ids.items()}
    results, received = run_recorded(job, world=6, inputs=inputs)
    assert results[4] == [3, 1]
    assert results[3] is None and results[5] is None
    for rank in (3, 5):  # non-recipients get nothing at all (they only sent their rows)
        assert received[rank] == []


def test_unique_join_refuses_repeated_keys_at_one_bank():
    def job(ctx, ids=None):
        private_join(ctx, [0, 1], None if ids is None else hash_ids(ids), unique=True)

    with pytest.raises(InputError, match="bank_a: two of its distinct ids share"):
        smpc.simulate(job, ring=64, inputs={0: {"ids": ["x", "x"]}, 1: {"ids": ["y"]}},
                      party_names=["bank_a", "bank_b", "compute_2"])


def test_unique_keys_leave_the_bank_bits_free():
    mask = bank_field_mask(5)
    assert bin(int(tree_order(torch.tensor([mask]))[0]) & U64) == "0b111"  # 3 least significant bits


def test_join_refuses_totals_that_could_overflow_before_sorting():
    def job(ctx, ids=None, values=None):
        private_join(ctx, [0, 1, 2], None if ids is None else hash_ids(ids), values, n_values=1,
                     value_bound=2.0**61, what="test totals")

    inputs = {r: {"ids": ["a", "b"], "values": np.array([[1], [2]])} for r in range(N_COMPUTE)}
    with pytest.raises(RangeError, match="test totals"):
        smpc.simulate(job, ring=64, inputs=inputs)
