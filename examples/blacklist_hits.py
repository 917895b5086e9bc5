"""blacklist_hits: how many other members list each of my applicants, on secret shares.

bank_a (the requester) brings its loan applicants, four other banks their fraud blacklists
(synthetic, seeded). Only bank_a learns, per applicant, the number of other banks listing
it; the other banks learn nothing about the applicants, and nobody learns which bank lists
whom. With five banks, the banks are input parties and three separate compute parties
hold the shares.
"""

import smpc
from smpc import datasets
from smpc.analyses.fraud import blacklist_hits, blacklist_hits_plain

tables = datasets.synthetic_blacklists(n_banks=5, applicants=1_000, listed_per_bank=500, seed=3)
banks = list(tables)
owners = list(range(3, 3 + len(banks)))  # ranks 3.. are the banks; 0..2 compute only
names = [f"compute_{r}" for r in range(3)] + banks
inputs = {rank: {"table": tables[bank]} for rank, bank in zip(owners, banks, strict=True)}
inputs.update({r: {"table": None} for r in range(3)})

results = smpc.simulate(blacklist_hits, ring=64, inputs=inputs, input_parties=len(banks), party_names=names,
                        owners=owners, requester="bank_a", id="customer_id")
secure = results[owners[0]]["hits"]
plain = blacklist_hits_plain(tables, requester="bank_a", id="customer_id")["hits"]

listed = {k: sum(1 for v in secure.values() if v == k) for k in range(len(banks))}
print(f"bank_a's {len(secure)} applicants by number of other banks listing them: {listed}")
print("results reach bank_a only:", all(r is None for rank, r in enumerate(results) if rank != owners[0]))
assert secure == plain, "secure result differs from the plaintext twin"
print("secure result equals the plaintext twin exactly")
