"""shared_attribute_links, velocity and mule_fan_in: equal to their plaintext twins on five
banks (input parties) and three (compute parties), edge cases included, planted truth found
with full precision and recall, requester-only answers, bad input refused with one error
naming the bank and column, and the JSON shapes of `smpc analyze`."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import recording

from smpc import analyses, datasets
from smpc.analyses.fraud_rings import _own_account_rows, _transfers, mule_fan_in, shared_attribute_links, velocity
from smpc.cli import main as cli_main
from smpc.errors import InputError

LINKS = {"attribute": "phone", "id": "customer_id", "min_ids": 5}
VELOCITY = {"requester": "bank_a", "id": "customer_id", "time": "date", "window_days": 3}
MULE = {"receiver": "receiver", "receiver_bank": "receiver_bank", "sender": "sender", "victim": "victim",
        "min_senders": 3}


def run_banks(fn, tables: dict[str, pd.DataFrame], **params):
    """Banks as compute parties (up to three) or input parties (more), every bank a
    recipient: ({bank: result}, {bank: messages received}, compute parties' results)."""
    banks = list(tables)
    if len(banks) > 3:
        owners = list(range(3, 3 + len(banks)))
        names = [f"compute_{r}" for r in range(3)] + banks
    else:
        owners = list(range(len(banks)))
        names = banks + [f"compute_{r}" for r in range(len(banks), 3)]

    def job(ctx, table=None):
        return fn(ctx, table, owners, **params)

    results, messages = recording.run_recorded(
        job, len(names), 64, party_names=names,
        args=lambda rank: {"table": tables[names[rank]] if rank in owners else None}, result_ranks=owners)
    return ({names[r]: results[r] for r in owners}, {names[r]: messages[r] for r in owners},
            [results[r] for r in range(len(names)) if r not in owners])


def merged(results: dict) -> dict:
    parts = [r for r in results.values() if r is not None]
    return {**parts[0], "by_bank": {b: v for r in parts for b, v in r["by_bank"].items()}}


def _flagged(result: dict, key: str) -> set:
    return {(b, i) for b, v in result["by_bank"].items() for i in v[key]}


# ----- shared_attribute_links ------------------------------------------------------------------
@pytest.mark.parametrize("n_banks", [3, 5])
@pytest.mark.parametrize("min_banks", [1, 2])
def test_shared_attribute_links_equals_its_twin_and_finds_the_planted_rings(n_banks, min_banks):
    tables, truth = datasets.synthetic_applications(n_banks, 120, seed=n_banks)
    # ids repeated within a bank (a customer applying twice with the same phone), an empty phone
    tables["bank_b"] = pd.concat([tables["bank_b"], tables["bank_b"].iloc[:3]], ignore_index=True)
    tables["bank_b"].loc[0, "phone"] = None
    params = {**LINKS, "min_banks": min_banks}
    results, _, others = run_banks(shared_attribute_links, tables, **params)
    plain = analyses.get("shared_attribute_links").run_plaintext(tables, **params)
    assert merged(results) == plain
    assert all(r is None for r in others)
    planted = {(b, i) for b, ids in truth["ring_ids"].items() for i in ids}
    if min_banks == 1:  # the ring held by one bank only is flagged only without min_banks
        planted |= {(b, i) for b, ids in truth["single_bank_ring_ids"].items() for i in ids}
    assert datasets.precision_recall(_flagged(plain, "flagged_ids"), planted) == (1.0, 1.0)
    expected_total = len(truth["ring_ids"]["bank_a"]) and 4 + (min_banks == 1)
    assert plain["flagged_total"] == expected_total
    row = plain["by_bank"]["bank_a"]["flagged_rows"][0]
    assert row["linked_ids"] == truth["ring_size"] and row["id"] in plain["by_bank"]["bank_a"]["flagged_ids"]


def test_an_attribute_shared_only_within_one_bank_is_not_flagged_with_min_banks_two():
    tables = {"bank_a": pd.DataFrame({"customer_id": ["a1", "a2", "a3", "a1"], "phone": ["P", "P", "P", "P"]}),
              "bank_b": pd.DataFrame({"customer_id": ["b1", "a1"], "phone": ["Q", "Q"]}),
              "bank_c": pd.DataFrame({"customer_id": pd.Series([], dtype=object),
                                      "phone": pd.Series([], dtype=object)})}
    for min_banks, flagged in ((1, {"a1", "a2", "a3"}), (2, set())):
        params = {"attribute": "phone", "id": "customer_id", "min_ids": 3, "min_banks": min_banks}
        results, _, _ = run_banks(shared_attribute_links, tables, **params)
        assert set(results["bank_a"]["by_bank"]["bank_a"]["flagged_ids"]) == flagged
        assert results["bank_c"]["by_bank"]["bank_c"] == {"flagged_ids": [], "flagged_rows": []}
        assert merged(results) == analyses.get("shared_attribute_links").run_plaintext(tables, **params)
    # a1 using Q at two banks counts once: Q has two ids, at two banks
    tables["bank_a"] = pd.DataFrame({"customer_id": ["a1"], "phone": ["Q"]})
    for min_ids, rows in ((3, []), (2, [{"row": 0, "id": "b1", "linked_ids": 1},
                                        {"row": 1, "id": "a1", "linked_ids": 1}])):
        params = {"attribute": "phone", "id": "customer_id", "min_ids": min_ids, "min_banks": 2, "max_count": 1}
        results, _, _ = run_banks(shared_attribute_links, tables, **params)
        assert results["bank_b"]["by_bank"]["bank_b"]["flagged_rows"] == rows
        assert results["bank_a"]["flagged_total"] == len(rows) // 2


# ----- velocity --------------------------------------------------------------------------------
@pytest.mark.parametrize("n_banks", [3, 5])
def test_velocity_equals_its_twin_finds_the_bursts_and_answers_the_requester_only(n_banks):
    tables, truth = datasets.synthetic_applications(n_banks, 100, seed=10 + n_banks)
    for params in ({**VELOCITY, "min_applications": truth["burst_applications"]}, {**VELOCITY, "max_count": 2}):
        results, received, others = run_banks(velocity, tables, **params)
        plain = analyses.get("velocity").run_plaintext(tables, **params)
        assert results["bank_a"] == plain
        assert all(results[b] is None for b in tables if b != "bank_a") and all(r is None for r in others)
        assert len(plain["counts"]) == len(tables["bank_a"])
        if n_banks > 3:  # input parties: the other banks receive nothing but the id types
            for bank in tables:
                tags = {tag.split("#")[0] for _, tag, _ in received[bank]}
                assert tags - {"keys", "common-key", "publish-each"} == ({"window-open"} if bank == "bank_a" else set())
    flagged = {c["id"] for c in results["bank_a"]["counts"] if c["other_banks_applications"] == 2}
    assert truth["burst_ids"] and set(truth["burst_ids"]) <= flagged
    results, _, _ = run_banks(velocity, tables, **{**VELOCITY, "min_applications": truth["burst_applications"]})
    found = {c["id"] for c in results["bank_a"]["counts"] if c["flagged"]}
    assert datasets.precision_recall(found, set(truth["burst_ids"])) == (1.0, 1.0)


def test_velocity_window_edges_repeats_and_ids_seen_nowhere_else():
    tables = {
        "bank_a": pd.DataFrame({"customer_id": ["x", "x", "y", "z"],
                                "date": ["2024-03-10", "2024-03-14", "2024-03-10", "2024-03-10"]}),
        # exactly 3 days before (counts), 4 days before (does not), the same day (counts), after (does not)
        "bank_b": pd.DataFrame({"customer_id": ["x", "x", "x", "x", "x"],
                                "date": ["2024-03-07", "2024-03-06", "2024-03-10", "2024-03-10", "2024-03-11"]}),
        "bank_c": pd.DataFrame({"customer_id": ["x", "y"], "date": ["2024-03-08T09:30:00", "2024-03-10"]}),
    }
    results, _, _ = run_banks(velocity, tables, **VELOCITY)
    assert results["bank_a"] == analyses.get("velocity").run_plaintext(tables, **VELOCITY)
    assert results["bank_a"]["counts"] == [
        {"id": "x", "time": "2024-03-10", "other_banks_applications": 3},
        {"id": "x", "time": "2024-03-14", "other_banks_applications": 1},
        {"id": "y", "time": "2024-03-10", "other_banks_applications": 1},
        {"id": "z", "time": "2024-03-10", "other_banks_applications": 0},
    ]


# ----- mule_fan_in -----------------------------------------------------------------------------
@pytest.mark.parametrize("n_banks", [3, 5])
def test_mule_fan_in_equals_its_twin_and_finds_the_planted_mules(n_banks):
    tables, truth = datasets.synthetic_transfers(n_banks, 150, seed=n_banks)
    results, _, _ = run_banks(mule_fan_in, tables, **MULE)
    plain = analyses.get("mule_fan_in").run_plaintext(tables, **MULE)
    assert merged(results) == plain
    planted = {(b, a) for b, accounts in truth["mule_accounts"].items() for a in accounts}
    assert datasets.precision_recall(_flagged(plain, "flagged_accounts"), planted) == (1.0, 1.0)
    assert plain["flagged_total"] == len(planted)


def test_mule_fan_in_answers_own_accounts_from_own_transfers_or_from_an_asking_row():
    """bank_a's account "PAID" gets a transfer from bank_a's own victim, so that transfer's row
    answers for it; "ASKED" (a customer of bank_a: it sends) is paid only by other banks'
    victims, so bank_a brings a row that only asks; "QUIET" is paid by nobody."""
    def transfers(sender, receiver, bank, victim):
        return pd.DataFrame({"sender": sender, "receiver": receiver, "receiver_bank": bank, "victim": victim})

    tables = {
        "bank_a": transfers(["a1", "a2", "ASKED", "QUIET"], ["PAID", "PAID", "shop", "shop"],
                            ["bank_a", "bank_a", "bank_b", "bank_b"], [1, 0, 0, 0]),
        "bank_b": transfers(["b1", "b2", "b3", "b1"], ["PAID", "ASKED", "ASKED", "PAID"], ["bank_a"] * 4,
                            [1, 1, 1, 1]),
        "bank_c": transfers(["c1", "c2"], ["PAID", "ASKED"], ["bank_a", "bank_a"], [1, 1]),
    }
    params = {**MULE, "min_senders": 3}
    results, _, _ = run_banks(mule_fan_in, tables, **params)
    plain = analyses.get("mule_fan_in").run_plaintext(tables, **params)
    assert merged(results) == plain
    assert plain["by_bank"]["bank_a"]["victim_senders"] == {"ASKED": 3, "PAID": 3}
    assert plain["by_bank"]["bank_b"]["flagged_accounts"] == []
    # bank_a's rows: its 4 distinct transfer pairs plus asking rows for a1, a2, ASKED and QUIET
    # (PAID is answered by its own transfers' rows)
    g, _, _, own = _transfers(tables["bank_a"], "bank_a", "receiver", "receiver_bank", "sender", "victim",
                              None, None, None)
    asking, rows = _own_account_rows(g, own, "bank_a")
    assert len(g) == 4 and sorted(asking) == ["ASKED", "QUIET", "a1", "a2"]
    answered_by = [g[i] if i < len(g) else "asks " + asking[i - len(g)] for i in rows]
    assert dict(zip(own, answered_by, strict=True)) == {
        "a1": "asks a1", "a2": "asks a2", "ASKED": "asks ASKED", "QUIET": "asks QUIET", "PAID": "bank_a\x1fPAID"}


def test_mule_fan_in_window_slides_with_both_ends_included():
    # M: victims on 03-01, 03-05 and twice on 03-10 (one victim); N: three victims in early
    # February, before any fixed range ending at as_of; P: victims at three banks, 4 days apart
    rows = [("v1", "M", "bank_b", 1, "2024-03-01"), ("v2", "M", "bank_b", 1, "2024-03-05"),
            ("v3", "M", "bank_b", 1, "2024-03-10"), ("v3", "M", "bank_b", 1, "2024-03-10"),
            ("v4", "N", "bank_c", 1, "2024-02-01"), ("v5", "N", "bank_c", 1, "2024-02-02"),
            ("v6", "N", "bank_c", 1, "2024-02-03"), ("w1", "N", "bank_c", 0, "2024-03-09"),
            ("v7", "P", "bank_b", 1, "2024-03-20")]
    frame = pd.DataFrame(rows, columns=["sender", "receiver", "receiver_bank", "victim", "date"])
    forwards = pd.DataFrame({"sender": ["M", "u8"], "receiver": ["OUT", "P"], "receiver_bank": ["bank_c", "bank_b"],
                             "victim": [0, 1], "date": ["2024-03-11", "2024-03-16"]})
    others = pd.DataFrame({"sender": ["u9", "N"], "receiver": ["P", "OUT2"], "receiver_bank": ["bank_b", "bank_a"],
                           "victim": [1, 0], "date": ["2024-03-24", "2024-03-12"]})
    tables = {"bank_a": frame, "bank_b": forwards, "bank_c": others}
    for window, as_of, flagged in ((9, None, {"M", "N", "P"}), (8, None, {"N", "P"}), (2, None, {"N"}),
                                   (1, None, set()), (9, "2024-03-09", {"N"}), (0, None, set())):
        params = {**MULE, "time": "date", "window_days": window, **({"as_of": as_of} if as_of else {})}
        results, _, _ = run_banks(mule_fan_in, tables, **params)
        got = merged(results)
        assert got == analyses.get("mule_fan_in").run_plaintext(tables, **params)
        assert {a for part in got["by_bank"].values() for a in part["flagged_accounts"]} == flagged
        assert got["flagged_total"] == len(flagged)
        assert got["by_bank"]["bank_c"]["flagged_accounts"] == (["N"] if "N" in flagged else [])
    # the fixed range [as_of - 5, as_of] (each bank dropping other transfers) misses N's
    # burst, which the sliding window of the same width finds
    fixed = {b: t[pd.to_datetime(t["date"]).between("2024-03-05", "2024-03-10")] for b, t in tables.items()}
    assert analyses.get("mule_fan_in").run_plaintext(fixed, **MULE)["flagged_total"] == 0
    sliding = analyses.get("mule_fan_in").run_plaintext(tables, **MULE, time="date", window_days=5,
                                                        as_of="2024-03-10")
    assert sliding["by_bank"]["bank_c"]["flagged_accounts"] == ["N"]


def test_mule_fan_in_window_counts_no_victim_whose_window_ended_the_day_another_starts():
    # T (held by bank_a): v1 on 03-01, v2 and v3 (two banks) on 03-04: with a window of 2
    # days v1's ends as theirs start. U (held by bank_b): u1 on 03-10, x on 03-11, d and e
    # (bank_c) on 03-12; with window 1 its only peak is 03-12 (x, d, e) as u1's window ends.
    rows = [("bank_a", "v1", "T", "bank_a", "2024-03-01"), ("bank_b", "v2", "T", "bank_a", "2024-03-04"),
            ("bank_c", "v3", "T", "bank_a", "2024-03-04"), ("bank_a", "u1", "U", "bank_b", "2024-03-10"),
            ("bank_b", "x", "U", "bank_b", "2024-03-11"), ("bank_c", "d", "U", "bank_b", "2024-03-12"),
            ("bank_c", "e", "U", "bank_b", "2024-03-12"), ("bank_c", "e", "U", "bank_b", "2024-03-12"),
            ("bank_a", "w", "U", "bank_b", "2024-03-12")]
    frame = pd.DataFrame(rows, columns=["bank", "sender", "receiver", "receiver_bank", "date"])
    frame["victim"] = (frame["sender"] != "w").astype(int)
    tables = {b: frame[frame["bank"] == b].drop(columns="bank").reset_index(drop=True)
              for b in ("bank_a", "bank_b", "bank_c")}
    victims = frame[frame["victim"] == 1].assign(day=pd.to_datetime(frame["date"]))

    def brute_force(window, k):  # every day of every window, counted in pandas
        out = set()
        for account, part in victims.groupby("receiver"):
            for t in pd.date_range(part["day"].min(), part["day"].max()):
                inside = part[(part["day"] >= t - pd.Timedelta(days=window)) & (part["day"] <= t)]
                if len(inside[["bank", "sender"]].drop_duplicates()) >= k:
                    out.add(account)
        return out

    for window, k, flagged in ((1, 3, {"U"}), (1, 4, set()), (2, 3, {"U"}), (2, 4, {"U"}), (2, 5, set()),
                               (3, 3, {"T", "U"})):
        params = {**MULE, "min_senders": k, "time": "date", "window_days": window}
        results, _, _ = run_banks(mule_fan_in, tables, **params)
        got = merged(results)
        assert got == analyses.get("mule_fan_in").run_plaintext(tables, **params)
        assert {a for part in got["by_bank"].values() for a in part["flagged_accounts"]} == flagged
        assert brute_force(window, k) == flagged and got["flagged_total"] == len(flagged)


def test_mule_fan_in_window_refuses_bad_dates_and_missing_time():
    tables, _ = datasets.synthetic_transfers(3, 20, seed=2)
    broken = tables["bank_b"].copy()
    broken.loc[broken.index[1], "date"] = "2024-02-30"
    params = {**MULE, "time": "date", "window_days": 2}
    with pytest.raises(InputError, match=r"bank_b, column 'date': row 2 is not a date"):
        run_banks(mule_fan_in, {**tables, "bank_b": broken}, **params)
    with pytest.raises(InputError, match=r"bank_b, column 'date': row 2 is not a date"):
        analyses.get("mule_fan_in").run_plaintext({**tables, "bank_b": broken}, **params)
    with pytest.raises(InputError, match="window_days and as_of need the time column"):
        analyses.get("mule_fan_in").run_plaintext(tables, **MULE, window_days=2)


def test_mule_fan_in_sliding_window_equals_its_twin_on_five_banks():
    tables, truth = datasets.synthetic_transfers(5, 60, seed=5)
    planted = {(b, a) for b, accounts in truth["mule_accounts"].items() for a in accounts}
    # planted victims pay on consecutive days (40, 41, ...): any three days hold three of them
    for window, found in ((2, planted), (1, set())):
        params = {**MULE, "time": "date", "window_days": window}
        results, _, _ = run_banks(mule_fan_in, tables, **params)
        plain = analyses.get("mule_fan_in").run_plaintext(tables, **params)
        assert merged(results) == plain
        assert _flagged(plain, "flagged_accounts") == found


# ----- bad input -------------------------------------------------------------------------------
def test_bad_input_is_refused_with_one_error_naming_bank_and_column():
    tables, _ = datasets.synthetic_applications(3, 30, seed=3)
    broken = {**tables, "bank_b": tables["bank_b"].drop(columns="phone")}
    with pytest.raises(InputError, match="bank_b: column 'phone' is missing"):
        run_banks(shared_attribute_links, broken, **LINKS)
    dates = tables["bank_c"].copy()
    dates.loc[2, "date"] = "31/31/2024"
    with pytest.raises(InputError, match=r"bank_c, column 'date': row 3 is not a date"):
        run_banks(velocity, {**tables, "bank_c": dates}, **VELOCITY)
    with pytest.raises(InputError, match=r"bank_c, column 'date': row 3 is not a date"):
        analyses.get("velocity").run_plaintext({**tables, "bank_c": dates}, **VELOCITY)
    numbers = {"bank_a": pd.DataFrame({"customer_id": [1, 2], "phone": ["p", "p"]}),
               "bank_b": pd.DataFrame({"customer_id": ["1", "x"], "phone": ["p", "q"]}),
               "bank_c": pd.DataFrame({"customer_id": [3], "phone": ["p"]})}
    numbers["bank_c"] = pd.DataFrame({"customer_id": pd.Series([], dtype=object), "phone": pd.Series([], dtype=object)})
    expected = r"bank_b, column 'customer_id': its ids are text while bank_a's are number"
    with pytest.raises(InputError, match=expected):
        run_banks(shared_attribute_links, numbers, **{**LINKS, "min_ids": 2})
    with pytest.raises(InputError, match=expected):
        analyses.get("shared_attribute_links").run_plaintext(numbers, **{**LINKS, "min_ids": 2})


def test_mismatched_id_types_are_refused_after_the_type_announcement_only():
    numbers = {"bank_a": pd.DataFrame({"customer_id": [1, 2], "date": ["2024-01-01"] * 2}),
               "bank_b": pd.DataFrame({"customer_id": ["1"], "date": ["2024-01-01"]}),
               "bank_c": pd.DataFrame({"customer_id": [5], "date": ["2024-01-02"]})}
    received = {}

    def job(ctx, table=None):
        try:
            return velocity(ctx, table, [0, 1, 2], **VELOCITY)
        finally:
            received[ctx.rank] = {tag.split("#")[0] for _, tag, _ in ctx.transport.received}

    with pytest.raises(InputError):
        recording.run_recorded(job, 3, 64, party_names=list(numbers),
                               args=lambda rank: {"table": numbers[list(numbers)[rank]]}, result_ranks=[0])
    # session set-up (keys) aside, the announcement is the only message
    assert received and all(tags <= {"keys", "common-key", "publish-each"} for tags in received.values())


# ----- catalogue and command line --------------------------------------------------------------
def test_the_three_analyses_are_registered_with_leakage_cost_twins_and_checks():
    for name in ("shared_attribute_links", "velocity", "mule_fan_in"):
        analysis = analyses.get(name)
        assert analysis.leakage and analysis.cost and analysis.check is not None and not analysis.releases_cells
        assert analysis.param("salt").owner == "join_salt"
    assert analyses.get("velocity").requester_only


def test_smpc_analyze_prints_every_banks_part_as_json(tmp_path, capsys):
    tables, truth = datasets.synthetic_applications(3, 40, seed=5)
    args = []
    for bank, table in tables.items():
        table.to_csv(tmp_path / f"{bank}.csv", index=False)
        args += ["--data", f"{bank}={tmp_path / f'{bank}.csv'}"]
    code = cli_main(["analyze", "shared_attribute_links", *args, "--param", "attribute=phone",
                     "--param", "id=customer_id", "--param", "min_ids=5", "--param", "min_banks=2", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)["result"]
    assert result["flagged_total"] == 4
    assert {b: v["flagged_ids"] for b, v in result["by_bank"].items()} == truth["ring_ids"]
    code = cli_main(["analyze", "velocity", *args, "--param", "requester=bank_a", "--param", "id=customer_id",
                     "--param", "time=date", "--param", "window_days=3", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    counts = json.loads(out.out)["result"]["counts"]
    assert len(counts) == len(tables["bank_a"]) and set(counts[0]) == {"id", "time", "other_banks_applications"}


def test_mule_fan_in_refuses_senders_and_receivers_stored_as_different_types():
    tables = {"bank_a": pd.DataFrame({"sender": [1, 2], "receiver": ["7", "8"], "receiver_bank": ["bank_b"] * 2,
                                      "victim": [1, 1]}),
              "bank_b": pd.DataFrame({"sender": [7], "receiver": ["9"], "receiver_bank": ["bank_a"], "victim": [0]}),
              "bank_c": pd.DataFrame({"sender": [3], "receiver": ["1"], "receiver_bank": ["bank_a"], "victim": [1]})}
    expected = r"bank_a, column 'sender': its ids are number while bank_a's column 'receiver' are text"
    with pytest.raises(InputError, match=expected):
        analyses.get("mule_fan_in").run_plaintext(tables, **MULE)
    with pytest.raises(InputError, match=expected):
        run_banks(mule_fan_in, tables, **MULE)
