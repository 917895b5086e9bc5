"""quantiles: exact percentiles of credit limits over five banks (secure selection), beside numpy."""

import numpy as np
from _banks import bank_tables, pooled

from smpc import analyses

tables = bank_tables("taiwan_default_sample", banks=5)
levels = [0.05, 0.25, 0.5, 0.75, 0.95]
result = analyses.get("quantiles").run_simulated(tables, column="LIMIT_BAL", q=levels)
plain = np.quantile(pooled(tables)["LIMIT_BAL"], levels)
for q, truth in zip(levels, plain, strict=True):
    print(f"q={q:<5} secure {result['quantiles'][str(q)]:>12,.2f}   numpy {truth:>12,.2f}")
