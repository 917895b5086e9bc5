"""default_rate: loans, defaults and default rate per loan purpose across three banks, with
groups of fewer than 20 loans suppressed (decided on secret shares, never opened)."""

from _banks import bank_tables, pooled

from smpc import analyses

tables = bank_tables("german_credit")
result = analyses.get("default_rate").run_simulated(
    tables, label="creditability", positive="bad", by="purpose", min_cell_size=20
)
plain = pooled(tables).groupby("purpose")["creditability"].agg(count="count", defaults=lambda s: (s == "bad").sum())
print(f"{'purpose':<22}{'loans':>7}{'defaults':>10}{'rate':>8}   pandas (loans, defaults)")
for key, cell in result["groups"].items():
    truth = tuple(int(v) for v in plain.loc[key])
    if cell.get("suppressed"):
        print(f"{key:<22}{'suppressed (fewer than 20 loans)':>33}   {truth}")
    else:
        print(f"{key:<22}{cell['count']:>7}{cell['defaults']:>10}{cell['rate']:>8.3f}   {truth}")
