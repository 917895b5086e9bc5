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


# ----- fraud rings: applications and transfers with planted truth ----------------------------
def _labels(prefix: str, numbers: np.ndarray, width: int = 8, suffix: str = "") -> np.ndarray:
    """Identifier strings prefix + zero-padded number + suffix (object array); a formatted
    list is several times faster than numpy's char functions at 1e6 rows."""
    return np.array([f"{prefix}{n:0{width}d}{suffix}" for n in np.asarray(numbers).tolist()], dtype=object)


def synthetic_applications(
    n_banks: int = 3,
    rows_per_bank: int = 1000,
    seed: int = 0,
    window_days: int = 3,
    ring_size: int = 6,
    rings: int = 4,
    bursts: int = 4,
    burst_banks: int | None = None,
) -> tuple[dict[str, pd.DataFrame], dict]:
    """({bank name: applications}, planted truth): loan applications with columns
    customer_id, phone, device, email (empty for some rows) and date (YYYY-MM-DD), about
    ``rows_per_bank`` rows per bank, deterministic by ``seed``.

    Background noise: households of 1 to 4 customers share a phone (family phones, at any
    banks); devices and e-mails are personal; 15% of customers apply again at the same bank
    (repeat customers) and 10% at another bank, always at least 30 days apart (ordinary
    shopping around, not a burst). Planted on top:
    - ``rings`` fraud rings of ``ring_size`` synthetic ids sharing one phone and one device,
      spread over at least two banks (ids "R<ring>-<k>");
    - one ring of ``ring_size`` ids at the first bank only (ids "S-<k>"): flagged with
      min_banks = 1, not with min_banks = 2;
    - ``bursts`` people (ids "B-<k>") applying at ``burst_banks`` banks (default all, at most
      5) within ``window_days`` days, their last application at the first bank, one of them
      exactly ``window_days`` days after another.
    Truth: {"ring_ids": {bank: ids in multi-bank rings}, "single_bank_ring_ids": {bank:
    ids}, "ring_size": k, "burst_ids": ids whose application at the first bank follows
    burst_banks - 1 applications elsewhere within the window, "burst_applications":
    burst_banks - 1}. With min_ids <= ring_size, 5 <= min_ids (households hold at most 4),
    shared_attribute_links on phone flags exactly the planted rings' ids; velocity with
    min_applications = burst_banks - 1 > 1 flags exactly the burst ids' applications at the
    first bank.
    """
    names = bank_names(n_banks)
    rng = np.random.default_rng(seed)
    burst_banks = min(n_banks, 5) if burst_banks is None else burst_banks
    n_customers = max(1, int(rows_per_bank * n_banks / 1.25))
    sizes = rng.choice([1, 2, 3, 4], size=n_customers, p=[0.5, 0.25, 0.15, 0.1])  # family phones
    household = np.repeat(np.arange(n_customers), sizes)[:n_customers]
    home = rng.integers(0, n_banks, n_customers)
    start = np.datetime64("2024-01-01")
    first_day = rng.integers(0, 300, n_customers)
    cust = [np.arange(n_customers)]
    bank = [home]
    day = [first_day]
    again = np.flatnonzero(rng.random(n_customers) < 0.15)
    cust.append(again)
    bank.append(home[again])
    day.append(first_day[again] + rng.integers(30, 120, again.size))
    elsewhere = np.flatnonzero(rng.random(n_customers) < 0.10) if n_banks > 1 else np.zeros(0, dtype=np.int64)
    cust.append(elsewhere)
    bank.append((home[elsewhere] + rng.integers(1, max(n_banks, 2), elsewhere.size)) % n_banks)
    day.append(first_day[elsewhere] - rng.integers(30, 200, elsewhere.size))
    cust_all, bank_all, day_all = (np.concatenate(x) for x in (cust, bank, day))
    ids = _labels("C", cust_all)
    phones = _labels("+41 79 ", household[cust_all], 7)
    devices = _labels("dev-", cust_all)
    emails = _labels("c", cust_all, suffix="@mail.example")
    emails[rng.random(emails.size) < 0.05] = None  # some applications give no e-mail
    frame = pd.DataFrame({"bank": bank_all, "customer_id": ids, "phone": phones, "device": devices,
                          "email": emails, "day": day_all})
    planted = []
    truth: dict = {"ring_ids": {n: [] for n in names}, "single_bank_ring_ids": {n: [] for n in names},
                   "ring_size": ring_size, "burst_ids": [], "burst_applications": burst_banks - 1}
    for r in range(rings if n_banks > 1 else 0):
        for k in range(ring_size):
            b = (r + k) % n_banks
            ident = f"R{r}-{k}"
            planted.append((b, ident, f"+41 76 900 {r:02d} 00", f"ring-dev-{r}", f"r{r}k{k}@fake.example", 100 + k))
            truth["ring_ids"][names[b]].append(ident)
    for k in range(ring_size):
        planted.append((0, f"S-{k}", "+41 76 900 99 00", "ring-dev-single", f"s{k}@fake.example", 150 + k))
        truth["single_bank_ring_ids"][names[0]].append(f"S-{k}")
    for j in range(bursts if burst_banks > 1 else 0):
        ident = f"B-{j}"
        last = 200 + 10 * j
        gaps = [window_days] + [int(x) for x in rng.integers(0, window_days + 1, burst_banks - 2)]
        for i, b in enumerate(range(1, burst_banks)):
            planted.append((b, ident, f"+41 78 {j:03d} 00 00", f"burst-dev-{j}", f"b{j}@mail.example",
                            last - gaps[i]))
        planted.append((0, ident, f"+41 78 {j:03d} 00 00", f"burst-dev-{j}", f"b{j}@mail.example", last))
        truth["burst_ids"].append(ident)
    if planted:
        extra = pd.DataFrame(planted, columns=["bank", "customer_id", "phone", "device", "email", "day"])
        frame = pd.concat([frame, extra], ignore_index=True)
    frame["date"] = (start + frame["day"].to_numpy().astype("timedelta64[D]")).astype(str)
    frame = frame.drop(columns="day")
    tables = {}
    for b, name in enumerate(names):
        part = frame[frame["bank"] == b].drop(columns="bank")
        tables[name] = part.iloc[rng.permutation(len(part))].reset_index(drop=True)
    for key in ("ring_ids", "single_bank_ring_ids"):
        truth[key] = {n: sorted(v) for n, v in truth[key].items()}
    return tables, truth


def synthetic_transfers(
    n_banks: int = 3,
    rows_per_bank: int = 1000,
    seed: int = 0,
    mules: int = 4,
    min_senders: int = 3,
) -> tuple[dict[str, pd.DataFrame], dict]:
    """({bank name: outgoing transfers}, planted truth): columns sender (the bank's
    customer), receiver (an account id), receiver_bank (the party name of the member
    holding it), victim (0/1: the sender's bank reported the transfer as fraud) and date.

    Background: customers pay accounts at any bank, many of them popular (shops, landlords:
    one receiver paid by hundreds, never by victims), with repeated payments to the same
    receiver; 0.5% of transfers are reported frauds, each to a different receiver. Planted
    on top: ``mules`` mule accounts ("M-<k>", held by bank k mod banks) paid by
    ``min_senders`` + k victims spread over all banks, who forward the money (so each mule
    is a sender at its own bank); one account ("M-NEAR") paid by min_senders - 1 victims
    (not flagged); each planted victim pays its mule twice (counts once). Truth:
    {"mule_accounts": {bank: accounts flagged at min_senders}}.
    """
    names = bank_names(n_banks)
    rng = np.random.default_rng(seed)
    rows = []
    per_bank = max(1, rows_per_bank)
    total = per_bank * n_banks
    sender_bank = np.repeat(np.arange(n_banks), per_bank)
    letters = [n[-1].upper() for n in names]
    sender = np.array([f"{letters[b]}A{c:08d}" for b, c in
                       zip(sender_bank.tolist(), rng.integers(0, max(1, total // 3), total).tolist(), strict=True)],
                      dtype=object)
    popular = rng.random(total) < 0.4
    receiver_num = np.where(popular, rng.integers(0, 50, total), rng.integers(0, max(1, total), total))
    receiver = np.where(popular, _labels("SHOP", receiver_num, 4), _labels("X", receiver_num))
    receiver_bank = rng.integers(0, n_banks, total)
    victim = (rng.random(total) < 0.005).astype(np.int64)
    # every reported fraud goes to its own fresh account: no background account reaches two
    receiver = np.where(victim == 1, _labels("V", np.arange(total)), receiver)
    day = rng.integers(0, 90, total)
    frame = pd.DataFrame({"bank": sender_bank, "sender": sender, "receiver": receiver,
                          "receiver_bank": np.array(names, dtype=object)[receiver_bank], "victim": victim,
                          "day": day})
    truth = {"mule_accounts": {n: [] for n in names}}
    for k in range(mules):
        account = f"M-{k}"
        holder = k % n_banks
        for v in range(min_senders + k):
            b = v % n_banks
            for _ in range(2):
                rows.append((b, f"VIC-{k}-{v}", account, names[holder], 1, 40 + v))
        rows.append((holder, account, f"OUT-{k}", names[(holder + 1) % n_banks], 0, 60))
        truth["mule_accounts"][names[holder]].append(account)
    for v in range(min_senders - 1):
        rows.append((v % n_banks, f"VIC-NEAR-{v}", "M-NEAR", names[0], 1, 45))
    rows.append((0, "M-NEAR", "OUT-NEAR", names[-1], 0, 61))
    extra = pd.DataFrame(rows, columns=["bank", "sender", "receiver", "receiver_bank", "victim", "day"])
    frame = pd.concat([frame, extra], ignore_index=True)
    frame["date"] = (np.datetime64("2024-03-01") + frame["day"].to_numpy().astype("timedelta64[D]")).astype(str)
    frame = frame.drop(columns="day")
    tables = {}
    for b, name in enumerate(names):
        part = frame[frame["bank"] == b].drop(columns="bank")
        tables[name] = part.iloc[rng.permutation(len(part))].reset_index(drop=True)
    truth["mule_accounts"] = {n: sorted(v) for n, v in truth["mule_accounts"].items()}
    return tables, truth


def precision_recall(found: set, truth: set) -> tuple[float, float]:
    """(precision, recall) of a found set against the planted one (1.0 for empty sets)."""
    hit = len(found & truth)
    return (hit / len(found) if found else 1.0), (hit / len(truth) if truth else 1.0)


__all__ = [
    "bank_names",
    "precision_recall",
    "planted_hits",
    "planted_multi_lending",
    "synthetic_blacklists",
    "synthetic_applications",
    "synthetic_consortium",
    "synthetic_transfers",
]
