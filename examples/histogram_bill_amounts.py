"""histogram: how many statement balances fall in each public band, across three banks."""

import numpy as np
from _banks import bank_tables, pooled

from smpc import analyses

tables = bank_tables("taiwan_default_sample")
edges = [-200_000, 0, 10_000, 50_000, 100_000, 250_000, 700_000]
result = analyses.get("histogram").run_simulated(tables, column="BILL_AMT1", edges=edges, min_cell_size=10)
plain = np.histogram(pooled(tables)["BILL_AMT1"], bins=edges)[0]
for lo, hi, cell, truth in zip(edges[:-1], edges[1:], result["counts"], plain, strict=True):
    print(f"[{lo:>9,}, {hi:>9,}) {cell!s:>22}  pandas {truth}")
