"""The fixed workload of issue 5: data, the ops for each system, and their float64 references.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

BOUND_XY = 1000.0
BOUND_MAT = 10.0
BALANCE_MAX = 1_000_000
THRESHOLD = 2_000_000
DIV_MAX_N = 100_000


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


def ops_for(n: int) -> dict[str, Op]:
    """Every op at input size ``n`` (division capped at 1e5, matmuls at their fixed sizes)."""
    nd = min(n, DIV_MAX_N)
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
    }


OP_ORDER = ["share", "mul", "lt", "sum", "div", "matmul256", "matmul1000", "lending"]


def owned_inputs(op: Op, seed: int, rank: int) -> dict[str, np.ndarray]:
    """The inputs party ``rank`` owns for ``op`` (it generates only these)."""
    return {name: array(seed, name, op.size) for name, owner in op.inputs if owner == rank}


def reference(op: Op, seed: int) -> np.ndarray | None:
    """The float64 result the op should reveal."""
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


# ----- smpc ------------------------------------------------------------------------------
class Unavailable(Exception):
    """The op is not implemented by this version of the system (reported, not faked)."""


def smpc_setup(ctx, op: Op, mine: dict[str, np.ndarray]):
    """Share the inputs (untimed), except for ops whose sharing is what is measured."""
    import torch

    if op.key in ("share", "lending"):
        return {"mine": {k: torch.from_numpy(v) for k, v in mine.items()}}
    shared = {}
    for (name, owner), bound in zip(op.inputs, op.smpc_bounds, strict=True):
        value = torch.from_numpy(mine[name]) if name in mine else None
        shared[name] = ctx.share(value, owner=owner, bound=bound, frac_bits=op.smpc_frac)
    if op.key == "div":
        from smpc.secret import SecretTensor

        x, y = shared["x"], shared["y_pos"]
        probe = SecretTensor.__truediv__(x[:1], y[:1])
        if probe is NotImplemented:
            raise Unavailable("SecretTensor / SecretTensor is not implemented in this smpc version")
    return shared


def smpc_run(ctx, op: Op, state):
    """The timed part; returns the revealed float64 tensor (or None)."""
    if op.key == "share":
        mine = state["mine"]
        for (name, owner), bound in zip(op.inputs, op.smpc_bounds, strict=True):
            ctx.share(mine.get(name), owner=owner, bound=bound, frac_bits=op.smpc_frac)
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
        banks = [ctx.share(mine.get(name), owner=owner, bound=bound, frac_bits=0)
                 for (name, owner), bound in zip(op.inputs, op.smpc_bounds, strict=True)]
        total = banks[0] + banks[1] + banks[2]
        return (total > THRESHOLD).sum().reveal()
    raise KeyError(op.key)


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
