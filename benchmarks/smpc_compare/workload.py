"""The fixed side-by-side workload: data, the ops for each system, and their float64 references.

Every op is written twice, once per system, doing the same thing on the same seeded data:
each input's owner generates it from ``(seed, name)`` with numpy's PCG64 (benchmark data,
not a party's randomness), so both systems see identical values, and the driver regenerates
everything to compute the float64 reference.

smpc's ring and bounds are chosen per op, as a user would, and stated in ``config``:

- ``x*y``: ring128 fixed point (20 fractional bits), declared |x|, |y| <= 1000. Z_2^64 at 16
  bits has no safe fixed-point product (the README's table), so the product runs on ring128.
- ``x<y``, ``sum``: ring64 fixed point at 16 fractional bits -- CrypTen's own precision --
  declared |x|, |y| <= 1000 (the comparison runs on the low 64 bits either way).
- ``x/y``: ring128 fixed point, |x| <= 1000, 0 < y <= 1000 (N = min(n, 1e5)).
- matmul: ring128 fixed point, entries in [-10, 10], so |A@B| <= 100 * inner size.
- lending: exact integers (``frac_bits=0``) on ring64, balances in [0, 1e6): totals and the
  threshold are whole currency units, so nothing is rounded at all.

CrypTen runs everything at its defaults: int64 ring, 16 fractional bits, values encoded by
truncating ``x * 2^16`` (its encoder), results decoded to float32.

The private-join ops run on smpc only (CrypTen 0.4.1 has no oblivious shuffle or
sort: its columns say "n/a"), and are checked exactly, on integers, not against float64:

- shuffle: N rows of one XOR-shared 64-bit word and two ring64 values, input by party 0
  (``smpc.join.share_rows``, untimed), shuffled by ``smpc.protocols.shuffle.shuffle``
  (timed). The rows are then opened to party 0 (untimed): they must be the input rows as a
  multiset (rows compared whole).
- sort: N rows of a distinct random 64-bit key (XOR-shared, stored in ``tree_order`` so
  that the sort is ascending in the key as an unsigned integer) and one ring64 payload,
  sorted by ``smpc.protocols.sort.sort_rows`` (shuffle + quicksort with opened comparisons,
  what ``smpc.join`` runs; timed); opened afterwards (untimed): they must equal the input
  sorted by key.
- multi_lending: three banks' loan books (customer_id, balance) from
  ``smpc.datasets.synthetic_consortium`` (overlapping customers, seed = the harness's seed),
  about ``lending_rows`` rows each (default min(n, 1e5)), the analysis run end to end on
  the three party processes (id checks and hashing, merging per customer, sharing, the
  private join, totals, thresholds, flags and the flagged count back to every bank; timed),
  checked against ``multi_lending_plain``: the flagged count and every bank's flagged ids.
  The driver generates the books once and hands each bank only its own (a pickle), so a
  party's peak RSS is that of a bank holding its book and running the analysis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BOUND_XY = 1000.0
BOUND_MAT = 10.0
BALANCE_MAX = 1_000_000
THRESHOLD = 2_000_000
DIV_MAX_N = 100_000
LENDING_MAX_ROWS = 100_000  # multi_lending's default rows per bank: min(n, this); --lending-rows overrides
LENDING_THRESHOLD = 500_000.0  # the analysis parameters of benchmarks/test_join_bench.py
LENDING_MIN_LENDERS = 3
SMPC_ONLY = ("shuffle", "sort", "multi_lending")  # CrypTen 0.4.1 has no oblivious shuffle or sort
EXACT_OPS = SMPC_ONLY  # checked exactly on integers (``exact_errors``), not against float64
BANKS = ("bank_a", "bank_b", "bank_c")  # = compare.grpc_parties.NAMES = datasets.bank_names(3)


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, sum(ord(c) * 131**i for i, c in enumerate(name)) % 2**32])


def array(seed: int, name: str, n: int) -> np.ndarray:
    """The seeded input ``name`` of length/size ``n`` (float64)."""
    g = _rng(seed, name)
    if name in ("x", "y"):
        return np.round(g.uniform(-BOUND_XY, BOUND_XY, n), 2)
    if name == "y_pos":
        return np.round(g.uniform(1.0, BOUND_XY, n), 2)
    if name.startswith(("A", "B")):
        m = int(math.isqrt(n))
        return np.round(g.uniform(-BOUND_MAT, BOUND_MAT, (m, m)), 3)
    if name.startswith("balances"):
        return g.integers(0, BALANCE_MAX, n).astype(np.float64)
    raise KeyError(name)


@dataclass(frozen=True)
class Op:
    """One row of the table."""

    key: str
    label: str
    inputs: tuple[tuple[str, int], ...]  # (array name, owner rank)
    size: int  # elements per input array (matmul: m*m)
    smpc_ring: int
    smpc_frac: int | None
    smpc_bounds: tuple[float, ...]
    config: str
    reveals: str = "value"  # "value", "none" (share only) or "count"
    notes: dict = field(default_factory=dict)

    @property
    def elements(self) -> int:
        return self.size

    def to_json(self) -> dict:
        return {"key": self.key, "label": self.label, "elements": self.size, "smpc_config": self.config,
                "inputs": [f"{name} (party {owner})" for name, owner in self.inputs]}


def lending_rows_for(n: int, lending_rows: int | None = None) -> int:
    """multi_lending's rows per bank: ``lending_rows`` if given, else min(n, 1e5)."""
    return int(lending_rows) if lending_rows else min(int(n), LENDING_MAX_ROWS)


def ops_for(n: int, lending_rows: int | None = None) -> dict[str, Op]:
    """Every op at input size ``n`` (division capped at 1e5, matmuls at their fixed sizes,
    multi_lending at ``lending_rows_for(n, lending_rows)`` rows per bank)."""
    nd = min(n, DIV_MAX_N)
    nl = lending_rows_for(n, lending_rows)
    return {
        "share": Op("share", "share x, y", (("x", 0), ("y", 1)), n, 128, 20, (BOUND_XY, BOUND_XY),
                    "ring128, f=20, |x|,|y|<=1e3", reveals="none"),
        "mul": Op("mul", "x*y, reveal", (("x", 0), ("y", 1)), n, 128, 20, (BOUND_XY, BOUND_XY),
                  "ring128, f=20, |x|,|y|<=1e3"),
        "lt": Op("lt", "x<y, reveal", (("x", 0), ("y", 1)), n, 64, 16, (BOUND_XY, BOUND_XY),
                 "ring64, f=16, |x|,|y|<=1e3"),
        "sum": Op("sum", "sum(x), reveal", (("x", 0),), n, 64, 16, (BOUND_XY,), "ring64, f=16, |x|<=1e3"),
        "div": Op("div", "x/y (y>0), reveal", (("x", 0), ("y_pos", 1)), nd, 128, 20, (BOUND_XY, BOUND_XY),
                  "ring128, f=20, |x|<=1e3, 0<y<=1e3"),
        "matmul256": Op("matmul256", "matmul 256x256, reveal", (("A", 0), ("B", 1)), 256 * 256, 128, 20,
                        (BOUND_MAT, BOUND_MAT), "ring128, f=20, |a|,|b|<=10"),
        "matmul1000": Op("matmul1000", "matmul 1000x1000, reveal", (("A", 0), ("B", 1)), 1000 * 1000, 128, 20,
                         (BOUND_MAT, BOUND_MAT), "ring128, f=20, |a|,|b|<=10"),
        "lending": Op("lending", "lending: 3 banks, count(total>thr)",
                      (("balances0", 0), ("balances1", 1), ("balances2", 2)), n, 64, 0,
                      (float(BALANCE_MAX),) * 3, "ring64, integers, balances<1e6", reveals="count"),
        "shuffle": Op("shuffle", "oblivious shuffle of N rows", (("shuffle_rows", 0),), n, 64, 0, (),
                      "1 XOR word + 2 ring64 per row; 3 rounds", reveals="rows"),
        "sort": Op("sort", "oblivious sort of N rows by a 64-bit key", (("sort_rows", 0),), n, 64, 0, (),
                   "distinct XOR-shared key + 1 ring64; shuffle + quicksort", reveals="rows"),
        "multi_lending": Op("multi_lending", f"multi_lending: 3 banks x {nl:,} rows",
                            tuple(zip(BANKS, range(3), strict=True)), nl, 64, 0, (),
                            "join on hashed ids, ring64 exact; end to end", reveals="count"),
    }


OP_ORDER = ["share", "mul", "lt", "sum", "div", "matmul256", "matmul1000", "lending", "shuffle", "sort",
            "multi_lending"]
WIDTHS = {"shuffle_rows": (1, 2), "sort_rows": (1, 1)}  # (XOR words, ring64 values) per row


def int_rows(seed: int, name: str, n: int) -> np.ndarray:
    """The seeded (n, words + values) int64 rows of the shuffle and sort ops: uniformly random
    64-bit words; the sort's keys (column 0) are distinct (redrawn on the rare repeat)."""
    g = _rng(seed, name)
    words, values = WIDTHS[name]
    rows = g.integers(-(2**63), 2**63, size=(n, words + values), dtype=np.int64, endpoint=False)
    if name == "sort_rows":
        while np.unique(rows[:, 0]).size != n:
            rows[:, 0] = g.integers(-(2**63), 2**63, size=n, dtype=np.int64)
    return rows


def lending_file(data_dir: str | Path, seed: int, rows: int, bank: str) -> Path:
    return Path(data_dir) / f"multi_lending-{seed}-{rows}-{bank}.pkl"


def lending_tables(seed: int, rows: int, data_dir: str | Path | None = None) -> dict:
    """The three banks' books (customer_id, balance), as ``benchmarks/test_join_bench.py``
    generates them; with ``data_dir``, also written there, one pickle per bank."""
    from smpc import datasets

    tables = datasets.synthetic_consortium(3, rows, seed=seed, balance_threshold=LENDING_THRESHOLD,
                                           min_lenders=LENDING_MIN_LENDERS)
    tables = {bank: t[["customer_id", "balance"]] for bank, t in tables.items()}
    if data_dir is not None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        for bank, t in tables.items():
            t.to_pickle(lending_file(data_dir, seed, rows, bank))
    return tables


def lending_params() -> dict:
    return {"id": "customer_id", "balance": "balance", "balance_threshold": LENDING_THRESHOLD,
            "min_lenders": LENDING_MIN_LENDERS}


def owned_inputs(op: Op, seed: int, rank: int, data_dir: str | None = None) -> dict:
    """The inputs party ``rank`` owns for ``op`` (it generates, or for multi_lending loads,
    only these)."""
    if op.key == "multi_lending":
        import pandas as pd

        return {name: pd.read_pickle(lending_file(data_dir, seed, op.size, name))
                for name, owner in op.inputs if owner == rank}
    if op.key in ("shuffle", "sort"):
        return {name: int_rows(seed, name, op.size) for name, owner in op.inputs if owner == rank}
    return {name: array(seed, name, op.size) for name, owner in op.inputs if owner == rank}


def reference(op: Op, seed: int, data_dir: str | Path | None = None):
    """The float64 result the op should reveal (the exact ops: int64 rows, or the plaintext
    twin's dict for multi_lending, whose books are written to ``data_dir`` here)."""
    if op.key == "shuffle":
        return int_rows(seed, "shuffle_rows", op.size)
    if op.key == "sort":
        rows = int_rows(seed, "sort_rows", op.size)
        return rows[np.argsort(rows[:, 0].view(np.uint64), kind="stable")]
    if op.key == "multi_lending":
        from smpc.analyses.fraud import multi_lending_plain

        tables = lending_tables(seed, op.size, data_dir)
        plain = multi_lending_plain(tables, **lending_params())
        plain["rows_per_bank"] = [len(t) for t in tables.values()]
        return plain
    a = {name: array(seed, name, op.size) for name, _ in op.inputs}
    if op.key == "share":
        return None
    if op.key == "mul":
        return a["x"] * a["y"]
    if op.key == "lt":
        return (a["x"] < a["y"]).astype(np.float64)
    if op.key == "sum":
        return np.array([math.fsum(a["x"])])
    if op.key == "div":
        return a["x"] / a["y_pos"]
    if op.key.startswith("matmul"):
        return a["A"] @ a["B"]
    if op.key == "lending":
        total = a["balances0"] + a["balances1"] + a["balances2"]
        return np.array([float(np.count_nonzero(total > THRESHOLD))])
    raise KeyError(op.key)


def errors(got: np.ndarray | None, ref: np.ndarray | None) -> dict:
    """max abs error; max relative error over |ref| >= 1 (absolute error covers the rest);
    and how many elements are off by 0.5 or more (wrong comparison bits, wrong counts)."""
    if got is None or ref is None:
        return {}
    got = np.asarray(got, dtype=np.float64).reshape(ref.shape)
    diff = np.abs(got - ref)
    big = np.abs(ref) >= 1
    return {
        "max_abs_err": float(diff.max()) if diff.size else 0.0,
        "max_rel_err": float((diff[big] / np.abs(ref[big])).max()) if big.any() else 0.0,
        "wrong": int(np.count_nonzero(diff >= 0.5)),
        "elements": int(ref.size),
        "finite": bool(np.isfinite(got).all()),
    }


def _rows_sorted(rows: np.ndarray) -> np.ndarray:
    return rows[np.lexsort(rows.T[::-1])]


def exact_errors(op: Op, results: list, ref) -> dict:
    """The exact check of the shuffle, sort and multi_lending ops, from every party's
    ``smpc_collect`` payload (``None`` where a party returns nothing). ``max_abs_err`` and
    ``wrong`` are 0 when the result is exact; otherwise: shuffle/sort, the number of rows
    that differ (shuffle: after sorting both row sets); multi_lending, |flagged count -
    plaintext| and that plus the flagged ids that differ over all banks."""
    if op.key in ("shuffle", "sort"):
        got = np.asarray(results[0]["value"], dtype=np.int64)
        out = {"elements": int(ref.shape[0]), "finite": True, "max_rel_err": 0.0}
        if got.shape != ref.shape:
            out.update(max_abs_err=float(ref.shape[0]), wrong=int(ref.shape[0]))
            return out
        if op.key == "shuffle":
            bad = int(np.count_nonzero((_rows_sorted(got) != _rows_sorted(ref)).any(axis=1)))
            out["unmoved_rows"] = int(np.count_nonzero((got == ref).all(axis=1)))  # ~1 for a random permutation
        else:
            bad = int(np.count_nonzero((got != ref).any(axis=1)))
        out.update(max_abs_err=float(bad), wrong=bad)
        return out
    if op.key == "multi_lending":
        from smpc.analyses.fraud import merge_bank_results

        mine = [r["value"] if r else None for r in results]
        merged = merge_bank_results(mine) or {"flagged_count": None, "by_bank": {}}
        counts = {r["flagged_count"] for r in mine if r is not None}
        count = merged["flagged_count"]
        diff = abs(count - ref["flagged_count"]) if count is not None else ref["flagged_count"]
        if len(counts) > 1:  # the banks disagree: count the worst
            diff = max(abs(c - ref["flagged_count"]) for c in counts)
        ids_off = 0
        for bank, want in ref["by_bank"].items():
            have = set(merged["by_bank"].get(bank, {}).get("flagged_ids", []))
            ids_off += len(have.symmetric_difference(want["flagged_ids"]))
        return {"max_abs_err": float(diff), "max_rel_err": 0.0, "wrong": int(diff + ids_off),
                "elements": int(sum(ref["rows_per_bank"])), "finite": True,
                "flagged_count": count, "reference_flagged_count": ref["flagged_count"], "flagged_ids_off": ids_off}
    raise KeyError(op.key)


# ----- smpc ------------------------------------------------------------------------------
class Unavailable(Exception):
    """The op is not implemented by this version of the system (reported, not faked)."""


def smpc_setup(ctx, op: Op, mine: dict[str, np.ndarray]):
    """Share the inputs (untimed), except for ops whose sharing is what is measured."""
    import torch

    from smpc.secret import share

    if op.key in ("share", "lending"):
        return {"mine": {k: torch.from_numpy(v) for k, v in mine.items()}}
    if op.key == "multi_lending":
        return {"table": next(iter(mine.values()), None)}
    if op.key in ("shuffle", "sort"):
        return {"rows": _share_rows(ctx, op, mine)}
    shared = {}
    for (name, owner), bound in zip(op.inputs, op.smpc_bounds, strict=True):
        value = torch.from_numpy(mine[name]) if name in mine else None
        shared[name] = share(ctx, value, owner=owner, bound=bound, frac_bits=op.smpc_frac)
    if op.key == "div":
        from smpc.secret import SecretTensor

        x, y = shared["x"], shared["y_pos"]
        probe = SecretTensor.__truediv__(x[:1], y[:1])
        if probe is NotImplemented:
            raise Unavailable("SecretTensor / SecretTensor is not implemented in this smpc version")
    return shared


def smpc_run(ctx, op: Op, state):
    """The timed part; returns the revealed float64 tensor (or None)."""
    from smpc.secret import share

    if op.key == "share":
        mine = state["mine"]
        for (name, owner), bound in zip(op.inputs, op.smpc_bounds, strict=True):
            share(ctx, mine.get(name), owner=owner, bound=bound, frac_bits=op.smpc_frac)
        return None
    if op.key == "mul":
        return (state["x"] * state["y"]).reveal()
    if op.key == "lt":
        return (state["x"] < state["y"]).reveal()
    if op.key == "sum":
        return state["x"].sum().reveal()
    if op.key == "div":
        return (state["x"] / state["y_pos"]).reveal()
    if op.key.startswith("matmul"):
        return (state["A"] @ state["B"]).reveal()
    if op.key == "lending":
        mine = state["mine"]
        banks = [share(ctx, mine.get(name), owner=owner, bound=bound, frac_bits=0)
                 for (name, owner), bound in zip(op.inputs, op.smpc_bounds, strict=True)]
        total = banks[0] + banks[1] + banks[2]
        return (total > THRESHOLD).sum().reveal()
    if op.key == "shuffle":
        from smpc.protocols.shuffle import shuffle

        out, _ = shuffle(ctx, list(state["rows"]))
        return out
    if op.key == "sort":
        from smpc.protocols.sort import sort_rows

        keys, values = state["rows"]
        ordered = sort_rows(ctx, keys, [values])
        return [ordered.keys, *ordered.items]
    if op.key == "multi_lending":
        from smpc.analyses.fraud import multi_lending

        return multi_lending(ctx, state["table"], [0, 1, 2], **lending_params())
    raise KeyError(op.key)


def _share_rows(ctx, op: Op, mine: dict[str, np.ndarray]):
    """Party 0's int64 rows as (XOR words, ring64 values) shares, by the join's input step
    (``smpc.join.share_rows``). The sort's key word is stored in ``tree_order``, so that the
    sort is ascending in the key as an unsigned integer."""
    import torch

    from smpc.join import share_rows
    from smpc.protocols.sort import tree_order

    (name, owner), = op.inputs
    words, values = WIDTHS[name]
    w = v = None
    if ctx.rank == owner:
        rows = mine[name]
        w, v = rows[:, :words].copy(), rows[:, words:].copy()
        if op.key == "sort":
            w[:, 0] = tree_order(torch.from_numpy(w[:, 0].copy())).numpy()
    keys, vals, _ = share_rows(ctx, [owner], w, v, words, values)
    return keys, vals


def smpc_collect(ctx, op: Op, out):
    """After the timed part of the exact ops (every party calls it, untimed, after the
    communication counters are read): shuffle and sort open their rows to party 0, which
    returns {"value": (n, words + values) int64}; multi_lending returns every bank's own
    result dict."""
    import torch

    if op.key == "multi_lending":
        return None if out is None else {"value": out}
    keys, vals = out
    rank = ctx.rank
    # party j holds (s_j, s_{j+1}); party 2 sends s_2 to party 0
    payload = torch.cat([keys.first, vals.first], dim=1).contiguous()
    got = ctx.exchange("bench-open", sends={0: payload} if rank == 2 else {}, recv_from=[2] if rank == 0 else [])
    if rank != 0:
        return None
    third = got[2].reshape(payload.shape)
    nw = keys.first.shape[1]
    words = keys.first ^ keys.second ^ third[:, :nw]
    values = vals.first + vals.second + third[:, nw:]  # int64 wraps: Z_2^64
    if op.key == "sort":
        from smpc.protocols.sort import tree_order

        words[:, 0] = tree_order(words[:, 0].contiguous())  # an involution: back to the key
    return {"value": torch.cat([words, values], dim=1).numpy().copy()}


# ----- CrypTen ---------------------------------------------------------------------------
def _template(op: Op, name: str):
    import torch

    if name in ("A", "B"):
        m = int(math.isqrt(op.size))
        return torch.zeros(m, m, dtype=torch.float64)
    return torch.zeros(op.size, dtype=torch.float64)


def crypten_share(crypten, op: Op, mine: dict[str, np.ndarray]) -> dict:
    import torch

    out = {}
    for name, owner in op.inputs:
        value = torch.from_numpy(mine[name]) if name in mine else _template(op, name)
        out[name] = crypten.cryptensor(value, src=owner)
    return out


def crypten_setup(crypten, op: Op, mine: dict[str, np.ndarray]):
    """Share the inputs (untimed), except for ops whose sharing is what is measured."""
    if op.key in SMPC_ONLY:  # the driver does not even ask (the column says n/a)
        raise Unavailable(f"CrypTen 0.4.1 has no oblivious shuffle or sort ({op.key})")
    if op.key in ("share", "lending"):
        return {"mine": mine}
    return crypten_share(crypten, op, mine)


def crypten_run(crypten, op: Op, state):
    """The timed part: returns (the revealed encoded int64 tensor, its encoder) or None.
    Decoding happens in ``crypten_decode`` inside the timed region too."""
    if op.key == "share":
        crypten_share(crypten, op, state["mine"])
        return None
    if op.key == "mul":
        z = state["x"] * state["y"]
    elif op.key == "lt":
        z = state["x"] < state["y"]
    elif op.key == "sum":
        z = state["x"].sum()
    elif op.key == "div":
        z = state["x"] / state["y_pos"]
    elif op.key.startswith("matmul"):
        z = state["A"].matmul(state["B"])
    elif op.key == "lending":
        banks = crypten_share(crypten, op, state["mine"])
        total = banks["balances0"] + banks["balances1"] + banks["balances2"]
        z = (total > THRESHOLD).sum()
    else:
        raise KeyError(op.key)
    tensor = z._tensor
    raw = tensor.reveal()
    return raw, tensor.encoder, tensor.encoder.decode(raw)  # decode = get_plain_text's last step
