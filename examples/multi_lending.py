"""multi_lending: customers who borrow too much across the consortium, found on secret shares.

Three banks hold loan books with overlapping customers (synthetic, seeded). No bank learns
another's customers or balances; each learns how many customers are flagged in total and
which of *its own* customers are, here side by side with the plaintext answer nobody may
compute in practice.
"""

import smpc
from smpc import datasets
from smpc.analyses.fraud import merge_bank_results, multi_lending, multi_lending_plain

params = {"id": "customer_id", "balance": "balance", "balance_threshold": 500_000.0, "min_lenders": 3}
tables = datasets.synthetic_consortium(n_banks=3, rows_per_bank=1_000, seed=7)
banks = list(tables)

# every bank is one of the three compute parties (ranks 0..2) and passes its own table
results = smpc.simulate(
    multi_lending, ring=64, party_names=banks, owners=[0, 1, 2],
    inputs={rank: {"table": tables[bank]} for rank, bank in enumerate(banks)}, **params,
)
plain = multi_lending_plain(tables, **params)

print(f"rows per bank: {', '.join(f'{b} {len(t)}' for b, t in tables.items())}")
print(f"flagged customers (total > {params['balance_threshold']:,.0f} or >= {params['min_lenders']} lenders): "
      f"secure {results[0]['flagged_count']}, plaintext {plain['flagged_count']}")
for bank, result in zip(banks, results, strict=True):
    mine = result["by_bank"][bank]["flagged_ids"]
    print(f"  {bank} sees {len(mine)} of its own customers flagged, e.g. {', '.join(mine[:4])}")
assert merge_bank_results(results) == plain, "secure result differs from the plaintext twin"
print("secure result equals the plaintext twin exactly")
