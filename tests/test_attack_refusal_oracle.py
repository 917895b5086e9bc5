"""The refusal oracle, attacked through three real party services.

The attacker is a consortium identity without data ('analyst'). It may submit jobs to any
party and sees every answer: results, refusals, error texts. Before, it chose the bounds,
decimals and group lists that every bank checked against its raw rows, and each refusal named
the bank, row and bound: about 30 jobs of a binary search on ``amount_bound`` recovered
bank_b's largest credit amount.

Here the attacker runs the same sequence of jobs -- the binary search, every value-dependent
parameter it could try, and the jobs it may legitimately run with every parameter it may
still vary -- once against bank_b's real loan book and once after bank_b's book changed (a
larger maximum, another value in its first row). Every refusal, error text and state must be
identical, and accepted jobs may differ only in the released statistics. Then bank_b's book
breaks its own declaration in two different ways: the requester hears the same sentence both
times, and the row and value are only in bank_b's own audit log and stderr.
"""

from __future__ import annotations

import json
import re

import pytest
from service_harness import BANKS, Cluster

from smpc.service.states import STATE_NAMES

ATTACKER = "analyst"
LOANS = {"label": "creditability", "positive": "bad", "amount": "credit_amount"}
ALLOWED = {"default_rate_overall": ["creditability", "credit_amount"],
           "describe": ["credit_amount", "duration_in_month"],
           "default_rate": ["creditability", "purpose"]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle")
    policies = {bank: {"allowed_analyses": list(ALLOWED), "allowed_columns": ALLOWED} for bank in BANKS}
    # refusals and submissions are rate-limited per requester (limits.*); lifted here to show
    # that even an unlimited search learns nothing
    c = Cluster(root, policies=policies, analysis_modules=(), extra_allowed=(), certs_by_cli=False,
                limits={"refusals_per_hour": 1000, "submits_per_minute": 1000})
    c.start()
    yield c
    c.stop_all()


def replace_bank_b_book(cluster, edit) -> None:
    """Stop bank_b, give it an edited loan book, start it again on the same port and config."""
    assert cluster.stop("bank_b") == 0
    frame = cluster.tables["bank_b"].copy()
    edit(frame)
    frame.to_csv(cluster.root / "data" / "bank_b_loans.csv", index=False)
    cluster.start("bank_b")


def shape(value):
    """A result with every number replaced by its kind: what is left is what the answer says
    besides the released statistics (which keys, which cells are suppressed)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    return "number"


def outcome(cluster, analysis: str, params: dict, job_id: str) -> tuple[dict, dict | None]:
    """(what the attacker sees of one job but the released numbers, with the job id -- its own
    choice -- taken out; the released result)."""
    with cluster.client("bank_c", identity=ATTACKER) as client:
        status = client.submit_status(analysis, params, job_id=job_id)
        if STATE_NAMES[status.state] not in ("refused", "failed", "cancelled"):
            for _ in client.events(job_id, timeout=120):
                pass
            status = client.get(job_id)
    err = status.error
    seen = {"state": STATE_NAMES[status.state],
            "error": [err.type, err.party, err.rule, err.message.replace(status.job_id, "JOB")]}
    result = json.loads(status.result_json) if status.result_json else None
    seen["result_shape"] = shape(result)
    return seen, result


def attack(cluster, tag: str) -> tuple[list[dict], list[dict], dict]:
    """(the binary search's answers, every other answer, the released results by job)."""
    n = 0

    released = {}

    def run(analysis, params):
        nonlocal n
        n += 1
        seen, released[f"{analysis} {json.dumps(params, sort_keys=True)}"] = outcome(cluster, analysis, params,
                                                                                   f"{tag}-{n}")
        return seen

    # a binary search for the largest credit amount, refused or accepted by the bound
    probes = []
    lo, hi = 0, 1 << 17
    while hi - lo > 1:
        mid = (lo + hi) // 2
        probes.append(run("default_rate_overall", {**LOANS, "amount_bound": mid}))
        if probes[-1]["state"] == "succeeded":
            hi = mid
        else:
            lo = mid
    # every other value-dependent parameter it could try
    answers = [
        run("default_rate_overall", {**LOANS, "amount_decimals": 0}),
        run("describe", {"columns": "credit_amount", "bound": 15_000}),
        run("describe", {"columns": "credit_amount", "decimals": 0}),
        run("default_rate", {"label": "creditability", "positive": "bad", "by": "purpose", "groups": "car (new)"}),
        run("default_rate", {"label": "creditability", "positive": "bad", "by": "purpose", "groups": "retraining"}),
    ]
    # and what it may send: columns, labels, minimum cell sizes
    for analysis, params in [
        ("default_rate_overall", LOANS),
        ("default_rate_overall", {**LOANS, "min_cell_size": 2000}),
        ("default_rate_overall", {"label": "creditability", "positive": "good", "min_cell_size": 400}),
        ("describe", {"columns": "credit_amount,duration_in_month"}),
        ("default_rate", {"label": "creditability", "positive": "bad", "by": "purpose", "min_cell_size": 40}),
    ]:
        answers.append(run(analysis, params))
    return probes, answers, released


def test_a_binary_search_on_a_bound_learns_nothing_of_another_banks_rows(cluster):
    probes_a, answers_a, released_a = attack(cluster, "real")
    top = cluster.tables["bank_b"]["credit_amount"].max()

    def larger_book(frame):
        frame.loc[frame["credit_amount"].idxmax(), "credit_amount"] = 31_000  # above every bank's max
        frame.loc[0, "credit_amount"] = 777

    replace_bank_b_book(cluster, larger_book)
    probes_b, answers_b, released_b = attack(cluster, "changed")
    # the search's every answer is the same, and the same before and after bank_b's book changed
    assert probes_a == probes_b
    assert all(p == probes_a[0] for p in probes_a), probes_a
    assert probes_a[0]["state"] == "refused" and probes_a[0]["error"][2] == "params.owner"
    assert probes_a[0]["error"][3] == ("bank_c refuses job JOB: parameter 'amount_bound' is set by each bank's "
                                       "data configuration, not by the requester (rule params.owner)")
    # so is every other refusal, error text and state; accepted jobs differ in released numbers only
    assert answers_a == answers_b
    for seen in answers_a[:5]:
        assert seen["state"] == "refused" and seen["error"][2] == "params.owner", seen
    assert [seen["state"] for seen in answers_a[5:]] == ["succeeded"] * 5, answers_a[5:]
    # the change was real: the released maximum moved with bank_b's book
    key = "describe " + json.dumps({"columns": "credit_amount,duration_in_month"}, sort_keys=True)
    assert released_a[key]["credit_amount"]["max"] == max(t["credit_amount"].max() for t in cluster.tables.values())
    assert released_b[key]["credit_amount"]["max"] == 31_000 and top < 31_000
    for bank in BANKS:  # nothing of bank_b's values in any party's log, its own included
        # as a number of its own: the hash chain's hex digits may hold the same five digits
        assert not re.search(r"\b15653\b", cluster.audit_path(bank).read_text())


def test_a_book_that_breaks_its_own_declaration_says_only_that(cluster):
    seen, details = [], []
    for job_id, row, value in (("over-1", 4, 250_000), ("over-2", 300, 100_001)):
        def over_bound(frame, row=row, value=value):
            frame.loc[row, "credit_amount"] = value  # above bank_b's declared bound of 100000

        replace_bank_b_book(cluster, over_bound)
        seen.append(outcome(cluster, "default_rate_overall", LOANS, job_id)[0])
        job_id = f"{ATTACKER}/{job_id}"  # the party service's id: namespaced by the requester
        decision = next(r for r in cluster.audit("bank_b") if r.get("job_id") == job_id
                        and r["event"] == "policy_decision")
        details.append(decision["detail"])
        assert f"row {row + 1} exceeds the declared bound 100000" in decision["detail"]
        assert f"row {row + 1} exceeds" in cluster.log("bank_b")  # its operator's log
        for bank in ("bank_a", "bank_c"):
            assert f"row {row + 1}" not in str([r for r in cluster.audit(bank) if r.get("job_id") == job_id])
    assert seen[0] == seen[1], seen
    assert seen[0]["error"] == ["InputError", "bank_b", "data.schema", "bank_b refuses job JOB: its data does not "
                                "match its declared schema (rule data.schema)"]
    assert details[0] != details[1]
