"""corr: Pearson correlation (and covariance) of limits, balances and demographics across banks."""

import numpy as np
from _banks import bank_tables, pooled

from smpc import analyses

tables = bank_tables("taiwan_default_sample")
columns = ["LIMIT_BAL", "BILL_AMT1", "EDUCATION", "MARRIAGE"]
result = analyses.get("corr").run_simulated(tables, columns=columns)
print("secure corr:\n", np.array(result["corr"]).round(6))
print("pandas corr:\n", pooled(tables)[columns].corr().to_numpy().round(6))
print("largest difference:", float(np.abs(np.array(result["corr"]) - pooled(tables)[columns].corr().to_numpy()).max()))
