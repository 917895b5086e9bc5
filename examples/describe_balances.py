"""describe: count, sum, mean, var, std, min, max of Taiwan credit limits and bill balances
(negative balances included) across three banks, beside pandas on the pooled rows."""

from _banks import bank_tables, pooled

from smpc import analyses

tables = bank_tables("taiwan_default_sample")
columns = ["LIMIT_BAL", "BILL_AMT1"]
secure = analyses.get("describe").run_simulated(tables, columns=columns)
plain = pooled(tables)[columns].agg(["count", "sum", "mean", "var", "std", "min", "max"])
for column in columns:
    print(f"{column}:")
    for stat in ["count", "sum", "mean", "var", "std", "min", "max"]:
        print(f"  {stat:<6}{secure[column][stat]:>24,.6f}{plain.loc[stat, column]:>24,.6f}  (secure | pandas)")
