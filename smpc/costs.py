"""The cost table: rounds and bytes per element per party, measured by running every protocol.

``python -m smpc.costs`` prints docs/costs.md; ``make costs`` rewrites it and a test fails when
the file is stale. Numbers come from ``ctx.comm_stats()`` of real in-process runs, never from
formulas, so the table cannot drift from the code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import SimpleNamespace

import torch

from smpc.errors import RangeError
from smpc.secret import share
from smpc.simulation import simulate

N = 1000  # elements per run; every protocol here costs a whole number of bytes per element


def _ops() -> list[tuple[str, str, Callable | None]]:
    """(name, what is measured, op(v) -> result) where v holds N-element secrets: x, y (fixed
    point), xi, yi (integer mode) and bit (a secret 0/1). None measures the input itself."""
    from smpc import dp
    from smpc.protocols.boolean import bit_decompose
    from smpc.protocols.shuffle import shuffle
    from smpc.secret import where

    return [
        ("share (owner = compute party)", "one input", None),
        ("reveal to all", "abs(x) <= 1e3", lambda v: v.x.reveal()),
        ("reveal to one party", "to rank 0", lambda v: v.x.reveal(to=0)),
        ("noisy reveal to all (dp.noisy_open)", "integer x + 2 discrete Laplace draws of scale 1",
         lambda v: dp.noisy_open(v.xi.ctx, v.xi, [1] * N, [0, 1, 2])),
        ("reveal a 0/1 secret", "a comparison's result", lambda v: v.bit.reveal()),
        ("add / sub / public ops", "local", lambda v: v.x + v.y - 3),
        ("mul (integer mode)", "x*y, frac_bits=0", lambda v: v.xi * v.yi),
        ("mul (fixed point)", "x*y with truncation", lambda v: v.x * v.y),
        ("square (fixed point)", "x*x", lambda v: v.x * v.x),
        ("mul by public float", "x*0.37", lambda v: v.x * 0.37),
        ("dot (N terms)", "per dot product", lambda v: v.x.dot(v.y)),
        ("truncate", "drop 8 fractional bits", lambda v: v.x.truncate(8)),
        ("less than", "x<y", lambda v: v.x < v.y),
        ("less than public", "x<0.5", lambda v: v.x < 0.5),
        ("equal", "x==y", lambda v: v.x == v.y),
        ("where", "bit ? x : y", lambda v: where(v.bit, v.x, v.y)),
        ("abs", "abs(x)", lambda v: v.x.abs()),
        ("A2B (64-bit)", "arithmetic to boolean", lambda v: bit_decompose(v.x.ctx, v.x.shares)),
        ("max (reduction over N)", "per reduction", lambda v: v.x.max()),
        ("shuffle (one column)", "oblivious permutation", lambda v: shuffle(v.x.ctx, [v.x.shares])),
        ("divide by a secret", "x/y", lambda v: v.x / v.y),
        ("reciprocal", "1/y", lambda v: v.y.reciprocal()),
        ("sqrt", "sqrt(x)", lambda v: v.x.sqrt()),
        ("rsqrt", "1/sqrt(x)", lambda v: v.x.rsqrt()),
        ("exp", "e^x, abs(x) <= 20", lambda v: v.small.exp()),
        ("log", "log(x)", lambda v: v.x.log()),
        ("sigmoid", "1/(1+e^-x), abs(x) <= 20", lambda v: v.small.sigmoid()),
    ]


def measure(ring: int) -> dict[str, object]:
    """{row name: (rounds, [bytes per element of party 0, 1, 2]) or 'refused (RangeError)'}."""
    results: dict[str, object] = {}
    for name, _what, op in _ops():

        def job(ctx, op=op):
            xs = torch.linspace(-100, 100, N, dtype=torch.float64)
            ys = torch.linspace(50, -50, N, dtype=torch.float64)
            v = SimpleNamespace()
            v.x = share(ctx, xs if ctx.rank == 0 else None, owner=0, bound=1e3)
            if op is None:
                return ctx.comm_stats()
            v.y = share(ctx, ys if ctx.rank == 1 else None, owner=1, bound=1e3)
            v.xi = share(ctx, xs.round() if ctx.rank == 0 else None, owner=0, bound=1e3, frac_bits=0)
            v.yi = share(ctx, ys.round() if ctx.rank == 1 else None, owner=1, bound=1e3, frac_bits=0)
            v.bit = v.xi < v.yi
            v.small = share(ctx, xs / 10 if ctx.rank == 0 else None, owner=0, bound=20)
            ctx.reset_comm_stats()
            op(v)
            return ctx.comm_stats()

        try:
            stats = simulate(job, ring=ring)
        except RangeError:
            results[name] = "refused (RangeError)"
            continue
        per = 1 if ("reduction" in name or "dot" in name) else N
        rounds = max(s["rounds"] for s in stats)
        results[name] = (rounds, [s["bytes_sent"] / per for s in stats])
    return results


GROUP_ROWS = 1000  # rows per bank of the group-by runs (three banks, the compute parties)


def measure_grouping() -> dict[str, tuple[int, list[float]]]:
    """{row name: (rounds, [bytes per row of party 0, 1, 2])} of the ``smpc.grouping``
    primitives after their sort (which varies with the secret order), from real runs of
    three banks with ``GROUP_ROWS`` rows each; rounds counted stage by stage as the most any
    party takes part in."""
    import numpy as np

    from smpc.grouping import distinct_in_window, distinct_threshold, window_counts
    from smpc.join import hash_ids

    def keys(values):
        return hash_ids([str(v) for v in values])

    def distinct(min_banks):
        def job(ctx):
            rows = np.arange(GROUP_ROWS)  # the costs after the sort do not depend on the values
            return distinct_threshold(ctx, [0, 1, 2], keys((rows * 7 + ctx.rank) % 50),
                                      keys([f"{ctx.rank}-{i}" for i in range(GROUP_ROWS)]),
                                      (rows * 3 + ctx.rank) % 2, min_members=2, min_banks=min_banks, cap=5)
        return job, 3 * GROUP_ROWS

    def window(job_min):
        def job(ctx):
            rows = np.arange(GROUP_ROWS)
            return window_counts(ctx, [0, 1, 2], keys((rows * 7 + ctx.rank) % 50), (rows * 13 + ctx.rank) % 365,
                                 requester=0, window_days=3, cap=5, min_count=job_min)
        return job, 4 * GROUP_ROWS  # the requester's rows count twice (window start and end)

    def in_window(per_group, min_banks=1, local=False):
        def job(ctx):
            rows = np.arange(GROUP_ROWS)
            # members_at_one_bank: every bank's member keys its own (the caller's promise)
            members = keys([f"{ctx.rank}-{v}" for v in (rows * 5) % 40] if local else (rows * 5) % 40)
            return distinct_in_window(ctx, [0, 1, 2], keys((rows * 7 + ctx.rank) % 50), members,
                                      (rows * 13 + ctx.rank) % 365, (rows * 3 + ctx.rank) % 2, window_days=3,
                                      min_members=2, cap=5, per_group=per_group, min_banks=min_banks,
                                      members_at_one_bank=local)
        return job, 3 * GROUP_ROWS  # bytes per input row (each is 2 to 4 rows of the second sort)

    runs = {
        "group-by distinct threshold": distinct(1),
        "group-by distinct threshold, min_banks > 1": distinct(2),
        "window counts, capped": window(None),
        "window counts, threshold": window(2),
        "distinct in window, per row": in_window(False),
        "distinct in window, per group": in_window(True),
        "distinct in window, per group, members at one bank": in_window(True, local=True),
        "distinct in window, per row, min_banks > 1": in_window(False, 2),
        "distinct in window, per group, min_banks > 1": in_window(True, 2),
    }
    out = {}
    for name, (job, rows) in runs.items():
        stages = [r.stages for r in simulate(job, ring=64)]
        after = [{k: v for k, v in s.items() if k not in ("share", "sort")} for s in stages]
        rounds = sum(max(a.get(k, (0, 0))[0] for a in after) for k in after[0])
        out[name] = (rounds, [sum(v[1] for v in a.values()) / rows for a in after])
    return out


def render() -> str:
    names = [(n, w) for n, w, _ in _ops()]
    tables = {bits: measure(bits) for bits in (64, 128)}
    lines = [
        "# Protocol costs",
        "",
        "Generated by `make costs` (`python -m smpc.costs`) from real in-process runs of "
        f"N = {N} elements; a test fails when this file is stale.",
        "Bytes are payload bytes sent per element (per whole reduction for dot and max) by "
        "parties 0 / 1 / 2; rounds are the communication rounds of the slowest party.",
        "Fixed-point rows use the ring's default fractional bits (ring64: 16, ring128: 20) and "
        "inputs declared with bound 1e3 (20 for exp and sigmoid); ring64 refuses fixed-point "
        "products whose truncation could fail with probability above 2^-40 per element. Costs "
        "that depend on the bounds differ elsewhere: division of inputs at ring128's default "
        "bound 2^40 makes one final product fewer (1128 / 1240 / 1288 bytes), and ring64 "
        "truncates fixed-point values only up to 2^23 / 2^16 = 128, so its truncate row is "
        "refused here while the benchmarks truncate values up to 100.",
        "A reveal to compute parties sends the fewest low bytes of each share that the public "
        "bound at the secret's fractional bits allows plus one spare byte, which lets every "
        "recipient refuse a value beyond its bound instead of opening it wrapped, else the "
        "whole ring element (`fixedpoint.open_width`, `fixedpoint.check_open`).",
        "A noisy reveal (`smpc.dp`, docs/dp.md) is one more round than a reveal: parties 1 and 2 "
        "each share one discrete Laplace draw per element (one ring element each, to one "
        "party), then the sum opens with the bound widened by the draws' public bound (70 "
        "scales each).",
        "The oblivious sort is not listed: its quicksort opens comparison outcomes of shuffled "
        "distinct keys, so its rounds and bytes vary with the random order (168 rounds and "
        "~435 bytes per row measured for 1e5 one-word keys; see smpc/protocols/sort.py).",
        "",
        "| protocol | measures | ring64 rounds | ring64 bytes p0 / p1 / p2 "
        "| ring128 rounds | ring128 bytes p0 / p1 / p2 |",
        "|---|---|---|---|---|---|",
    ]

    def cell(v):
        if isinstance(v, str):
            return v, "—"
        rounds, per_party = v
        return str(rounds), " / ".join(f"{b:g}" for b in per_party)

    for name, what in names:
        r64, b64 = cell(tables[64][name])
        r128, b128 = cell(tables[128][name])
        lines.append(f"| {name} | {what} | {r64} | {b64} | {r128} | {b128} |")
    lines += [
        "",
        "## Group-by primitives after their sort",
        "",
        f"`smpc.grouping` at three banks of {GROUP_ROWS} rows (ring64), from the sorted rows to the "
        "results opened to their banks: the adjacent equalities, injections, segmented scans, sign "
        "tests, products and the way back. Before this come 2 rounds of input (3 words per row for "
        "`distinct_threshold`, 2 per sorted row for `window_counts`) and the two-word sort, whose "
        "rounds and bytes vary with the secret order (~192 rounds and ~870 bytes per row at 1e5 rows, "
        "see smpc/protocols/sort.py). Bytes are per sorted row (a window query is two rows); rounds are summed "
        "stage by stage as the most any party takes part in (`grouping.cost_after_sort`, "
        "`grouping.window_cost_after_sort`). `distinct_in_window` sorts twice (its n input rows by "
        "(group, member) pair, then by (group, time) a start and an end event per input row, plus a query "
        "per row in row mode: 3 n rows per row, 2 n per group, n more with min_banks > 1): its rows leave "
        "out both sorts and 2 rounds of input (4 words and 1 value per row; 5 and 3 with min_banks > 1), "
        "and count bytes per input row "
        "(`grouping.window_distinct_cost_after_sorts`). With `members_at_one_bank` (every member's rows "
        "at one bank, as `mule_fan_in` keys them) each bank cuts its members' intervals itself: no "
        "sort 1 and no comparison and AND after it, 3 words and 1 value per row to share.",
        "",
        "| primitive | rounds | bytes per row p0 / p1 / p2 |",
        "|---|---|---|",
    ]
    for name, (rounds, per_party) in measure_grouping().items():
        lines.append(f"| {name} | {rounds} | {' / '.join(f'{b:.6g}' for b in per_party)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if argv and argv[0] == "--write":
        with open(argv[1], "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
