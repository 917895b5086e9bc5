"""The privacy budget on real party processes: every party debits a job's epsilon from its own
ledger before any share moves, refuses a job that would exceed its budget (naming the source
and the epsilon left), gives the debit back when the job never starts, keeps it across a
restart, and two concurrent jobs cannot both spend the last epsilon."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from service_harness import BANKS, LOAN_PARAMS, Cluster, smpc_cli

from smpc.errors import PolicyError

# budgets per month on the loan book: bank_b's is the tightest
BUDGETS = {"bank_a": 3.0, "bank_b": 1.0, "bank_c": 2.0}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("dp_cluster")
    policies = {b: {"dp": {"budget_per_source": {"loans": BUDGETS[b]}, **({"required": True} if b == "bank_c" else {})}}
                for b in BANKS}
    c = Cluster(root, policies=policies)
    c.start()
    yield c
    codes = c.stop_all()
    assert all(code == 0 for code in codes.values()), codes


def ledger(cluster, bank) -> dict:
    out = smpc_cli("budget", "show", "--config", str(cluster.configs[bank]), "--json", env=cluster.env())
    return json.loads(out.stdout)


def spent(cluster, bank) -> float:
    return next(s["spent"] for s in ledger(cluster, bank)["sources"] if s["source"] == "loans")


def dp_params(epsilon):
    return {**LOAN_PARAMS, "dp_epsilon": str(epsilon)}


def test_the_budget_is_debited_refused_refunded_and_kept_at_every_party(cluster):
    with cluster.client("bank_a") as client:
        result = client.run("default_rate_overall", dp_params(0.8), job_id="dp-first")
    assert result["epsilon_spent"] == 0.8 and len(result["interval95"]["rows"]) == 2
    assert [spent(cluster, b) for b in BANKS] == [0.8, 0.8, 0.8]
    for bank in BANKS:
        assert any(r["event"] == "dp_debit" for r in cluster.records(bank, "bank_a/dp-first"))

    # bank_b has 0.2 left: it refuses, and bank_a and bank_c, which had debited, refund
    with cluster.client("bank_a") as client:
        with pytest.raises(PolicyError) as info:
            client.submit("default_rate_overall", dp_params(0.5), job_id="dp-over-b")
    message = str(info.value)
    assert info.value.party == "bank_b" and info.value.rule == "policy.dp.budget_per_source"
    assert "data source 'loans'" in message and "epsilon 0.2 left" in message, message
    assert [spent(cluster, b) for b in BANKS] == [0.8, 0.8, 0.8]
    for bank in ("bank_a", "bank_c"):
        kinds = [r["event"] for r in cluster.records(bank, "bank_a/dp-over-b")]
        assert "dp_debit" in kinds and "dp_refund" in kinds and "job_started" not in kinds, (bank, kinds)

    # each party enforces its own: bank_c (2.0) refuses 0.8 + 1.3 itself, as bank_b does
    with cluster.client("bank_a") as client:
        with pytest.raises(PolicyError):
            client.submit("default_rate_overall", dp_params(1.3), job_id="dp-over-bc")
    for bank in ("bank_b", "bank_c"):
        assert any(r["event"] == "dp_refused" for r in cluster.records(bank, "bank_a/dp-over-bc")), bank
    with cluster.client("bank_c", "bank_c") as client:
        with pytest.raises(PolicyError, match="bank_c refuses .*epsilon 1.2 left"):
            client.submit("default_rate_overall", dp_params(1.3), job_id="dp-over-c")

    # bank_c's policy requires dp_epsilon on its loans
    with cluster.client("bank_a") as client:
        with pytest.raises(PolicyError) as info:
            client.submit("default_rate_overall", LOAN_PARAMS, job_id="dp-missing")
    assert info.value.party == "bank_c" and info.value.rule == "policy.dp.required"

    # durable: bank_b restarted still has 0.2 left
    cluster.stop("bank_b")
    cluster.start("bank_b")
    assert spent(cluster, "bank_b") == 0.8
    with cluster.client("bank_a") as client:
        with pytest.raises(PolicyError, match="epsilon 0.2 left"):
            client.submit("default_rate_overall", dp_params(0.3), job_id="dp-after-restart")


def test_two_concurrent_jobs_cannot_both_spend_the_last_epsilon(cluster):
    before = spent(cluster, "bank_b")
    last = round(BUDGETS["bank_b"] - before, 6)
    assert last > 0
    epsilon = round(0.75 * last, 6)  # either job fits alone, both do not

    def run(bank):
        with cluster.client(bank, identity=bank) as client:
            try:
                return client.run("default_rate_overall", dp_params(epsilon))
            except PolicyError as exc:
                return exc

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(run, ["bank_a", "bank_c"]))
    succeeded = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if isinstance(o, PolicyError)]
    assert len(succeeded) == 1 and len(refused) == 1, outcomes
    assert refused[0].rule == "policy.dp.budget_per_source"
    assert spent(cluster, "bank_b") == pytest.approx(before + epsilon, abs=1e-12)
    assert spent(cluster, "bank_b") <= BUDGETS["bank_b"]


# ----- the ledger and its configuration, without services ---------------------------------------
def test_concurrent_debits_in_one_store_never_pass_the_budget(tmp_path):
    import os
    from fractions import Fraction

    from smpc.service.store import JobStore

    key = os.urandom(32)
    store = JobStore(tmp_path / "jobs.sqlite", key, "bank_a")
    budget = Fraction(1)

    def debit(i):
        return store.debit_epsilon(f"job-{i}", "loans", "2026-12", Fraction(3, 10), "analyst", budget)

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(debit, range(40)))
    assert sum(o is None for o in outcomes) == 3  # 0.9 spent, 0.1 left
    assert {o for o in outcomes if o is not None} == {Fraction(1, 10)}
    assert store.spent_epsilon("loans", "2026-12") == Fraction(9, 10)
    assert store.refund_epsilon("job-0", "test") and not store.refund_epsilon("job-0", "test")
    assert store.spent_epsilon("loans", "2026-12") == Fraction(6, 10)
    store.close()
    reopened = JobStore(tmp_path / "jobs.sqlite", key, "bank_a")  # durable: another process would see the same
    assert reopened.spent_epsilon("loans", "2026-12") == Fraction(6, 10) and len(reopened.ledger()) == 3
    reopened.close()


def test_budget_periods_are_calendar_utc():
    from smpc.service.budget import period_of

    moment = 1796601600.0  # 2026-12-07T00:00:00Z
    assert [period_of(p, moment) for p in ("day", "month", "year")] == ["2026-12-07", "2026-12", "2026"]
