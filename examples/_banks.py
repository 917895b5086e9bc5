"""Shared by the examples: the real credit data split across banks, as each bank would hold it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent / "data"


def bank_tables(dataset: str, banks: int = 3, seed: int = 1) -> dict[str, pd.DataFrame]:
    """{bank_a: rows, bank_b: rows, ...}: a seeded random split of german_credit or
    taiwan_default_sample into ``banks`` disjoint loan books."""
    frame = pd.read_csv(DATA / f"{dataset}.csv")
    order = np.random.default_rng(seed).permutation(len(frame))
    parts = np.array_split(order, banks)
    return {f"bank_{chr(ord('a') + i)}": frame.iloc[idx].reset_index(drop=True) for i, idx in enumerate(parts)}


def pooled(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """What nobody may see: all banks' rows together (for the plaintext comparison only)."""
    return pd.concat(tables.values(), ignore_index=True)
