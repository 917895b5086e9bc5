"""Fraud rings across banks, on secret shares: shared phones, application bursts, mule accounts.

Three banks hold synthetic applications and transfers (seeded) with planted fraud: rings of
ids sharing one phone across banks, people applying at every bank within three days, and
mule accounts paid by victims of several banks. Each bank learns only which of *its own*
rows or accounts are flagged (velocity: only the requester, bank_a); printed here per bank
beside the planted truth, with precision and recall, and checked against the plaintext twins.
"""

import smpc
from smpc import analyses, datasets

BANKS = ["bank_a", "bank_b", "bank_c"]


def run(name: str, tables: dict, **params) -> list:
    """Every bank is one of the three compute parties (ranks 0..2) and passes its own table."""
    fn = analyses.get(name).fn
    return smpc.simulate(fn, ring=64, party_names=BANKS, owners=[0, 1, 2],
                         inputs={rank: {"table": tables[bank]} for rank, bank in enumerate(BANKS)}, **params)


def merged(results: list) -> dict:
    parts = [r for r in results if r is not None]
    return {**parts[0], "by_bank": {b: v for r in parts for b, v in r["by_bank"].items()}}


def side_by_side(title: str, found: dict, truth: dict) -> None:
    print(title)
    for bank in BANKS:
        got, planted = set(found[bank]), set(truth[bank])
        p, r = datasets.precision_recall(got, planted)
        print(f"  {bank} sees {len(got):2d} flagged: {', '.join(sorted(got)) or '-':<40} "
              f"planted: {', '.join(sorted(planted)) or '-':<40} precision {p:.2f}, recall {r:.2f}")


applications, truth = datasets.synthetic_applications(n_banks=3, rows_per_bank=300, seed=7)
print(f"applications per bank: {', '.join(f'{b} {len(t)}' for b, t in applications.items())} "
      "(family phones shared by up to 4 people, repeat customers)")

links = {"attribute": "phone", "id": "customer_id", "min_ids": 5, "min_banks": 2}
results = run("shared_attribute_links", applications, **links)
assert merged(results) == analyses.get("shared_attribute_links").run_plaintext(applications, **links)
found = {b: r["by_bank"][b]["flagged_ids"] for b, r in zip(BANKS, results, strict=True)}
side_by_side(f"\nshared_attribute_links (phone used by >= 5 ids at >= 2 banks; {results[0]['flagged_total']} "
             "phones flagged in all):", found, truth["ring_ids"])

burst = {"requester": "bank_a", "id": "customer_id", "time": "date", "window_days": 3,
         "min_applications": truth["burst_applications"]}
results = run("velocity", applications, **burst)
assert results[0] == analyses.get("velocity").run_plaintext(applications, **burst)
assert results[1] is None and results[2] is None  # the requester alone learns anything
flagged = sorted({c["id"] for c in results[0]["counts"] if c["flagged"]})
p, r = datasets.precision_recall(set(flagged), set(truth["burst_ids"]))
print(f"\nvelocity (bank_a's applications with >= {burst['min_applications']} at other banks in the 3 days "
      f"before):\n  bank_a sees {', '.join(flagged)}; planted: {', '.join(truth['burst_ids'])}; "
      f"precision {p:.2f}, recall {r:.2f}")

transfers, mule_truth = datasets.synthetic_transfers(n_banks=3, rows_per_bank=300, seed=7)
mule = {"receiver": "receiver", "receiver_bank": "receiver_bank", "sender": "sender", "victim": "victim",
        "min_senders": 3}
results = run("mule_fan_in", transfers, **mule)
assert merged(results) == analyses.get("mule_fan_in").run_plaintext(transfers, **mule)
side_by_side("\nmule_fan_in (accounts paid by >= 3 reported victims, over all banks):",
             {b: r["by_bank"][b]["flagged_accounts"] for b, r in zip(BANKS, results, strict=True)},
             mule_truth["mule_accounts"])

# the same within a sliding window: 3 victims within some 3 consecutive days (window_days = 2)
sliding = {**mule, "time": "date", "window_days": 2}
results = run("mule_fan_in", transfers, **sliding)
assert merged(results) == analyses.get("mule_fan_in").run_plaintext(transfers, **sliding)
side_by_side("\nmule_fan_in (>= 3 reported victims within some 3 consecutive days, sliding):",
             {b: r["by_bank"][b]["flagged_accounts"] for b, r in zip(BANKS, results, strict=True)},
             mule_truth["mule_accounts"])
print("\nevery secure result equals its plaintext twin exactly")
