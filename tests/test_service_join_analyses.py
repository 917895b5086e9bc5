"""The private-join analyses (multi_lending, blacklist_hits) through three real party services.

Three `smpc party serve` processes on 127.0.0.1 (free ports), mutual TLS with certificates
from `smpc certs init`, and per-bank CSV files of a synthetic consortium (overlapping
customers with several loans each, some over the threshold only in total) and of fraud
files (bank_a's applicants, bank_b's and bank_c's blacklists). Jobs go through the job CLI
and ``JobClient``, as a bank operator submits them. Checked: results equal the plaintext
twins exactly; each bank receives flags for its own customers only; blacklist hits reach the
requester only; the parties' policies refuse before any share moves; the audit logs record
every job. One cluster serves the module; the last test brings bank_c back with a new policy.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pandas as pd
import pytest
from service_harness import BANKS, COLUMNS, JOIN_SALT, Cluster

from smpc import datasets
from smpc.analyses.fraud import blacklist_hits_plain, merge_bank_results, multi_lending_plain
from smpc.errors import PolicyError, SmpcError
from smpc.service.audit import verify

THRESHOLD = 40_000.0
MIN_LENDERS = 3
ML = {"id": "customer_id", "balance": "balance", "balance_threshold": THRESHOLD, "min_lenders": MIN_LENDERS}
LOAN_BOOK = {"customer_id": "str", "loan_id": "str", "grade": "str",
             "balance": {"type": "float", "bound": 1e7, "decimals": 2, "total_bound": 1e9}}
NOT_YOURS = "may not receive the result|that .* may see"  # no job one may not see, or no part of it
ML_COLUMNS = {"default_rate_overall": list(COLUMNS), "multi_lending": ["customer_id", "loan_id", "balance"],
              "blacklist_hits": ["customer_id"]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("join_cluster")
    (root / "data").mkdir()
    books = datasets.synthetic_consortium(n_banks=3, rows_per_bank=150, seed=11, balance_threshold=THRESHOLD,
                                          min_lenders=MIN_LENDERS)
    fraud = datasets.synthetic_blacklists(n_banks=3, applicants=120, listed_per_bank=100, seed=5)
    sources = {}
    for bank in BANKS:
        books[bank].to_csv(root / "data" / f"{bank}_book.csv", index=False)
        fraud[bank].to_csv(root / "data" / f"{bank}_fraud.csv", index=False)
        sources[bank] = {"book": (f"data/{bank}_book.csv", LOAN_BOOK),
                         "fraud": (f"data/{bank}_fraud.csv", {"customer_id": "str"})}
    # every bank keeps the harness's min_cell_size = 10; bank_b never joins on loan ids
    policies = {bank: {"allowed_columns": dict(ML_COLUMNS)} for bank in BANKS}
    policies["bank_b"]["allowed_columns"]["multi_lending"] = ["customer_id", "balance"]
    # certificates by pki.init_certs, the function `smpc certs init` runs (test_service_cluster
    # runs the command itself; in-process here saves one interpreter start)
    c = Cluster(root, policies=policies, extra_sources=sources, analysis_modules=(),
                extra_allowed=("multi_lending", "blacklist_hits"), certs_by_cli=False)
    # what each bank holds, as it reads its own files (ids are text)
    c.books = {b: pd.read_csv(root / "data" / f"{b}_book.csv", dtype={"customer_id": str}) for b in BANKS}
    c.fraud = {b: pd.read_csv(root / "data" / f"{b}_fraud.csv", dtype=str) for b in BANKS}
    c.start()
    yield c
    codes = c.stop_all()
    assert all(code == 0 for code in codes.values()), codes
    for bank in BANKS:
        assert verify(c.audit_path(bank)).ok, bank



def tls(cluster, identity):
    return [f"--{k}={v}" for k, v in cluster.cert_args(identity).items()]


def fetch(cluster, party, identity, job_id):
    """What ``identity`` receives of a job's result from ``party``'s job service."""
    # the submitter's wait ends when its own party is done; another party may still be finishing
    with cluster.client(party, identity) as client:
        return client.wait(job_id)


def cli_json(capsys, args):
    from smpc import cli

    assert cli.main(args) == 0
    return json.loads(capsys.readouterr().out)


def assert_audited(cluster, job_id, source, columns, result_keys):
    """Every party recorded the job from receipt to finish: accepted, its inputs, success."""
    for bank in BANKS:
        recs = cluster.records(bank, job_id)
        kinds = [r["event"] for r in recs]
        assert kinds[:2] == ["job_received", "policy_decision"], (bank, kinds)
        assert recs[1]["decision"] == "accept"
        used = next(r for r in recs if r["event"] == "inputs_used")
        assert used["source"] == source and used["columns"] == columns, (bank, used)
        assert used["rows"] == len((cluster.books if source == "book" else cluster.fraud)[bank])
        assert next(r for r in recs if r["event"] == "job_started")["params"]["id"] == "customer_id"
        finished = next(r for r in recs if r["event"] == "job_finished")
        assert finished["state"] == "succeeded" and finished["bytes_sent"] > 0 and finished["rounds"] > 0
        assert finished["result_keys"] == result_keys[bank], (bank, finished)


# ----- the data has what the analyses are about ---------------------------------------------
def test_the_consortium_has_shared_customers_several_loans_and_totals_over_only_together(cluster):
    plain = multi_lending_plain(cluster.books, **ML)
    rows = pd.concat([t.assign(bank=b) for b, t in cluster.books.items()])
    per_bank = rows.groupby(["customer_id", "bank"])["balance"].sum()
    total = rows.groupby("customer_id")["balance"].sum()
    only_in_total = {c for c in total.index[total > THRESHOLD] if per_bank[c].max() <= THRESHOLD}
    flagged = {i for part in plain["by_bank"].values() for i in part["flagged_ids"]}
    assert len(only_in_total & flagged) >= 2  # P-TOTAL and synthetic customers
    assert (rows.groupby(["customer_id", "bank"]).size() > 1).sum() >= 20  # several loans at one bank
    assert (rows.groupby("customer_id")["bank"].nunique() >= 2).sum() >= 20  # customers of several banks
    assert 10 <= plain["flagged_count"] < len(total)


# ----- multi_lending ---------------------------------------------------------------------------
def test_multi_lending_through_the_job_cli_each_bank_receives_its_own_flags_only(cluster, capsys):
    plain = multi_lending_plain(cluster.books, **ML)
    params = [arg for k, v in ML.items() for arg in ("--param", f"{k}={v}")]
    mine = cli_json(capsys, ["job", "submit", "--to", cluster.address("bank_a"), *tls(cluster, "bank_a"),
                             "--source", "book", "--job-id", "ml-cli", "--recipient", "bank_b",
                             "--recipient", "bank_c", "--json", "--quiet", "multi_lending", *params])
    received = {"bank_a": mine}
    for bank in ("bank_b", "bank_c"):  # each asks its own party with its own certificate
        status = cli_json(capsys, ["job", "get", "--to", cluster.address(bank), *tls(cluster, bank), "bank_a/ml-cli"])
        assert status["state"] == "JOB_STATE_SUCCEEDED"
        received[bank] = json.loads(status["result_json"])
    for bank, result in received.items():
        assert result == {"flagged_count": plain["flagged_count"], "by_bank": {bank: plain["by_bank"][bank]}}
    assert merge_bank_results(list(received.values())) == plain
    # the planted customers are where they must be, at the banks that hold them
    assert {"P-ALONE", "P-LOANS", "P-TOTAL", "P-MANY"} <= set(mine["by_bank"]["bank_a"]["flagged_ids"])
    assert "P-EDGE" not in mine["by_bank"]["bank_a"]["flagged_ids"]
    assert "P-TOTAL" in received["bank_b"]["by_bank"]["bank_b"]["flagged_ids"]
    # another party holds no part of a bank's flags, so asking it gives the count alone
    for bank in BANKS:
        for party in BANKS:
            if party != bank:
                assert fetch(cluster, party, bank, "bank_a/ml-cli") == {"flagged_count": plain["flagged_count"],
                                                                 "by_bank": {}}
    with pytest.raises(SmpcError, match=NOT_YOURS):
        fetch(cluster, "bank_a", "analyst", "bank_a/ml-cli")
    keys = {bank: ["by_bank", "flagged_count"] for bank in BANKS}
    assert_audited(cluster, "bank_a/ml-cli", "book", ["customer_id", "balance"], keys)
    for bank in BANKS:  # each party handed its result out once to each bank that asked it
        released = [r for r in cluster.records(bank, "bank_a/ml-cli") if r["event"] == "outputs_released"]
        assert sorted(r["to"] for r in released) == BANKS
        assert all(r["keys"] == ["by_bank", "flagged_count"] for r in released)
        started = next(r for r in cluster.records(bank, "bank_a/ml-cli") if r["event"] == "job_started")["params"]
        assert started["balance_threshold"] == THRESHOLD and started["min_lenders"] == MIN_LENDERS
        assert "min_cell_size" not in started


def test_multi_lending_submitted_through_another_party_and_on_other_thresholds(cluster):
    params = {**ML, "balance_threshold": 100_000, "min_lenders": 2}
    plain = multi_lending_plain(cluster.books, **params)
    with cluster.client("bank_b", identity="bank_c") as client:  # bank_c's operator, bank_b coordinates
        via_b = client.run("multi_lending", params, source="book", job_id="ml-via-b")
    assert via_b == {}  # bank_b is no recipient: nothing of the result was opened to it
    assert fetch(cluster, "bank_c", "bank_c", "bank_c/ml-via-b") == {"flagged_count": plain["flagged_count"],
                                                             "by_bank": {"bank_c": plain["by_bank"]["bank_c"]}}
    assert plain["by_bank"]["bank_c"]["flagged_ids"]
    for bank in ("bank_a", "bank_b"):  # not recipients: nothing at all, from any party
        for party in BANKS:
            with pytest.raises(SmpcError, match=NOT_YOURS):
                fetch(cluster, party, bank, "bank_c/ml-via-b")
    assert cluster.records("bank_b", "bank_c/ml-via-b")[0]["via"] == "submit"
    # the join salt is each party's own (from [join] salt_file); the logs hold a keyed fingerprint
    fingerprint = "hmac-sha256:" + hmac.new(JOIN_SALT.encode(), b"smpc join salt fingerprint v1",
                                            hashlib.sha256).hexdigest()[:16]
    for bank in BANKS:
        assert JOIN_SALT not in cluster.audit_path(bank).read_text()
        recs = cluster.records(bank, "bank_c/ml-via-b")
        assert next(r for r in recs if r["event"] == "policy_decision")["join_salt"] == fingerprint
        assert next(r for r in recs if r["event"] == "job_started")["params"]["salt"] == fingerprint


# ----- blacklist_hits --------------------------------------------------------------------------
def test_blacklist_hits_reach_the_requester_only(cluster, capsys):
    plain = blacklist_hits_plain(cluster.fraud, requester="bank_a", id="customer_id")
    # the requester is the authenticated caller: the operator need not (and cannot) name another
    hits = cli_json(capsys, ["job", "submit", "--to", cluster.address("bank_a"), *tls(cluster, "bank_a"),
                             "--source", "fraud", "--job-id", "bl-cli", "--json", "--quiet", "blacklist_hits",
                             "--param", "id=customer_id"])
    assert hits == plain
    assert {k: hits["hits"][k] for k in ("Q-HIT0", "Q-HIT1", "Q-HIT2", "Q-DUP", "Q-NONE")} == {
        "Q-HIT0": 0, "Q-HIT1": 1, "Q-HIT2": 2, "Q-DUP": 1, "Q-NONE": 0}
    assert "Q-ELSE" not in hits["hits"] and sum(v > 0 for v in hits["hits"].values()) >= 5
    with cluster.client("bank_c", identity="bank_a") as client:  # bank_c never held the hits
        assert client.wait("bank_a/bl-cli") == {}
    for bank in ("bank_b", "bank_c"):  # not recipients: refused by every party, their own included
        for party in BANKS:
            with pytest.raises(SmpcError, match=NOT_YOURS):
                fetch(cluster, party, bank, "bank_a/bl-cli")
    # what each party received: the hits at the requester's party, nothing at the others
    assert_audited(cluster, "bank_a/bl-cli", "fraud", ["customer_id"],
                   {"bank_a": ["hits"], "bank_b": [], "bank_c": []})
    started = next(r for r in cluster.records("bank_b", "bank_a/bl-cli") if r["event"] == "job_started")
    assert started["params"]["requester"] == "bank_a"
    released = [r["to"] for r in cluster.records("bank_a", "bank_a/bl-cli") if r["event"] == "outputs_released"]
    assert released == ["bank_a"]


def test_blacklist_hits_for_another_bank_or_to_other_recipients_is_refused_everywhere(cluster):
    with cluster.client("bank_c", identity="bank_a") as client:
        with pytest.raises(PolicyError, match="answers its requester only") as info:
            client.submit("blacklist_hits", {"id": "customer_id", "requester": "bank_b"}, source="fraud",
                          job_id="bl-spoof")
        assert info.value.rule == "params.requester"
        with pytest.raises(PolicyError, match="'bank_b' may not be a recipient") as info:
            client.submit("blacklist_hits", {"id": "customer_id", "requester": "bank_a"}, source="fraud",
                          job_id="bl-forward", recipients=["bank_b"])
        assert info.value.rule == "recipients.requester_only"
    with cluster.client("bank_b", identity="analyst") as client:  # a consortium identity without data
        with pytest.raises(PolicyError, match="is not one of the banks") as info:
            client.submit("blacklist_hits", {"id": "customer_id"}, source="fraud", job_id="bl-analyst")
        assert info.value.rule == "params.requester"
    for job_id in ("bank_a/bl-spoof", "bank_a/bl-forward", "analyst/bl-analyst"):
        for bank in BANKS:
            kinds = [r["event"] for r in cluster.records(bank, job_id)]
            assert "job_refused" in kinds or "policy_decision" in kinds, (bank, kinds)
            assert "inputs_used" not in kinds and "job_started" not in kinds, (bank, kinds)


# ----- policy --------------------------------------------------------------------------------
def test_a_column_outside_a_banks_policy_is_refused_before_any_share_moves(cluster):
    with cluster.client("bank_a") as client:
        with pytest.raises(PolicyError) as info:
            client.submit("multi_lending", {**ML, "id": "loan_id"}, source="book", job_id="ml-loan-ids")
    assert info.value.party == "bank_b" and info.value.rule == "policy.allowed_columns.multi_lending"
    for bank in BANKS:
        recs = cluster.records(bank, "bank_a/ml-loan-ids")
        kinds = [r["event"] for r in recs]
        assert "inputs_used" not in kinds and "job_started" not in kinds, (bank, kinds)
        if bank == "bank_b":
            assert next(r for r in recs if r["event"] == "policy_decision")["decision"] == "refuse"
        else:
            # who told this party: bank_b itself at the coordinator, else the coordinator
            assert next(r for r in recs if r["event"] == "job_refused")["by"] == ("bank_b" if bank == "bank_a"
                                                                                  else "bank_a")


def test_an_analysis_a_bank_no_longer_allows_is_refused_by_it(cluster):
    """Runs last: bank_c comes back without blacklist_hits in its allowed_analyses. Its
    service runs in this process (the same PartyServer that `smpc party serve` runs, on the
    same port, certificate and audit log), which spares an interpreter start."""
    from smpc.service.config import load_config
    from smpc.service.server import PartyServer

    config = cluster.configs["bank_c"]
    text = config.read_text()
    allowed = 'allowed_analyses = ["default_rate_overall", "multi_lending", "blacklist_hits"]'
    assert allowed in text
    config.write_text(text.replace(allowed, 'allowed_analyses = ["default_rate_overall", "multi_lending"]'))
    assert cluster.stop("bank_c") == 0
    server = PartyServer(load_config(config))
    server.start()
    try:
        cluster.wait_healthy("bank_c")
        with cluster.client("bank_c", identity="bank_c") as client:
            listed = {a.name: a.allowed for a in client.analyses().analyses}
        assert listed["multi_lending"] and not listed["blacklist_hits"]
        with cluster.client("bank_a") as client:
            with pytest.raises(PolicyError) as info:
                client.submit("blacklist_hits", {"id": "customer_id"}, source="fraud", job_id="bl-not-allowed")
        assert info.value.party == "bank_c" and info.value.rule == "policy.allowed_analyses"
        for bank in BANKS:
            kinds = [r["event"] for r in cluster.records(bank, "bank_a/bl-not-allowed")]
            assert "inputs_used" not in kinds and "job_started" not in kinds, (bank, kinds)
            assert ("policy_decision" if bank == "bank_c" else "job_refused") in kinds, (bank, kinds)
        # what it still allows runs as before
        with cluster.client("bank_c", identity="bank_c") as client:
            result = client.run("multi_lending", ML, source="book", job_id="ml-after-restart")
        plain = multi_lending_plain(cluster.books, **ML)
        assert result == {"flagged_count": plain["flagged_count"], "by_bank": {"bank_c": plain["by_bank"]["bank_c"]}}
    finally:
        server.stop()
