"""psi: has one bank's book drifted from the rest of the consortium's, and do two periods differ?

The rest of the consortium is the reference: quantile bins are cut at its quintiles.
"""

from _banks import bank_tables

from smpc import analyses

tables = bank_tables("taiwan_default_sample")
psi = analyses.get("psi")
bins = {"columns": "LIMIT_BAL,BILL_AMT1", "bins.LIMIT_BAL": "quantile:5", "bound.LIMIT_BAL": 1e7,
        "decimals.LIMIT_BAL": 0, "edges.BILL_AMT1": "0,10000,50000,100000", "min_cell_size": 10}
drift = psi.run_simulated(tables, bank="bank_b", **bins)
for column, feature in drift["features"].items():
    print(f"bank_b vs the rest, {column}: PSI {feature['psi']:.5f}")
    for b in feature["bins"]:
        print(f"  {b['bin']:<22} rest {b['reference_share']:.3f}  bank_b {b['current_share']:.3f}")
# two "periods": university graduates (EDUCATION 1) against graduate school (2)
periods = psi.run_simulated(tables, period="EDUCATION", reference="1", current="2", **bins)
for column, feature in periods["features"].items():
    print(f"EDUCATION 1 vs 2, {column}: PSI {feature['psi']:.5f}")
