"""A bank's declared minimum (``nonnegative = true``), held against its rows by real party services.

A negative balance in a column its bank declared nonnegative is refused before any share moves,
with the same public sentence as any other break of a bank's own declaration; the row stays in
that bank's own audit log and stderr.
"""

from __future__ import annotations

import pytest
from service_harness import BANKS, Cluster

from smpc.errors import InputError

BALANCES = {"balance": {"type": "float", "bound": 1e7, "decimals": 2, "nonnegative": True}}
ALLOWED = {"describe": ["balance"]}


def balances(bank: str, rows: int = 40) -> str:
    """bank_c's row 9 has no balance: missing, not below the minimum."""
    return "account,balance\n" + "".join(
        f"{bank}-{i},{'' if (bank, i) == ('bank_c', 8) else f'{(i * 137 + len(bank)) % 10_000}.25'}\n"
        for i in range(rows))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("declared_minimum")
    (root / "data").mkdir()
    sources, policies = {}, {}
    for bank in BANKS:
        (root / "data" / f"{bank}_accounts.csv").write_text(balances(bank))
        sources[bank] = {"accounts": (f"data/{bank}_accounts.csv", BALANCES)}
        policies[bank] = {"allowed_analyses": list(ALLOWED), "allowed_columns": ALLOWED,
                          "allowed_sources": {"describe": ["accounts"]}}
    c = Cluster(root, policies=policies, extra_sources=sources, analysis_modules=(), extra_allowed=(),
                certs_by_cli=False)
    c.start()
    yield c
    codes = c.stop_all()
    assert all(code == 0 for code in codes.values()), codes


def test_a_negative_balance_in_a_nonnegative_column_is_refused_saying_only_that(cluster):
    with cluster.client("bank_a") as client:
        result = client.run("describe", {"columns": "balance"}, source="accounts", job_id="all-nonnegative")
        assert result["balance"]["count"] == 3 * 40 - 1 and result["balance"]["missing"] == 1
        text = balances("bank_b").splitlines()
        text[17] = "bank_b-16,-0.01"  # row 17 of the data, one cent below the declared minimum
        (cluster.root / "data" / "bank_b_accounts.csv").write_text("\n".join(text) + "\n")
        with pytest.raises(InputError) as info:
            client.run("describe", {"columns": "balance"}, source="accounts", job_id="one-negative")
    assert str(info.value) == ("bank_b refuses job bank_a/one-negative: its data does not match its declared schema "
                               "(rule data.schema)")
    detail = "column 'balance': row 17 is below the declared minimum 0"
    decision = next(r for r in cluster.audit("bank_b")
                    if r.get("job_id") == "bank_a/one-negative" and r["event"] == "policy_decision")
    assert decision["decision"] == "refuse" and detail in decision["detail"]
    assert detail in cluster.log("bank_b")
    for bank in ("bank_a", "bank_c"):
        own = [r for r in cluster.audit(bank) if r.get("job_id") == "bank_a/one-negative"]
        assert own and "row 17" not in str(own) and "minimum" not in str(own)
        assert "inputs_used" not in [r["event"] for r in own]
