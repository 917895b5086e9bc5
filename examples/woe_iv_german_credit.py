"""woe_iv: weight of evidence and information value per bin, over three banks' loans.

Age is cut at public points, the credit amount at the pooled quintiles (found securely and
opened as cut points only), purpose by its declared keys; bins failing the rules merge.
"""

import numpy as np
from _banks import bank_tables, pooled

from smpc import analyses

tables = bank_tables("german_credit")
purposes = sorted(pooled(tables)["purpose"].unique())  # what each bank declares as the keys
params = {"label": "creditability", "positive": "bad", "columns": "age_in_years,credit_amount,purpose",
          "edges.age_in_years": "25,30,35,45,60", "bins.credit_amount": "quantile:5",
          "bound.credit_amount": 100_000, "decimals.credit_amount": 0, "categories.purpose": ",".join(purposes),
          "min_cell_size": 10}
result = analyses.get("woe_iv").run_simulated(tables, **params)
everyone = pooled(tables)
bad = everyone["creditability"] == "bad"
for column, feature in result["features"].items():
    print(f"{column}: IV {feature['iv']:.4f}" + (f"  (merged: {feature['merged']})" if feature["merged"] else ""))
    for b in feature["bins"]:
        print(f"  {b['bin']:<28} {b['count']:>4} loans {b['bad']:>4} bad  WOE {b['woe']:+.4f}  IV {b['iv']:.4f}")
# the same WOE from the pooled rows (what no party may see), for the first age bin
first = result["features"]["age_in_years"]["bins"][0]
inside = everyone["age_in_years"] < first["upper"]
woe = np.log((bad[inside].sum() / bad.sum()) / ((~bad)[inside].sum() / (~bad).sum()))
print(f"pandas WOE of {first['bin']}: {woe:+.4f}")
