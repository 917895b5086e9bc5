"""multi_lending and blacklist_hits on synthetic consortia with known answers: three banks as
the compute parties and five banks as input parties, results equal to the plaintext twins
exactly, planted customers flagged as they must be, and what a bank that is not a recipient
receives carries no result (every message is recorded)."""

from __future__ import annotations

import pandas as pd
import pytest
import recording

from smpc import analyses, datasets
from smpc.analyses.fraud import (
    blacklist_hits,
    blacklist_hits_plain,
    merge_bank_results,
    multi_lending,
    multi_lending_plain,
)
from smpc.errors import InputError, RangeError

THRESHOLD = 500_000.0
MIN_LENDERS = 3
ML = {"id": "customer_id", "balance": "balance", "balance_threshold": THRESHOLD, "min_lenders": MIN_LENDERS}


def run_banks(fn, tables: dict[str, pd.DataFrame], as_input_parties: bool, **params):
    """Run an analysis with the banks as compute parties (ranks 0..2) or as input parties
    (ranks 3..), every bank a recipient; returns ({bank: result}, {bank: received messages},
    compute results)."""
    banks = list(tables)
    if as_input_parties:
        owners = list(range(3, 3 + len(banks)))
        names = [f"compute_{r}" for r in range(3)] + banks
    else:
        owners = list(range(len(banks)))
        names = banks + [f"compute_{r}" for r in range(len(banks), 3)]
    world = len(names)

    def job(ctx, table=None):
        return fn(ctx, table, owners, **params)

    results, messages = recording.run_recorded(
        job, world, 64, party_names=names, args=lambda rank: {"table": tables[names[rank]] if rank in owners else None},
        result_ranks=owners)
    by_bank = {names[r]: results[r] for r in owners}
    received = {names[r]: messages[r] for r in owners}
    others = [results[r] for r in range(world) if r not in owners]
    return by_bank, received, others


def _all_flagged(result: dict) -> set[str]:
    return set().union(*(set(v["flagged_ids"]) for v in result["by_bank"].values()))


# ----- multi_lending ---------------------------------------------------------------------------
@pytest.mark.parametrize("n_banks, as_input_parties", [(3, False), (5, True)])
def test_multi_lending_equals_its_plaintext_twin_and_flags_the_planted_customers(n_banks, as_input_parties):
    tables = datasets.synthetic_consortium(n_banks, 250, seed=n_banks, balance_threshold=THRESHOLD,
                                           min_lenders=MIN_LENDERS)
    plain = multi_lending_plain(tables, **ML)
    by_bank, received, others = run_banks(multi_lending, tables, as_input_parties, **ML)
    assert merge_bank_results(list(by_bank.values())) == plain  # exactly, every bank's view
    for bank, result in by_bank.items():
        assert result["flagged_count"] == plain["flagged_count"]
        assert list(result["by_bank"]) == [bank]  # a bank sees its own flags only
    assert all(r is None for r in others)
    _, expect = datasets.planted_multi_lending(THRESHOLD, MIN_LENDERS, n_banks)
    flagged = _all_flagged(plain)
    assert {i: i in flagged for i in expect} == expect
    # the known cases really are of the advertised kinds
    assert plain["by_bank"]["bank_a"]["flagged_ids"].count("P-ALONE") == 1  # over the threshold alone
    assert "P-TOTAL" in plain["by_bank"]["bank_b"]["flagged_ids"]  # only in total, seen by both
    assert 0 < plain["flagged_count"] < sum(len(t) for t in tables.values())
    if as_input_parties:
        # what a bank receives after sending its rows: one message per compute party with
        # exactly its own distinct customers' flags and the count, nothing about others' rows
        for bank, msgs in received.items():
            customers = tables[bank]["customer_id"].nunique()
            assert sorted(p for p, _, _ in msgs) == [0, 1, 2]
            assert all(tag.startswith("join-open") and p.numel() == customers + 1 for _, tag, p in msgs)


def test_multi_lending_several_loans_at_one_bank_and_ids_absent_elsewhere():
    tables = {
        "bank_a": pd.DataFrame({"cid": ["L", "L", "L", "T", "S", "E"], "bal": [200_000, 200_000, 150_000.5, 300_000,
                                                                              1.0, 250_000]}),
        "bank_b": pd.DataFrame({"cid": ["T", "M", "E"], "bal": [250_000, 5, 250_000]}),
        "bank_c": pd.DataFrame({"cid": ["M", "N"], "bal": [5, 7]}),
    }
    params = {"id": "cid", "balance": "bal", "balance_threshold": THRESHOLD, "min_lenders": 3}
    plain = multi_lending_plain(tables, **params)
    assert plain == {
        "flagged_count": 2,  # L: 550000.50 at one bank; T: 550000 in total; E: exactly 500000 is not over
        "by_bank": {"bank_a": {"flagged_ids": ["L", "T"]}, "bank_b": {"flagged_ids": ["T"]},
                    "bank_c": {"flagged_ids": []}},
    }
    by_bank, _, _ = run_banks(multi_lending, tables, False, **params)
    assert merge_bank_results(list(by_bank.values())) == plain
    params["min_lenders"] = 2  # now M (two banks) and E are flagged too
    plain2 = multi_lending_plain(tables, **params)
    assert plain2["flagged_count"] == 4
    by_bank, _, _ = run_banks(multi_lending, tables, True, **params)
    assert merge_bank_results(list(by_bank.values())) == plain2


@pytest.mark.parametrize("threshold", [1e17, -1e17, 3e10, -3e10 - 0.01, -1e10, 0.0])
def test_multi_lending_thresholds_beyond_any_total_flag_everyone_or_no_one(threshold):
    """No total can pass +-(banks x balance_bound): a threshold out there is clamped, not
    refused for not fitting the join's arithmetic, and the answer equals the twin's."""
    tables = {
        "bank_a": pd.DataFrame({"cid": ["a", "b", "c"], "bal": [1e10, -1e10, 0.0]}),
        "bank_b": pd.DataFrame({"cid": ["a", "b"], "bal": [1e10, -1e10]}),
        "bank_c": pd.DataFrame({"cid": ["a", "b", "d"], "bal": [1e10, -1e10, 12.5]}),
    }
    params = {"id": "cid", "balance": "bal", "balance_threshold": threshold, "min_lenders": 4}
    plain = multi_lending_plain(tables, **params)
    by_bank, _, _ = run_banks(multi_lending, tables, False, **params)
    assert merge_bank_results(list(by_bank.values())) == plain
    assert plain["flagged_count"] == {1e17: 0, -1e17: 4, 3e10: 0, -3e10 - 0.01: 4, -1e10: 3, 0.0: 2}[threshold]


def test_multi_lending_refuses_malformed_ids_naming_bank_and_column():
    tables = datasets.synthetic_consortium(3, 30, seed=1)
    tables["bank_b"].loc[4, "customer_id"] = "  "
    with pytest.raises(InputError, match=r"bank_b, column 'customer_id': row 5 has an empty id"):
        run_banks(multi_lending, tables, False, **ML)
    tables["bank_b"].loc[4, "customer_id"] = None
    with pytest.raises(InputError, match=r"bank_b, column 'customer_id': row 5 has an empty id"):
        multi_lending_plain(tables, **ML)


def test_multi_lending_refuses_balances_over_the_bound():
    tables = {"bank_a": pd.DataFrame({"cid": ["x", "x"], "bal": [6e9, 6e9]}),
              "bank_b": pd.DataFrame({"cid": ["y"], "bal": [1.0]})}
    params = {"id": "cid", "balance": "bal", "balance_threshold": THRESHOLD, "min_lenders": 2}
    with pytest.raises(RangeError, match="bank_a"):
        run_banks(multi_lending, tables, False, **params)


# ----- blacklist_hits --------------------------------------------------------------------------
@pytest.mark.parametrize("n_banks, as_input_parties", [(3, False), (5, True)])
def test_blacklist_hits_equals_its_twin_and_only_the_requester_learns_anything(n_banks, as_input_parties):
    tables = datasets.synthetic_blacklists(n_banks, applicants=200, listed_per_bank=150, seed=n_banks)
    requester = "bank_a"
    plain = blacklist_hits_plain(tables, requester=requester, id="customer_id")
    by_bank, received, others = run_banks(blacklist_hits, tables, as_input_parties, requester=requester,
                                          id="customer_id")
    assert by_bank[requester] == plain
    _, expect = datasets.planted_hits(n_banks)
    assert {i: plain["hits"][i] for i in expect} == expect
    assert "Q-ELSE" not in plain["hits"]  # listed elsewhere but not an applicant
    assert any(v > 0 for v in plain["hits"].values()) and any(v == 0 for v in plain["hits"].values())
    for bank, result in by_bank.items():
        if bank != requester:
            assert result is None
            # no result message reaches a non-requester (as an input party it receives nothing)
            assert not [m for m in received[bank] if m[1].startswith("join-open")]
            if as_input_parties:
                assert received[bank] == []
    assert all(r is None for r in others)


# ----- the catalogue ----------------------------------------------------------------------------
def test_both_analyses_are_registered_with_leakage_cost_and_twins():
    for name in ("multi_lending", "blacklist_hits"):
        a = analyses.get(name)
        assert a.leakage and a.cost and a.plaintext is not None and a.check is not None
        assert a.fn.__module__ == "smpc.analyses.fraud"
    tables = datasets.synthetic_blacklists(3, applicants=60, listed_per_bank=40, seed=9)
    a = analyses.get("blacklist_hits")
    params = {"requester": "bank_a", "id": "customer_id"}
    assert a.run_simulated(tables, **params) == a.run_plaintext(tables, **params)
    bad = pd.DataFrame({"customer_id": ["ok", ""]})
    with pytest.raises(InputError, match="bank_z, column 'customer_id'"):
        a.check_input(bad, "bank_z", a.parse_params(params))
    with pytest.raises(InputError, match="requester 'bank_q'"):
        a.run_plaintext(tables, requester="bank_q", id="customer_id")


def test_multi_lending_check_twin_and_secure_run_refuse_the_same_merged_totals():
    """balance_bound bounds one customer's total at one bank: the local check and the twin
    refuse it as the secure run does (they checked single rows only, so a bank accepted a job
    that then failed), and an int64 wrap of that total (2049 loans of 9e13) is refused too."""
    from smpc.analyses.fraud import multi_lending_check

    over = {"bank_a": pd.DataFrame({"cid": ["x", "x"], "bal": [6e9, 6e9]}),
            "bank_b": pd.DataFrame({"cid": ["y"], "bal": [1.0]})}
    wrap = {"bank_a": pd.DataFrame({"cid": ["W"] * 2049 + ["s"], "bal": [9e13] * 2049 + [5.0]}),
            "bank_b": pd.DataFrame({"cid": ["y"], "bal": [1.0]})}
    for tables, bound in ((over, 1e10), (wrap, 9e13)):
        params = {"id": "cid", "balance": "bal", "balance_threshold": THRESHOLD, "min_lenders": 2,
                  "balance_bound": bound}
        with pytest.raises(RangeError, match="bank_a, column 'bal': a customer's loans total more than"):
            multi_lending_check(tables["bank_a"], "bank_a", **params)
        with pytest.raises(RangeError, match="a customer's loans total more than"):
            multi_lending_plain(tables, **params)
        with pytest.raises(RangeError, match="a customer's loans total more than"):
            run_banks(multi_lending, tables, False, **params)


def test_multi_lending_min_lenders_beyond_the_banks_flags_by_threshold_only():
    tables = {"bank_a": pd.DataFrame({"cid": ["a", "b"], "bal": [600_000.0, 1.0]}),
              "bank_b": pd.DataFrame({"cid": ["b"], "bal": [2.0]})}
    params = {"id": "cid", "balance": "bal", "balance_threshold": THRESHOLD, "min_lenders": 2**64}
    by_bank, _, _ = run_banks(multi_lending, tables, False, **params)
    assert merge_bank_results(list(by_bank.values())) == multi_lending_plain(tables, **params)
    assert multi_lending_plain(tables, **params)["flagged_count"] == 1
