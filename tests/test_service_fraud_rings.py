"""The fraud-ring analyses (shared_attribute_links, velocity, mule_fan_in) through three real
party services: mutual TLS on 127.0.0.1, per-bank CSV files of synthetic applications and
transfers with planted truth, jobs through ``JobClient`` as a bank operator submits them.
Checked: results equal the plaintext twins; each bank receives its own flags only; velocity
answers its authenticated requester only; each bank's policy allows each analysis per source
and column, and refuses before any share moves otherwise."""

from __future__ import annotations

import pandas as pd
import pytest
from service_harness import BANKS, COLUMNS, Cluster

from smpc import analyses, datasets
from smpc.errors import PolicyError, SmpcError

APPLICATIONS = {"customer_id": "str", "phone": "str", "device": "str", "email": "str", "date": "str"}
TRANSFERS = {"sender": "str", "receiver": "str", "receiver_bank": "str", "victim": {"type": "int", "bound": 1},
             "date": "str"}
LINKS = {"attribute": "phone", "id": "customer_id", "min_ids": 5, "min_banks": 2}
VELOCITY = {"id": "customer_id", "time": "date", "window_days": 3}
MULE = {"receiver": "receiver", "receiver_bank": "receiver_bank", "sender": "sender", "victim": "victim",
        "min_senders": 3}
ALLOWED = {"default_rate_overall": list(COLUMNS), "shared_attribute_links": ["customer_id", "phone", "device"],
           "velocity": ["customer_id", "date"],
           "mule_fan_in": ["sender", "receiver", "receiver_bank", "victim", "date"]}
SOURCES = {"default_rate_overall": ["loans"], "shared_attribute_links": ["applications"],
           "velocity": ["applications"], "mule_fan_in": ["transfers"]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("fraud_ring_cluster")
    (root / "data").mkdir()
    applications, truth = datasets.synthetic_applications(3, 150, seed=21)
    transfers, mule_truth = datasets.synthetic_transfers(3, 150, seed=21)
    sources = {}
    for bank in BANKS:
        applications[bank].to_csv(root / "data" / f"{bank}_applications.csv", index=False)
        transfers[bank].to_csv(root / "data" / f"{bank}_transfers.csv", index=False)
        sources[bank] = {"applications": (f"data/{bank}_applications.csv", APPLICATIONS),
                         "transfers": (f"data/{bank}_transfers.csv", TRANSFERS)}
    policies = {bank: {"allowed_columns": {k: list(v) for k, v in ALLOWED.items()},
                       "allowed_sources": dict(SOURCES)} for bank in BANKS}
    policies["bank_c"]["allowed_columns"]["shared_attribute_links"] = ["customer_id", "phone"]  # no devices
    c = Cluster(root, policies=policies, extra_sources=sources, analysis_modules=(),
                extra_allowed=("shared_attribute_links", "velocity", "mule_fan_in"), certs_by_cli=False)
    # what each bank holds, as it reads its own files (the configured str columns are text)
    c.applications = {b: pd.read_csv(root / "data" / f"{b}_applications.csv", dtype=str) for b in BANKS}
    c.transfers = {b: pd.read_csv(root / "data" / f"{b}_transfers.csv", dtype={k: str for k in TRANSFERS
                                                                               if k != "victim"}) for b in BANKS}
    c.truth, c.mule_truth = truth, mule_truth
    c.start()
    yield c
    codes = c.stop_all()
    assert all(code == 0 for code in codes.values()), codes


def each_banks_part(cluster, job_id: str) -> dict:
    """Every bank's result, fetched from its own party with its own certificate."""
    # the submitter's wait ends when its own party is done; another party may still be finishing
    out = {}
    for bank in BANKS:
        with cluster.client(bank, identity=bank) as client:
            out[bank] = client.wait(job_id)
    return out


def test_shared_attribute_links_each_bank_receives_its_own_flags(cluster):
    with cluster.client("bank_a", identity="bank_b") as client:
        client.run("shared_attribute_links", LINKS, source="applications", job_id="links", recipients=BANKS)
    parts = each_banks_part(cluster, "bank_b/links")
    plain = analyses.get("shared_attribute_links").run_plaintext(cluster.applications, **LINKS)
    for bank, part in parts.items():
        assert part == {"flagged_total": plain["flagged_total"], "by_bank": {bank: plain["by_bank"][bank]}}
        assert part["by_bank"][bank]["flagged_ids"] == cluster.truth["ring_ids"][bank]


def test_velocity_answers_its_authenticated_requester_only(cluster):
    plain = analyses.get("velocity").run_plaintext(cluster.applications, requester="bank_a", **VELOCITY)
    with cluster.client("bank_a", identity="bank_a") as client:
        assert client.run("velocity", VELOCITY, source="applications", job_id="burst") == plain
        with pytest.raises(PolicyError, match="answers its requester only") as info:
            client.submit("velocity", {**VELOCITY, "requester": "bank_b"}, source="applications", job_id="spoof")
        assert info.value.rule == "params.requester"
    for bank in ("bank_b", "bank_c"):
        with cluster.client(bank, identity=bank) as client, pytest.raises(SmpcError):
            client.wait("bank_a/burst")


def test_mule_fan_in_each_bank_receives_its_own_accounts(cluster):
    with cluster.client("bank_c", identity="bank_c") as client:
        client.run("mule_fan_in", MULE, source="transfers", job_id="mules", recipients=BANKS)
    parts = each_banks_part(cluster, "bank_c/mules")
    plain = analyses.get("mule_fan_in").run_plaintext(cluster.transfers, **MULE)
    for bank, part in parts.items():
        assert part == {"flagged_total": plain["flagged_total"], "by_bank": {bank: plain["by_bank"][bank]}}
        assert part["by_bank"][bank]["flagged_accounts"] == cluster.mule_truth["mule_accounts"][bank]


def test_mule_fan_in_with_a_sliding_window_through_the_services(cluster):
    params = {**MULE, "time": "date", "window_days": 2}
    with cluster.client("bank_a", identity="bank_a") as client:
        client.run("mule_fan_in", params, source="transfers", job_id="mules-window", recipients=BANKS)
    parts = each_banks_part(cluster, "bank_a/mules-window")
    plain = analyses.get("mule_fan_in").run_plaintext(cluster.transfers, **params)
    for bank, part in parts.items():
        assert part == {"flagged_total": plain["flagged_total"], "by_bank": {bank: plain["by_bank"][bank]}}
        # planted victims pay on consecutive days: three of them within any three days
        assert part["by_bank"][bank]["flagged_accounts"] == cluster.mule_truth["mule_accounts"][bank]


def test_policy_allows_each_analysis_per_source_and_column(cluster):
    with cluster.client("bank_a", identity="bank_a") as client:
        with pytest.raises(PolicyError) as info:  # bank_c does not let devices be linked
            client.submit("shared_attribute_links", {**LINKS, "attribute": "device"}, source="applications",
                          job_id="devices")
        assert info.value.party == "bank_c" and info.value.rule == "policy.allowed_columns.shared_attribute_links"
        with pytest.raises(PolicyError) as info:  # a fraud-ring lookup pointed at the transfers
            client.submit("velocity", {**VELOCITY, "time": "date", "id": "sender"}, source="transfers",
                          job_id="wrong-source")
        assert info.value.rule.startswith("policy.allowed_")
    for job_id in ("bank_a/devices", "bank_a/wrong-source"):
        for bank in BANKS:
            kinds = [r["event"] for r in cluster.records(bank, job_id)]
            assert "inputs_used" not in kinds and "job_started" not in kinds, (bank, kinds)
