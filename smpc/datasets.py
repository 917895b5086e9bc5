"""Synthetic consortium data with known answers, deterministic by seed.

For tests, examples and benchmarks of the private-join analyses: several banks' loan books
with overlapping customers (a customer borrows from one or several banks, with one or
several loans at each), balances, defaults and labelled fraud events, plus blacklist files.
A few planted customers make the expected answers obvious (``planted_multi_lending``,
``planted_hits``); the plaintext twins of the analyses give the rest.

The randomness is numpy's seeded generator: this is synthetic data, no party's view
depends on it (protocol randomness comes only from ``smpc.prg``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BANK_NAMES = [f"bank_{chr(ord('a') + i)}" for i in range(26)]
GRADES = np.array(list("ABCDEFG"))


def bank_names(n_banks: int) -> list[str]:
    if not 1 <= n_banks <= len(BANK_NAMES):
        raise ValueError(f"between 1 and {len(BANK_NAMES)} banks, got {n_banks}")
    return BANK_NAMES[:n_banks]


def planted_multi_lending(balance_threshold: float, min_lenders: int, n_banks: int) -> tuple[list, dict[str, bool]]:
    """Customers with an obvious ``multi_lending`` answer: (rows, expected flags), rows as
    (bank index, customer id, balance). Ids start with "P-".

    - P-ALONE: one loan above the threshold at one bank (flagged at one bank alone);
    - P-LOANS: several loans at one bank, each below, together above (flagged);
    - P-TOTAL: one loan at each of two banks, each below, together above (flagged only in
      total);
    - P-MANY: small loans at min_lenders banks (flagged by the lender count), if the
      consortium has that many banks;
    - P-FEW: small loans at min_lenders - 1 banks (not flagged), if min_lenders > 2;
    - P-EDGE: loans totalling exactly the threshold (not flagged: the rule is total > threshold);
    - P-SOLO: one small loan at the last bank, absent everywhere else (not flagged).
    """
    t = float(balance_threshold)
    rows: list[tuple[int, str, float]] = []
    expect: dict[str, bool] = {}
    rows.append((0, "P-ALONE", round(t * 1.2 + 1, 2)))
    expect["P-ALONE"] = True
    for _ in range(3):
        rows.append((0, "P-LOANS", round(t * 0.4, 2)))
    expect["P-LOANS"] = True
    if n_banks >= 2:
        rows += [(0, "P-TOTAL", round(t * 0.6, 2)), (1, "P-TOTAL", round(t * 0.6, 2))]
        expect["P-TOTAL"] = True
        half = round(t / 2, 2)
        rows += [(0, "P-EDGE", half), (1, "P-EDGE", round(t - half, 2))]
        expect["P-EDGE"] = min_lenders <= 2
    if min_lenders <= n_banks:
        rows += [(b, "P-MANY", 10.0) for b in range(min_lenders)]
        expect["P-MANY"] = True
    if 2 < min_lenders <= n_banks + 1:
        rows += [(b, "P-FEW", 10.0) for b in range(min_lenders - 1)]
        expect["P-FEW"] = False
    rows.append((n_banks - 1, "P-SOLO", 5.0))
    expect["P-SOLO"] = min_lenders <= 1
    return rows, expect


def synthetic_consortium(
    n_banks: int = 3,
    rows_per_bank: int = 1000,
    seed: int = 0,
    balance_threshold: float = 500_000.0,
    min_lenders: int = 3,
    plant: bool = True,
) -> dict[str, pd.DataFrame]:
    """{bank name: loan book} with columns customer_id, loan_id, balance (2 decimals),
    grade, defaulted (0/1) and fraud (0/1, labelled fraud events), about ``rows_per_bank``
    rows each, rows in random order.

    Customers borrow from 1 bank (70%), 2 (20%), 3 (7%) or more (3%) banks, with 1 + a
    Poisson(0.35) number of loans at each; balances are log-normal (median ~15k, heavy
    tail); defaults are more likely for poor grades and for customers with many lenders;
    fraud events are rare and concentrated on multi-lenders. With ``plant``, the customers
    of ``planted_multi_lending`` are added (their ids start with "P-").
    """
    names = bank_names(n_banks)
    rng = np.random.default_rng(seed)
    lender_choices = np.array([1, 2, 3, 4, 5])
    lender_probs = np.array([0.70, 0.20, 0.07, 0.02, 0.01])
    mean_lenders = float((np.minimum(lender_choices, n_banks) * lender_probs).sum())
    n_customers = max(1, int(round(rows_per_bank * n_banks / (mean_lenders * 1.35))))
    k = np.minimum(rng.choice(lender_choices, size=n_customers, p=lender_probs), n_banks)
    # which banks: a random subset of size k per customer (rank of random keys)
    order = np.argsort(rng.random((n_customers, n_banks)), axis=1)
    member = np.zeros((n_customers, n_banks), dtype=bool)
    rows_idx = np.repeat(np.arange(n_customers), k)
    cols = order[np.arange(n_customers)[:, None], np.arange(n_banks)[None, :]]
    take = np.arange(n_banks)[None, :] < k[:, None]
    member[rows_idx, cols[take]] = True
    cust_idx, bank_idx = np.nonzero(member)
    loans = 1 + rng.poisson(0.35, size=cust_idx.size)
    cust = np.repeat(cust_idx, loans)
    bank = np.repeat(bank_idx, loans)
    n = cust.size
    balance = np.round(np.exp(rng.normal(np.log(15_000), 1.3, size=n)), 2)
    balance = np.minimum(balance, 5e8)
    grade_of = rng.choice(len(GRADES), size=n_customers, p=[0.15, 0.25, 0.25, 0.15, 0.1, 0.06, 0.04])
    p_default = 0.02 + 0.03 * grade_of[cust] + 0.04 * (k[cust] - 1)
    defaulted = (rng.random(n) < p_default).astype(np.int64)
    fraud_customer = rng.random(n_customers) < 0.002 + 0.02 * (k - 1)
    fraud = (fraud_customer[cust] & (rng.random(n) < 0.7)).astype(np.int64)
    ids = np.array([f"C{c:08d}" for c in range(n_customers)], dtype=object)
    frame = pd.DataFrame(
        {
            "bank": bank,
            "customer_id": ids[cust],
            "balance": balance,
            "grade": GRADES[grade_of[cust]],
            "defaulted": defaulted,
            "fraud": fraud,
        }
    )
    if plant:
        planted, _ = planted_multi_lending(balance_threshold, min_lenders, n_banks)
        extra = pd.DataFrame(
            {
                "bank": [b for b, _, _ in planted],
                "customer_id": [c for _, c, _ in planted],
                "balance": [v for _, _, v in planted],
                "grade": "C",
                "defaulted": 0,
                "fraud": 0,
            }
        )
        frame = pd.concat([frame, extra], ignore_index=True)
    tables = {}
    for b, name in enumerate(names):
        part = frame[frame["bank"] == b].drop(columns="bank")
        part = part.iloc[rng.permutation(len(part))].reset_index(drop=True)
        part.insert(1, "loan_id", [f"{name[-1].upper()}-L{i:07d}" for i in range(len(part))])
        tables[name] = part
    return tables


def planted_hits(n_banks: int) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Ids with an obvious ``blacklist_hits`` answer for a requester at bank 0: (ids added
    to each bank's file, expected hit counts). "Q-HITk" is listed by k other banks, "Q-DUP"
    twice by one bank (counts once), "Q-NONE" by nobody, "Q-ELSE" only by another bank (not
    an applicant, so absent from the answer)."""
    names = bank_names(n_banks)
    files: dict[str, list[str]] = {name: [] for name in names}
    expect: dict[str, int] = {}
    for k in range(n_banks):
        ident = f"Q-HIT{k}"
        files[names[0]].append(ident)
        for b in range(1, k + 1):
            files[names[b]].append(ident)
        expect[ident] = k
    if n_banks >= 2:
        files[names[0]].append("Q-DUP")
        files[names[1]] += ["Q-DUP", "Q-DUP"]
        expect["Q-DUP"] = 1
        files[names[1]].append("Q-ELSE")
    files[names[0]].append("Q-NONE")
    expect["Q-NONE"] = 0
    return files, expect


def synthetic_blacklists(
    n_banks: int = 3, applicants: int = 1000, listed_per_bank: int = 500, seed: int = 0, plant: bool = True
) -> dict[str, pd.DataFrame]:
    """{bank name: file with one column customer_id}: the first bank's file lists its loan
    applicants, every other bank's file its blacklisted ids. About a tenth of the applicants
    are on one or more blacklists (known fraudsters apply at several banks); the rest of
    each blacklist are people who did not apply. With ``plant``, the ids of ``planted_hits``
    are added."""
    names = bank_names(n_banks)
    rng = np.random.default_rng(seed)
    pool = max(applicants, listed_per_bank) * 4
    ids = np.array([f"C{c:08d}" for c in range(pool)], dtype=object)
    applicant_idx = rng.choice(pool, size=applicants, replace=False)
    files = {names[0]: list(ids[applicant_idx])}
    suspicious = applicant_idx[rng.random(applicants) < 0.1]
    for b in range(1, n_banks):
        hits = suspicious[rng.random(suspicious.size) < 0.5]
        others = np.setdiff1d(np.arange(pool), applicant_idx)
        rest = rng.choice(others, size=min(others.size, max(0, listed_per_bank - hits.size)), replace=False)
        files[names[b]] = list(ids[np.concatenate([hits, rest])])
    if plant:
        planted, _ = planted_hits(n_banks)
        for name in names:
            files[name] = files[name] + planted[name]
    out = {}
    for name in names:
        col = np.array(files[name], dtype=object)
        out[name] = pd.DataFrame({"customer_id": col[rng.permutation(col.size)]})
    return out


__all__ = [
    "bank_names",
    "planted_hits",
    "planted_multi_lending",
    "synthetic_blacklists",
    "synthetic_consortium",
]
