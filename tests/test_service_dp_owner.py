"""Differentially private woe_iv and psi as jobs of three real party services, with the
customer cap set by the data owners.

- Each bank's data source says, in ``[data.NAME.dp]``, its customer id column (each bank its
  own name, or none: one row per customer) and the most rows per customer a private job
  keeps. The job runs with the largest cap any bank declares (the noise is scaled to it),
  and every bank caps its own rows by its own column.
- A requester may not send ``dp_customer`` or ``dp_rows_per_customer``: refused as every
  owner-set parameter is, before any share moves and before any epsilon is debited.
- woe_iv and psi with ``dp_epsilon`` are charged to every party's budget like the other
  private analyses, and refused once it is spent.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from service_harness import BANKS, COLUMNS, Cluster, smpc_cli

from smpc.errors import PolicyError

BOOK_COLUMNS = {"grade": {"type": "str", "categories": ["A", "B", "C"]}, "default": "int", "period": "str"}
# bank_a: one row per customer, no id column; bank_b: 4 rows per "cust", cap 3; bank_c: 5 rows
# per "client_no", cap 2. The job's cap is 3; bank_b keeps 3 of 4, bank_c 3 of 5.
IDS = {"bank_a": (None, 1, 1), "bank_b": ("cust", 4, 3), "bank_c": ("client_no", 5, 2)}
ROWS = 300
JOB_CAP = 3
BUDGET = 20.0


def book(bank: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    column, per_customer, _ = IDS[bank]
    frame = pd.DataFrame({"grade": rng.choice(["A", "B", "C"], ROWS), "default": rng.integers(0, 2, ROWS),
                          "period": rng.choice(["r", "c"], ROWS)})
    if column is not None:
        frame[column] = [f"{bank}-{i // per_customer}" for i in range(ROWS)]
    return frame


def capped(frame: pd.DataFrame, bank: str) -> pd.DataFrame:
    column = IDS[bank][0]
    return frame if column is None else frame[frame.groupby(column).cumcount() < JOB_CAP]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("dp_owner")
    (root / "data").mkdir()
    books, sources, policies = {}, {}, {}
    for i, bank in enumerate(BANKS):
        books[bank] = book(bank, 60 + i)
        books[bank].to_csv(root / "data" / f"{bank}_book.csv", index=False)
        column, _, cap = IDS[bank]
        columns = {**BOOK_COLUMNS, **({column: "str"} if column else {})}
        dp = ({"customer": column} if column else {}) | ({"rows_per_customer": cap} if cap > 1 else {})
        sources[bank] = {"book": (f"data/{bank}_book.csv", columns, *([dp] if dp else []))}
        policies[bank] = {"allowed_columns": {"default_rate_overall": list(COLUMNS), "woe_iv": ["default", "grade"],
                                              "psi": ["grade", "period"]},
                          "dp": {"budget_per_source": {"book": BUDGET}}}
    c = Cluster(root, policies=policies, extra_sources=sources, extra_allowed=("woe_iv", "psi"))
    c.books = books
    c.start()
    yield c
    assert all(code == 0 for code in c.stop_all().values())


def spent(cluster, bank) -> float:
    out = smpc_cli("budget", "show", "--config", str(cluster.configs[bank]), "--json", env=cluster.env())
    return next(s["spent"] for s in json.loads(out.stdout)["sources"] if s["source"] == "book")


WOE_JOB = {"label": "default", "columns": "grade"}
PSI_JOB = {"columns": "grade", "period": "period", "reference": "r", "current": "c"}


def test_requester_may_not_set_the_customer_column_or_the_cap(cluster):
    with cluster.client("bank_a") as client:
        for key, value in (("dp_rows_per_customer", "1"), ("dp_customer", "cust")):
            with pytest.raises(PolicyError) as info:
                client.submit("woe_iv", {**WOE_JOB, "dp_epsilon": "1.0", key: value}, source="book",
                              job_id=f"own-{key}")
            assert info.value.rule == "params.owner"
            assert f"parameter '{key}' is set by each bank's data configuration" in str(info.value)
            for bank in BANKS:
                kinds = [r["event"] for r in cluster.records(bank, f"bank_a/own-{key}")]
                assert "job_started" not in kinds and "dp_debit" not in kinds, (bank, kinds)


def test_woe_iv_with_dp_epsilon_is_charged_and_capped_by_each_banks_own_column(cluster):
    with cluster.client("bank_a") as client:
        got = client.run("woe_iv", {**WOE_JOB, "dp_epsilon": "10"}, source="book", job_id="dp-woe")
    assert got["epsilon_spent"] == 10.0 and got["rows_per_customer"] == JOB_CAP
    assert got["noise"]["scale"] == JOB_CAP * 1 / 10.0
    for bank in BANKS:
        debits = [r for r in cluster.records(bank, "bank_a/dp-woe") if r["event"] == "dp_debit"]
        assert [(d["source"], float(d["epsilon"])) for d in debits] == [("book", 10.0)], bank
    # every cell's noise (two draws of scale 0.3) lies within 6 of zero but with probability
    # < 2e-9 each, so the released cells are the counts over the capped rows: bank_b keeps 3
    # of its 4 rows per 'cust', bank_c 3 of its 5 per 'client_no' (not its own cap 2: the job's)
    rows = pd.concat([capped(cluster.books[b], b) for b in BANKS])
    assert len(rows) == 300 + 225 + 180
    for entry in got["features"]["grade"]["bins"]:
        mine = rows[rows["grade"].isin(entry["categories"])]
        assert abs(entry["bad"] - int(mine["default"].sum())) < 6
        assert abs(entry["good"] - int((mine["default"] == 0).sum())) < 6


def test_psi_with_dp_epsilon_is_charged_and_refused_once_the_budget_is_spent(cluster):
    with cluster.client("bank_b", identity="bank_b") as client:
        got = client.run("psi", {**PSI_JOB, "dp_epsilon": "5"}, source="book", job_id="dp-psi")
        assert got["epsilon_spent"] == 5.0 and got["rows_per_customer"] == JOB_CAP and "psi" in got["features"]["grade"]
        rows = pd.concat([capped(cluster.books[b], b) for b in BANKS])
        reference = sum(b["reference"] for b in got["features"]["grade"]["bins"])
        assert abs(reference - int((rows["period"] == "r").sum())) < 20  # 3 bins, 2 draws of scale 0.6 each
        with pytest.raises(PolicyError) as info:
            client.submit("woe_iv", {**WOE_JOB, "dp_epsilon": "6"}, source="book", job_id="dp-over")
    assert info.value.rule == "policy.dp.budget_per_source" and "epsilon 5 left" in str(info.value)
    # the woe_iv job's 10 and psi's 5, in every party's ledger; the refused job spent nothing
    assert [spent(cluster, b) for b in BANKS] == [15.0] * 3
