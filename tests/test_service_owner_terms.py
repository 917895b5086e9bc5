"""What only the banks decide, through three real party services: which data source each
analysis may read, the consortium's join salt, and the disclosure-control terms.

- ``blacklist_hits`` pointed at the loan book ("which of my ids are other banks' customers")
  is refused by ``policy.allowed_sources`` before any share moves.
- The join salt is each party's own secret ([join] salt_file): a requester cannot send one,
  the logs hold an HMAC fingerprint only, and when one bank's salt differs the coordinator
  refuses the job (rule ``join.salt``) without any salt travelling.
- ``min_contributors`` and ``max_dominance`` come from every party's policy, merged at the
  start (the largest minimum, the smallest dominance); a requester may tighten, not loosen them.
"""

from __future__ import annotations

import time

import pytest
from service_harness import BANKS, COLUMNS, JOIN_SALT, Cluster

from smpc import datasets
from smpc.analyses.fraud import blacklist_hits_plain
from smpc.analyses.registry import secret_fingerprint
from smpc.errors import PolicyError

COLUMNS_ALLOWED = {"default_rate_overall": list(COLUMNS), "blacklist_hits": ["customer_id", "purpose"],
                   "test_disclosure_terms": ["creditability"]}
SOURCES = {"default_rate_overall": ["loans"], "blacklist_hits": ["fraud"], "test_disclosure_terms": ["loans"]}
TERMS = {"bank_a": {"min_contributors": 2, "max_dominance": 90}, "bank_b": {"min_contributors": 2, "max_dominance": 70},
         "bank_c": {"min_contributors": 3, "max_dominance": 100}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("owner_terms")
    (root / "data").mkdir()
    fraud = datasets.synthetic_blacklists(n_banks=3, applicants=60, listed_per_bank=50, seed=3)
    sources, policies = {}, {}
    for bank in BANKS:
        fraud[bank].to_csv(root / "data" / f"{bank}_fraud.csv", index=False)
        sources[bank] = {"fraud": (f"data/{bank}_fraud.csv", {"customer_id": "str"})}
        policies[bank] = {"allowed_analyses": list(COLUMNS_ALLOWED), "allowed_columns": COLUMNS_ALLOWED,
                          "allowed_sources": SOURCES, **TERMS[bank]}
    c = Cluster(root, policies=policies, extra_sources=sources, analysis_modules=("service_terms_analysis",),
                extra_allowed=(), certs_by_cli=False)
    c.fraud = {b: fraud[b].astype(str) for b in BANKS}
    c.start()
    yield c
    codes = c.stop_all()
    assert all(code == 0 for code in codes.values()), codes



def assert_nothing_moved(cluster, job_id):
    for bank in BANKS:
        kinds = [r["event"] for r in cluster.records(bank, job_id)]
        assert kinds and "inputs_used" not in kinds and "job_started" not in kinds, (bank, kinds)


# ----- data sources ----------------------------------------------------------------------------
def test_blacklist_hits_on_the_loan_book_is_refused(cluster):
    with cluster.client("bank_b", identity="bank_a") as client:
        with pytest.raises(PolicyError) as info:
            client.submit("blacklist_hits", {"id": "purpose"}, source="loans", job_id="bl-on-loans")
    assert info.value.rule == "policy.allowed_sources" and info.value.party == "bank_b"
    assert str(info.value) == ("bank_b refuses job bank_a/bl-on-loans: analysis 'blacklist_hits' may not read data "
                               "source 'loans' (allowed: fraud) (rule policy.allowed_sources)")
    assert_nothing_moved(cluster, "bank_a/bl-on-loans")
    # every party's log records the refusal and its rule
    for bank in BANKS:
        refusals = [r for r in cluster.records(bank, "bank_a/bl-on-loans") if r["event"] in ("policy_decision",
                                                                                     "job_refused")]
        assert refusals and all(r.get("rule") == "policy.allowed_sources" for r in refusals), (bank, refusals)


# ----- the join salt ---------------------------------------------------------------------------
def test_the_join_salt_is_each_partys_own_and_logged_as_an_hmac_fingerprint(cluster):
    with cluster.client("bank_a") as client:
        hits = client.run("blacklist_hits", {"id": "customer_id"}, source="fraud", job_id="bl-fraud")
        with pytest.raises(PolicyError, match="parameter 'salt' is set by each bank's data configuration") as info:
            client.submit("blacklist_hits", {"id": "customer_id", "salt": "my-guess"}, source="fraud",
                          job_id="bl-salted")
    assert info.value.rule == "params.owner"
    assert hits == blacklist_hits_plain(cluster.fraud, requester="bank_a", id="customer_id")
    fingerprint = secret_fingerprint(JOIN_SALT)
    assert fingerprint.startswith("hmac-sha256:") and len(fingerprint) == len("hmac-sha256:") + 16
    for bank in BANKS:
        text = cluster.audit_path(bank).read_text()
        assert JOIN_SALT not in text and "my-guess" not in text
        recs = cluster.records(bank, "bank_a/bl-fraud")
        assert next(r for r in recs if r["event"] == "policy_decision")["join_salt"] == fingerprint
        assert next(r for r in recs if r["event"] == "job_started")["params"]["salt"] == fingerprint
    assert_nothing_moved(cluster, "bank_a/bl-salted")


# ----- disclosure control ----------------------------------------------------------------------
def test_disclosure_terms_are_merged_from_every_partys_policy(cluster):
    with cluster.client("bank_a") as client:
        terms = client.run("test_disclosure_terms", {"label": "creditability"}, job_id="terms")
        assert terms == {"min_cell_size": 10, "min_contributors": 3, "max_dominance": 70.0}
        stricter = client.run("test_disclosure_terms", {"label": "creditability", "max_dominance": 50,
                                                        "min_contributors": 3}, job_id="terms-strict")
        assert stricter == {"min_cell_size": 10, "min_contributors": 3, "max_dominance": 50.0}
        # bank_a's own policy takes 2 contributors, bank_c's does not
        with pytest.raises(PolicyError) as info:
            client.submit("test_disclosure_terms", {"label": "creditability", "min_contributors": 2},
                          job_id="terms-loose")
    assert info.value.party == "bank_c" and info.value.rule == "policy.min_contributors"
    assert str(info.value) == ("bank_c refuses job bank_a/terms-loose: parameter 'min_contributors' may raise this "
                               "party's minimum number of contributing banks, never lower it "
                               "(rule policy.min_contributors)")
    assert_nothing_moved(cluster, "bank_a/terms-loose")


def test_a_party_runs_only_on_terms_that_cover_its_own(cluster):
    """A coordinator (here bank_b's peer certificate, calling bank_a directly) that starts a job
    with a smaller bound than bank_a declared, or fewer contributors than its policy, is refused."""
    from smpc.service.identity import load_private_key, sign, spec_payload
    from smpc.transport.grpc import secure_channel
    from smpc.v1 import peer_pb2, peer_pb2_grpc

    args = cluster.cert_args("bank_b")
    with secure_channel(cluster.address("bank_a"), *(args[k].read_bytes() for k in ("ca", "cert", "key")),
                        identity="bank_a") as channel:
        stub = peer_pb2_grpc.PartyPeerStub(channel)
        params = {"label": "creditability", "positive": "bad", "amount": "credit_amount"}
        for job_id, start, rule in (
            ("cheat-bound", {"declared": {"amount_bound": "50000", "amount_decimals": "0"}, "min_contributors": 2,
                             "max_dominance": 50}, "declared"),
            ("cheat-terms", {"declared": {"amount_bound": "1e6", "amount_decimals": "2"}, "min_contributors": 1,
                             "max_dominance": 50}, "policy.min_contributors"),
        ):
            job_id = f"bank_b/{job_id}"
            signed_at = int(time.time())
            payload = spec_payload(job_id, "default_rate_overall", params, "loans", ["bank_b"], "bank_b", signed_at)
            key = load_private_key((cluster.certs / "bank_b.key").read_bytes())
            spec = peer_pb2.JobSpec(job_id=job_id, analysis="default_rate_overall", params=params, source="loans",
                                    requester="bank_b", recipients=["bank_b"], coordinator="bank_b", parties=BANKS,
                                    signature=sign(key, payload), signed_at=signed_at, signed_source="loans",
                                    certificate_pem=(cluster.certs / "bank_b.pem").read_text())
            answer = stub.Prepare(peer_pb2.PrepareRequest(spec=spec), timeout=30)
            assert answer.accepted and dict(answer.declared) == {"amount_decimals": "0", "amount_bound": "100000.0"}
            assert (answer.min_contributors, answer.max_dominance, answer.join_salt_fingerprint) == (2, 90.0, "")
            ack = stub.Start(peer_pb2.StartRequest(job_id=job_id, min_cell_size=10, **start), timeout=30)
            assert not ack.ok and f"(rule {rule})" in ack.message, ack.message
            assert "inputs_used" not in [r["event"] for r in cluster.records("bank_a", job_id)]


def test_a_party_with_another_join_salt_makes_the_coordinator_refuse_the_join(cluster):
    """Runs last: bank_c comes back with a salt of its own."""
    other = cluster.root / "other_join_salt"
    Cluster.write_join_salt(other, "another consortium's join salt 77")
    config = cluster.configs["bank_c"]
    config.write_text(config.read_text().replace(str(cluster.join_salt), str(other)))
    assert cluster.stop("bank_c") == 0
    cluster.start("bank_c")
    with cluster.client("bank_a") as client:
        with pytest.raises(PolicyError) as info:
            client.submit("blacklist_hits", {"id": "customer_id"}, source="fraud", job_id="bl-two-salts")
        assert client.run("default_rate_overall", {"label": "creditability", "positive": "bad"})["rows"] == 1000
    assert info.value.rule == "join.salt" and info.value.party == "bank_a"
    assert str(info.value) == ("bank_a refuses job bank_a/bl-two-salts: the join salt of bank_c differs from bank_a's "
                               "(rule join.salt)")
    assert_nothing_moved(cluster, "bank_a/bl-two-salts")
    for bank in BANKS:
        assert "another consortium" not in cluster.audit_path(bank).read_text()


def test_the_catalogue_a_party_lists_offers_no_owner_set_parameter(cluster):
    """ListAnalyses shows a requester what it may send: bounds, decimals, group keys and the
    join salt are each bank's own settings, so they are not offered."""
    with cluster.client("bank_a") as client:
        listed = {a.name: {p.name for p in a.params} for a in client.analyses().analyses}
    assert {"columns", "min_cell_size"} <= listed["describe"] and not {"bound", "decimals"} & listed["describe"]
    assert "amount" in listed["default_rate_overall"]
    assert not {"amount_bound", "amount_decimals"} & listed["default_rate_overall"]
    assert "groups" not in listed["default_rate"] and "salt" not in listed["blacklist_hits"]
    assert not {"balance_bound", "balance_decimals", "salt"} & listed["multi_lending"]
