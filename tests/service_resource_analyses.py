"""A test-only catalogue entry for the resource tests, loaded by their cluster through the
config key ``analyses.modules`` (server-side code an operator installs).

``test_rounds_until_released`` keeps the three parties exchanging one small message per round
until the test creates a file: a job that is certainly still running while the test does
something to the party, and that then succeeds -- no timing involved.
"""

from __future__ import annotations

import os

import torch

from smpc.analyses.registry import Param, register, report_progress


def _plain(tables, *, release_file, min_cell_size=1):
    return {"released": True}


@register("test_rounds_until_released", params=[
    Param("release_file", "str", required=True, description="the job ends once this file exists (at party 0)"),
    Param("min_cell_size", "int", default=1, description="unused"),
], plaintext=_plain)
def rounds_until_released(ctx, table, owners, *, release_file, min_cell_size=1):
    """Exchange one 8-byte message with each neighbour per round until party 0 sees
    ``release_file``; party 0's message says whether it did, so all three stop after the same round.

    Leakage: nothing (the messages are party 0's view of a file the test makes).
    Cost: one round of 8 bytes to each of the two other compute parties per round run.
    """
    nxt, prev = (ctx.rank + 1) % 3, (ctx.rank - 1) % 3
    rounds = 0
    while True:
        flag = torch.tensor([int(ctx.rank == 0 and os.path.exists(release_file))], dtype=torch.int64)
        got = ctx.exchange("release", sends={nxt: flag, prev: flag}, recv_from=[prev, nxt])
        released = bool(flag.item()) if ctx.rank == 0 else bool(got[0].item())
        rounds += 1
        if rounds % 20 == 0:
            report_progress(ctx, 0.5, f"round {rounds}")
        if released:
            return {"released": True}
