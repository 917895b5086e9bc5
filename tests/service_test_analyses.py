"""A test-only catalogue entry, loaded by the test clusters through the config key
``analyses.modules`` (server-side code an operator installs; nothing travels over the wire).

``test_endless_rounds`` keeps the three parties exchanging one small message per round until
it has done ``rounds`` rounds (default: effectively forever), so the kill and cancel tests can
act on a job that is certainly still running.
"""

from __future__ import annotations

import torch

from smpc.analyses.registry import Param, register, report_progress


def _plain(tables, *, rounds=10**9, min_cell_size=1):
    return {"rounds": rounds}


@register("test_endless_rounds", params=[
    Param("rounds", "int", default=10**9, description="how many rounds to run"),
    Param("min_cell_size", "int", default=1, description="unused"),
], plaintext=_plain)
def endless_rounds(ctx, table, owners, *, rounds=10**9, min_cell_size=1):
    """Exchange one 8-byte message with each neighbour per round, ``rounds`` times.

    Leakage: nothing (the messages are constants).
    Cost: ``rounds`` rounds, 8 bytes per round to each of the two other compute parties.
    """
    nxt, prev = (ctx.rank + 1) % 3, (ctx.rank - 1) % 3
    tick = torch.zeros(1, dtype=torch.int64)
    for i in range(rounds):
        ctx.exchange("tick", sends={nxt: tick, prev: tick}, recv_from=[prev, nxt])
        if i % 20 == 0:
            report_progress(ctx, min(0.99, i / rounds), f"round {i}")
    return {"rounds": rounds}
