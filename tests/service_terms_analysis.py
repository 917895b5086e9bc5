"""A test-only catalogue entry that declares the disclosure-control parameters
``min_contributors`` and ``max_dominance`` and returns the terms it ran with, so tests can see
what the party service merged and passed (loaded by test clusters through ``analyses.modules``).
"""

from __future__ import annotations

from smpc.analyses.registry import Param, register


def _plain(tables, *, label, min_cell_size=1, min_contributors=1, max_dominance=100.0):
    return {"min_cell_size": min_cell_size, "min_contributors": min_contributors, "max_dominance": max_dominance}


@register("test_disclosure_terms", params=[
    Param("label", "column", required=True, description="a column every bank reads (not used)"),
    Param("min_cell_size", "int", default=1, description="returned"),
    Param("min_contributors", "int", default=1, description="returned"),
    Param("max_dominance", "float", default=100.0, description="returned"),
], plaintext=_plain, replace=True)
def disclosure_terms(ctx, table, owners, *, label, min_cell_size=1, min_contributors=1, max_dominance=100.0):
    """Return the disclosure-control terms the job runs with.

    Leakage: nothing about the data (the terms are the parties' policies, merged).
    Cost: no rounds, no bytes.
    """
    return _plain(None, label=label, min_cell_size=min_cell_size, min_contributors=min_contributors,
                  max_dominance=max_dominance)
