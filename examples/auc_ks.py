"""auc_ks: how well loan duration separates bad from good loans across three banks (German
credit), as AUC, KS and Gini, overall and per purpose; the pooled scores are sorted on secret
shares and no score, rank or label is opened."""

from _banks import bank_tables, pooled

from smpc import analyses

tables = bank_tables("german_credit")
params = dict(score="duration_in_month", label="creditability", positive="bad", negative="good",
              score_decimals=0, score_bound=100)
auc_ks = analyses.get("auc_ks")
overall = auc_ks.run_simulated(tables, **params)
print(f"all loans: {overall['rows']} ({overall['positives']} bad)  AUC {overall['auc']:.6f}  "
      f"KS {overall['ks']:.6f}  Gini {overall['gini']:.6f}")

# the same in the clear, from the pooled rows nobody may see: Mann-Whitney with ties as 1/2
frame = pooled(tables)
ranks = frame["duration_in_month"].rank(method="average")
bad = frame["creditability"] == "bad"
auc = (ranks[bad].sum() - bad.sum() * (bad.sum() + 1) / 2) / (bad.sum() * (~bad).sum())
print(f"pandas ranks: AUC {auc:.6f}")

by_purpose = auc_ks.run_simulated(tables, **params, by="purpose", min_cell_size=20)
print(f"\n{'purpose':<22}{'loans':>7}{'AUC':>10}{'KS':>10}")
for key, cell in by_purpose["groups"].items():
    if cell.get("suppressed"):
        print(f"{key:<22}{'suppressed (a bank holds fewer than 20)':>27}")
    else:
        print(f"{key:<22}{cell['rows']:>7}{cell['auc']:>10.4f}{cell['ks']:>10.4f}")
