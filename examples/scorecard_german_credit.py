"""scorecard: a credit scorecard fitted on three banks' pooled loans without pooling them.

The bins and their WOE come from woe_iv; every bank codes its own rows with them, the
logistic regression runs on secret shares, and only the coefficients, points, AUC, KS and
Gini open.
"""

from _banks import bank_tables, pooled

from smpc import analyses

tables = bank_tables("german_credit")
purposes = sorted(pooled(tables)["purpose"].unique())  # what each bank declares as the keys
params = {"label": "creditability", "positive": "bad",
          "columns": "duration_in_month,credit_amount,age_in_years,purpose",
          "edges.duration_in_month": "12,24,36", "edges.age_in_years": "25,35,50",
          "bins.credit_amount": "quantile:5", "bound.credit_amount": 100_000, "decimals.credit_amount": 0,
          "categories.purpose": ",".join(purposes), "min_cell_size": 10}
card = analyses.get("scorecard").run_simulated(tables, timeout=600, **params)
plain = analyses.get("scorecard").run_plaintext(tables, **params)
print(f"{card['iterations']} Newton iterations; AUC {card['auc']:.4f}  KS {card['ks']:.4f}  Gini {card['gini']:.4f}")
for name, c in card["coefficients"].items():
    twin = plain["coefficients"][name]["estimate"]
    print(f"  {name:<18} {c['estimate']:+.6f} (se {c['std_error']:.6f})   float64 fit {twin:+.6f}")
print(f"base points {card['base_points']}")
for column, points in card["points"].items():
    print(f"  {column}: " + ", ".join(f"{b} {p:+d}" for b, p in points.items()))
print("points equal the plaintext scorecard's:", card["points"] == plain["points"])
