"""A test-only catalogue entry for the real-service test of out-of-bound reveals, loaded by
its cluster through ``analyses.modules``: every bank shares its row count under an honest
bound, the sum is re-bounded with a bound that does not hold (as a wrong declaration would),
and opened to the job's recipients, who must refuse it rather than receive it wrapped."""

from __future__ import annotations

import smpc
from smpc.analyses.registry import Param, register
from smpc.secret import SecretTensor


def _plain(tables, *, column, wrong_bound=100.0):
    return {"rows": sum(int(t[column].count()) for t in tables.values())}


@register("test_out_of_bound", params=[
    Param("column", "column", required=True, description="the column whose values are counted"),
    Param("wrong_bound", "float", default=100.0, description="the bound wrongly declared for the sum"),
], plaintext=_plain, releases_cells=False)
def out_of_bound(ctx, table, owners, *, column, wrong_bound=100.0):
    """The banks' total count of values in ``column``, opened under a wrongly declared bound.

    Leakage: the total row count, to the recipients, if it lies within the declared bound.
    Cost: 2 rounds: one to share, one to reveal.
    """
    mine = [int(table[column].count())] if table is not None and ctx.rank in owners else None
    parts = smpc.share_each(ctx, mine, owners, shape=(1,), bound=1e6, frac_bits=0, name="row count")
    total = sum(parts[1:], parts[0])
    wrong = SecretTensor(ctx, total.shares, 0, float(wrong_bound), origin="the row total under a wrong bound")
    opened = wrong.reveal_int(ctx.result_ranks)
    return None if opened is None else {"rows": int(opened[0])}
