"""Differentially private default rate by loan purpose across three banks: the noisy release
(noise drawn by two compute parties on secret shares, docs/dp.md) beside the exact one, with
the epsilon spent and a 95 % interval for every rate.

Each bank counts its loans and defaults per purpose, at most one loan per customer id (here
the row number stands in for the customer id: the German credit data has one loan per
customer). Epsilon 1 is split over the loan counts and the default counts."""

from _banks import bank_tables

from smpc import analyses

tables = bank_tables("german_credit")
for bank, table in tables.items():
    tables[bank] = table.assign(customer=[f"{bank}-{i}" for i in range(len(table))])
purposes = sorted({p for t in tables.values() for p in t["purpose"]})
params = dict(label="creditability", positive="bad", by="purpose", groups=purposes)
rate = analyses.get("default_rate")
noisy = rate.run_simulated(tables, **params, dp_epsilon=1.0, dp_customer="customer", dp_rows_per_customer=1)
exact = rate.run_simulated(tables, **params, min_contributors=0)  # every group, to compare

print(f"epsilon spent: {noisy['epsilon_spent']:g} ({noisy['mechanism']}, {noisy['noise_parties']} contributions; "
      f"noise scale per contribution {noisy['noise']['count']['scale']:g}, std of the released noise "
      f"{noisy['noise']['count']['std']:.2f} loans)")
print(f"{'purpose':<22}{'exact rate':>11}{'noisy rate':>12}   95 % interval     loans exact / noisy")
for key in purposes:
    e, n = exact["groups"][key], noisy["groups"][key]
    lo, hi = n["interval95"]["rate"]
    print(f"{key:<22}{e['rate']:>11.3f}{n['rate']:>12.3f}   [{lo:.3f}, {hi:.3f}]   {e['count']:>6} / {n['count']}")
