"""auc_ks against an independent rank-based reference (and scikit-learn where installed), on
real credit data and adversarial scores; bad input refused with one error naming bank and column."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import smpc
from smpc import analyses
from smpc.errors import InputError
from smpc.stats.roc import roc_sums
from smpc.stats.rows import share_rows

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"


def reference(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """(AUC, KS): AUC from average ranks (Mann-Whitney, ties 1/2), KS from TPR and FPR at
    every distinct score used as the threshold "score >= t"."""
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    p = int(positive.sum())
    n = len(scores) - p
    auc = (ranks[positive == 1].sum() - p * (p + 1) / 2) / (p * n)
    thresholds = np.unique(scores)
    pos_sorted, neg_sorted = np.sort(scores[positive == 1]), np.sort(scores[positive == 0])
    tpr = 1 - np.searchsorted(pos_sorted, thresholds, side="left") / p
    fpr = 1 - np.searchsorted(neg_sorted, thresholds, side="left") / n
    return float(auc), float(np.max(np.abs(tpr - fpr)))


def check(result: dict, scores: np.ndarray, positive: np.ndarray) -> None:
    auc, ks = reference(scores, positive)
    assert abs(result["auc"] - auc) < 1e-12 and abs(result["ks"] - ks) < 1e-12, (result, auc, ks)
    assert abs(result["gini"] - (2 * auc - 1)) < 1e-12
    try:
        from sklearn.metrics import roc_auc_score, roc_curve
    except ImportError:
        return
    fpr, tpr, _ = roc_curve(positive, scores)
    assert abs(result["auc"] - roc_auc_score(positive, scores)) < 1e-12
    assert abs(result["ks"] - np.max(np.abs(tpr - fpr))) < 1e-12


def german_tables(banks: int = 3) -> dict[str, pd.DataFrame]:
    frame = pd.read_csv(DATA / "german_credit.csv")
    order = np.random.default_rng(5).permutation(len(frame))
    return {f"bank_{chr(97 + i)}": frame.iloc[idx].reset_index(drop=True)
            for i, idx in enumerate(np.array_split(order, banks))}


def pooled(tables):
    return pd.concat(tables.values(), ignore_index=True)


GERMAN = dict(score="duration_in_month", label="creditability", positive="bad", negative="good",
              score_decimals=0, score_bound=100.0)


def test_german_credit_duration_as_a_score_matches_the_rank_reference_and_the_twin():
    tables = german_tables()
    analysis = analyses.get("auc_ks")
    result = analysis.run_simulated(tables, **GERMAN)
    frame = pooled(tables)
    check(result, frame["duration_in_month"].to_numpy(float), (frame["creditability"] == "bad").to_numpy(int))
    assert result["rows"] == 1000 and result["positives"] == 300
    assert result == analysis.run_plaintext(tables, **GERMAN)


def adversarial_tables(seed: int, rows=(400, 350, 450)) -> dict[str, pd.DataFrame]:
    """Scores up to 1e9 in magnitude, negatives, cents, heavy ties (60 distinct values, and
    a block of rows at exactly the bound), labels 0/1."""
    rng = np.random.default_rng(seed)
    levels = np.concatenate([rng.uniform(-1e9, 1e9, 58).round(2), [1e9, -1e9]])
    tables = {}
    for i, n in enumerate(rows):
        score = levels[rng.integers(0, len(levels), n)]
        flag = (rng.random(n) < 1 / (1 + np.exp(-score / 4e8))).astype(int)
        tables[f"bank_{chr(97 + i)}"] = pd.DataFrame({"score": score, "flag": flag,
                                                      "segment": rng.choice(["retail", "sme", "corp"], n)})
    return tables


@pytest.mark.parametrize("seed", [1, 2])
def test_adversarial_magnitudes_negatives_and_ties(seed):
    tables = adversarial_tables(seed)
    params = dict(score="score", label="flag", score_decimals=2, score_bound=1e9)
    result = analyses.get("auc_ks").run_simulated(tables, **params)
    frame = pooled(tables)
    check(result, frame["score"].to_numpy(), frame["flag"].to_numpy())
    assert result == analyses.get("auc_ks").run_plaintext(tables, **params)


def test_scores_too_wide_for_a_packed_key_sort_on_two_words():
    """4e12 at 3 decimals is 4e15 units: with the label and row index beside it the key
    needs more than 63 bits, so the score gets a word of its own."""
    tables = adversarial_tables(8)
    for t in tables.values():
        t["score"] = (t["score"] * 4000).round(3)
    params = dict(score="score", label="flag", score_decimals=3, score_bound=4e12)
    result = analyses.get("auc_ks").run_simulated(tables, **params)
    frame = pooled(tables)
    check(result, frame["score"].to_numpy(), frame["flag"].to_numpy())


def test_roc_sums_on_the_128_bit_ring_and_fixed_point_scores():
    """The same sums in a ring128 job (the running counts carry across the two lanes) on
    fixed-point scores (a model's score or probability), with ties."""
    rng = np.random.default_rng(12)
    scores = rng.integers(-2000, 2000, 900) / 16.0  # exact at 20 fractional bits, many ties
    flags = (rng.random(900) < 1 / (1 + np.exp(-scores / 40))).astype(float)
    parts = np.array_split(np.arange(900), 3)

    def job(ctx):
        mine = parts[ctx.rank]
        score, _ = share_rows(ctx, [0, 1, 2], scores[mine], width=1, bound=200.0)
        labels, _ = share_rows(ctx, [0, 1, 2], np.column_stack([flags, 1 - flags])[mine], width=2, bound=1.0,
                               frac_bits=0)
        counts = labels.sum(0)
        twice_u, gap = roc_sums(score.reshape(-1), labels[:, 0:1], labels[:, 1:2], counts[0:1], counts[1:2])
        return twice_u.reveal_int()[0], gap.reveal_int()[0]

    twice_u, gap = smpc.simulate(job, ring=128)[0]
    p = int(flags.sum())
    n = len(flags) - p
    check({"auc": twice_u / (2 * p * n), "ks": gap / (p * n), "gini": twice_u / (p * n) - 1}, scores, flags)


def test_by_group_each_population_matches_and_small_ones_are_suppressed():
    tables = adversarial_tables(3)
    params = dict(score="score", label="flag", score_decimals=2, score_bound=1e9, by="segment",
                  groups=["corp", "retail", "sme", "empty"], min_cell_size=10)
    result = analyses.get("auc_ks").run_simulated(tables, **params)
    frame = pooled(tables)
    for key in ("corp", "retail", "sme"):
        part = frame[frame["segment"] == key]
        check(result["groups"][key], part["score"].to_numpy(), part["flag"].to_numpy())
    assert result["groups"]["empty"] == {"suppressed": True}
    assert result == analyses.get("auc_ks").run_plaintext(tables, **params)


def test_four_banks_as_input_parties():
    tables = german_tables(banks=4)
    result = analyses.get("auc_ks").run_simulated(tables, **GERMAN)
    frame = pooled(tables)
    check(result, frame["duration_in_month"].to_numpy(float), (frame["creditability"] == "bad").to_numpy(int))


def test_a_population_with_one_class_has_no_auc():
    tables = adversarial_tables(4)
    for t in tables.values():
        t.loc[t["segment"] == "corp", "flag"] = 0
    result = analyses.get("auc_ks").run_simulated(tables, score="score", label="flag", score_decimals=2,
                                                  score_bound=1e9, by="segment", groups=["corp", "sme", "retail"])
    assert result["groups"]["corp"]["auc"] is None and result["groups"]["corp"]["positives"] == 0


def test_a_label_with_a_third_value_is_refused_naming_bank_and_column():
    tables = german_tables()
    tables["bank_b"].loc[7, "creditability"] = "unknown"
    with pytest.raises(InputError, match=r"^bank_b, column 'creditability': row 8 is neither 'bad' or 'good'"):
        analyses.get("auc_ks").run_simulated(tables, **GERMAN)
    params = {k: v for k, v in GERMAN.items() if k != "negative"}  # one complement per bank
    with pytest.raises(InputError, match=r"^bank_b, column 'creditability': row \d+ is neither"):
        analyses.get("auc_ks").run_simulated(tables, **params)


def test_a_flag_other_than_0_or_1_is_refused():
    tables = adversarial_tables(5)
    tables["bank_c"].loc[3, "flag"] = 2
    with pytest.raises(InputError, match=r"^bank_c, column 'flag': row 4 is not 0 or 1"):
        analyses.get("auc_ks").run_simulated(tables, score="score", label="flag", score_decimals=2, score_bound=1e9)


def test_a_score_that_is_text_at_one_bank_is_refused_naming_bank_and_column():
    tables = german_tables()
    column = tables["bank_c"]["duration_in_month"].astype(object)
    column.iloc[11] = "twelve"
    tables["bank_c"]["duration_in_month"] = column
    with pytest.raises(InputError, match=r"^bank_c, column 'duration_in_month': row 12 is not numeric$"):
        analyses.get("auc_ks").run_simulated(tables, **GERMAN)


def test_a_score_beyond_its_bound_or_finer_than_its_decimals_is_refused():
    tables = adversarial_tables(6)
    with pytest.raises(smpc.RangeError, match=r"bank_[abc], column 'score'"):
        analyses.get("auc_ks").run_simulated(tables, score="score", label="flag", score_decimals=2, score_bound=1e8)
    with pytest.raises(InputError, match=r"bank_[abc], column 'score': row \d+ has more than 0 decimal places"):
        analyses.get("auc_ks").run_simulated(tables, score="score", label="flag", score_decimals=0, score_bound=1e9)


def test_only_the_four_result_integers_are_opened(opened):
    """No score, rank or label leaves the shares: the one opened vector is (rows, positives,
    2U, gap) of the population (the sort's opened comparisons are of distinct keys in a
    secretly shuffled order, see smpc.protocols.sort)."""
    tables = german_tables()
    result = analyses.get("auc_ks").run_simulated(tables, **GERMAN)
    assert len(opened) == 1 and len(opened[0]) == 4
    rows, positives, twice_u, gap = opened[0]
    assert (rows, positives) == (result["rows"], result["positives"])
    assert twice_u / (2 * 300 * 700) == result["auc"] and gap / (300 * 700) == result["ks"]


def test_smpc_analyze_runs_auc_ks_from_files(tmp_path):
    tables = german_tables()
    args = []
    for bank, frame in tables.items():
        path = tmp_path / f"{bank}.csv"
        frame.to_csv(path, index=False)
        args += ["--data", f"{bank}={path}"]
    params = [f"{k}={v}" for k, v in GERMAN.items()]
    cmd = [sys.executable, "-m", "smpc.cli", "analyze", "auc_ks", *args, *sum((["--param", p] for p in params), []),
           "--json", "--check"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)["result"]
    frame = pooled(tables)
    check(result, frame["duration_in_month"].to_numpy(float), (frame["creditability"] == "bad").to_numpy(int))
