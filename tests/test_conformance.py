"""SPU-style conformance suite: the same arithmetic over ring64 / ring128 and over 3 compute
parties with 0 and 2 extra input parties (ranks 3 and 4 own the operands when present),
asserting results against float64 / integer references within the documented error AND the
exact bytes and rounds every party spends. Where the bounds rules refuse an operation the
refusal (RangeError) is asserted instead: a result is never accepted unchecked.

Documented errors used here (smpc.fixedpoint, smpc.protocols.arithmetic):
- encoding rounds to nearest: |decode(encode(x)) - x| <= 2^-(f+1) per input;
- probabilistic truncation: floor or floor + 1 of the exact value, i.e. < 1 ulp = 2^-f;
- a public non-integer constant c is encoded finely enough that its rounding contributes at
  most max(1 ulp, 1e-9 of the result's bound), or the multiplication is refused.
Results are checked against float64 arithmetic on the *encoded* inputs (tight: only
truncation / constant rounding remain) and against the raw inputs (adding the input
encoding errors propagated through the operation).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import smpc
from smpc.errors import RangeError
from smpc.fixedpoint import DEFAULTS

# ----- settings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    name: str
    frac_bits: int
    bound: float


MODES = {
    64: [Mode("fx16", 16, 1e3), Mode("fx6", 6, 4.0), Mode("int", 0, 1e6)],
    128: [Mode("fx20", 20, 1e3), Mode("fx20big", 20, 1e9), Mode("int", 0, 1e9)],
}


@dataclass(frozen=True)
class Config:
    ring: int
    input_parties: int
    mode: Mode

    @property
    def world(self) -> int:
        return 3 + self.input_parties

    @property
    def eb(self) -> int:
        return self.ring // 8

    @property
    def owners(self) -> tuple[int, int]:
        """Owners of the two operands: input parties 3 and 4 when present, else 1 and 2."""
        return (3, 4) if self.input_parties else (1, 2)

    @property
    def f(self) -> int:
        return self.mode.frac_bits

    @property
    def ctx_f(self) -> int:
        return DEFAULTS[self.ring].frac_bits

    @property
    def id(self) -> str:
        return f"ring{self.ring}-in{self.input_parties}-{self.mode.name}"


CONFIGS = [Config(r, p, m) for r in (64, 128) for p in (0, 2) for m in MODES[r]]

# the rules, restated: a value of magnitude b at f bits fits when b 2^f < 2^(k-1); a product
# that is truncated must also stay below 2^(k-1-40)


def fits(cfg: Config, bound: float, f: int) -> bool:
    return bound * 2.0**f < 2.0 ** (cfg.ring - 1)


def product_allowed(cfg: Config, bound: float) -> bool:
    raw = 2 * cfg.f
    return fits(cfg, bound, raw) and (cfg.f == 0 or bound * 2.0**raw < 2.0 ** (cfg.ring - 41))


# multiplication by a public non-integer (x * 0.3, mean): refused where the ring leaves the
# constant too few bits: ring64 at 16 bits (even one bit of c overflows the truncation range)
# and ring64 integers (c would keep 2-3 bits: x * 0.3 would be x * 0.25)
PUBLIC_FLOAT_REFUSED = {(64, "fx16"), (64, "int")}

# ----- data ---------------------------------------------------------------------------------
ROWS, COLS, OUT = 6, 5, 3


def make_inputs(cfg: Config, seed: int):
    """x, y (ROWS x COLS) and w (COLS x OUT) in [-B, B], with the bound, zero, the smallest
    negative value and other edges in the first row."""
    gen = np.random.default_rng(seed)
    b, f = cfg.mode.bound, cfg.f
    if f == 0:
        lim = int(b)
        x = gen.integers(-lim, lim + 1, (ROWS, COLS)).astype(np.float64)
        y = gen.integers(-lim, lim + 1, (ROWS, COLS)).astype(np.float64)
        w = gen.integers(-lim, lim + 1, (COLS, OUT)).astype(np.float64)
        x[0] = [b, -b, 0, -1, 1]
        y[0] = [-b, b, -1, 0, b]
    else:
        x = gen.uniform(-b, b, (ROWS, COLS))
        y = gen.uniform(-b, b, (ROWS, COLS))
        w = gen.uniform(-b, b, (COLS, OUT))
        tiny = 2.0**-f
        x[0] = [b, -b, 0.0, -tiny, -0.5 * tiny]
        y[0] = [-b, b, -tiny, 0.0, -b + tiny]
        w[0, 0] = -b
    return torch.tensor(x), torch.tensor(y), torch.tensor(w)


def encoded(cfg: Config, v: torch.Tensor) -> torch.Tensor:
    return torch.round(v * 2.0**cfg.f) / 2.0**cfg.f


# ----- operations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    name: str
    compute: object  # (xs, ys, ws) secrets -> SecretTensor
    reference: object  # (x, y, w) float64 -> float64
    propagated: object  # (cfg, x, y, w, e) -> elementwise bound of the input-encoding error
    comm: str  # "none" or "reshare": one ring element per output element per compute party
    truncates: bool = False  # 1 ulp of truncation error (fixed-point modes)
    refused: object = staticmethod(lambda cfg: False)
    public_float: bool = False  # error from a public constant's rounding (see module docstring)


def _abs(t):
    return t.abs()


C_VEC = torch.tensor([2.5, -0.375, 0.0, 1.0, -7.25])
C_INT = torch.tensor([3.0, -2.0, 0.0, 1.0, -7.0])

OPS = [
    Op("add", lambda xs, ys, ws: xs + ys, lambda x, y, w: x + y, lambda c, x, y, w, e: 2 * e, "none"),
    Op("sub", lambda xs, ys, ws: xs - ys, lambda x, y, w: x - y, lambda c, x, y, w, e: 2 * e, "none"),
    Op("neg", lambda xs, ys, ws: -xs, lambda x, y, w: -x, lambda c, x, y, w, e: e, "none"),
    Op("add_public_vector", lambda xs, ys, ws: xs + C_VEC, lambda x, y, w: x + C_VEC,
       lambda c, x, y, w, e: e, "none"),
    Op("rsub_public_scalar", lambda xs, ys, ws: 3 - xs, lambda x, y, w: 3 - x, lambda c, x, y, w, e: e, "none"),
    Op("mul_public_int", lambda xs, ys, ws: (xs * 3) + (ys * C_INT), lambda x, y, w: 3 * x + y * C_INT,
       lambda c, x, y, w, e: 3 * e + C_INT.abs() * e, "none"),
    Op("mul_public_float", lambda xs, ys, ws: xs * 0.3, lambda x, y, w: x * 0.3, lambda c, x, y, w, e: 0.3 * e,
       "reshare", truncates=True, public_float=True,
       refused=lambda cfg: (cfg.ring, cfg.mode.name) in PUBLIC_FLOAT_REFUSED),
    Op("div_public", lambda xs, ys, ws: xs / 7.0, lambda x, y, w: x / 7.0, lambda c, x, y, w, e: e / 7.0,
       "reshare", truncates=True, public_float=True,
       refused=lambda cfg: (cfg.ring, cfg.mode.name) in PUBLIC_FLOAT_REFUSED),
    Op("mul", lambda xs, ys, ws: xs * ys, lambda x, y, w: x * y,
       lambda c, x, y, w, e: (x.abs() + y.abs()) * e + e * e, "reshare", truncates=True,
       refused=lambda cfg: not product_allowed(cfg, cfg.mode.bound**2)),
    Op("square", lambda xs, ys, ws: xs * xs, lambda x, y, w: x * x, lambda c, x, y, w, e: 2 * x.abs() * e + e * e,
       "reshare", truncates=True, refused=lambda cfg: not product_allowed(cfg, cfg.mode.bound**2)),
    Op("dot", lambda xs, ys, ws: xs.dot(ys), lambda x, y, w: (x * y).sum(-1),
       lambda c, x, y, w, e: ((x.abs() + y.abs()) * e + e * e).sum(-1), "reshare", truncates=True,
       refused=lambda cfg: not product_allowed(cfg, COLS * cfg.mode.bound**2)),
    Op("matmul", lambda xs, ys, ws: xs @ ws, lambda x, y, w: x @ w,
       lambda c, x, y, w, e: x.abs() @ (0 * w + e) + (0 * x + e) @ w.abs() + COLS * e * e, "reshare",
       truncates=True, refused=lambda cfg: not product_allowed(cfg, COLS * cfg.mode.bound**2)),
    Op("sum_all", lambda xs, ys, ws: xs.sum(), lambda x, y, w: x.sum(), lambda c, x, y, w, e: x.numel() * e, "none"),
    Op("sum_dim0", lambda xs, ys, ws: xs.sum(0), lambda x, y, w: x.sum(0), lambda c, x, y, w, e: ROWS * e, "none"),
    Op("sum_dim1_keepdim", lambda xs, ys, ws: xs.sum(1, keepdim=True), lambda x, y, w: x.sum(1, keepdim=True),
       lambda c, x, y, w, e: COLS * e, "none"),
    Op("mean_all", lambda xs, ys, ws: xs.mean(), lambda x, y, w: x.mean(), lambda c, x, y, w, e: e, "reshare",
       truncates=True, public_float=True, refused=lambda cfg: (cfg.ring, cfg.mode.name) in PUBLIC_FLOAT_REFUSED),
    Op("mean_dim0", lambda xs, ys, ws: xs.mean(0), lambda x, y, w: x.mean(0), lambda c, x, y, w, e: e, "reshare",
       truncates=True, public_float=True, refused=lambda cfg: (cfg.ring, cfg.mode.name) in PUBLIC_FLOAT_REFUSED),
    Op("reshape_transpose", lambda xs, ys, ws: xs.reshape(3, 10).T, lambda x, y, w: x.reshape(3, 10).T,
       lambda c, x, y, w, e: e, "none"),
    Op("index", lambda xs, ys, ws: smpc.cat([xs[1:4, ::2].flatten(), xs[torch.tensor([5, 0, 2])][:, -1], xs[2]]),
       lambda x, y, w: torch.cat([x[1:4, ::2].flatten(), x[torch.tensor([5, 0, 2])][:, -1], x[2]]),
       lambda c, x, y, w, e: e, "none"),
    Op("cat_stack", lambda xs, ys, ws: smpc.stack([smpc.cat([xs, ys], dim=1), smpc.cat([ys, -xs], dim=1)], dim=0),
       lambda x, y, w: torch.stack([torch.cat([x, y], dim=1), torch.cat([y, -x], dim=1)], dim=0),
       lambda c, x, y, w, e: e, "none"),
]


def _job(op: Op, cfg: Config):
    owner_x, owner_y = cfg.owners

    def job(ctx, x=None, y=None, w=None):
        b, f = cfg.mode.bound, cfg.f
        xs = smpc.share(ctx, x if ctx.rank == owner_x else None, owner=owner_x, bound=b, frac_bits=f, name="x")
        ys = smpc.share(ctx, y if ctx.rank == owner_y else None, owner=owner_y, bound=b, frac_bits=f, name="y")
        ws = smpc.share(ctx, w if ctx.rank == owner_x else None, owner=owner_x, bound=b, frac_bits=f, name="w")
        ctx.reset_comm_stats()
        out = op.compute(xs, ys, ws)
        stats = ctx.comm_stats()
        return stats, out.reveal(), out.frac_bits

    return job


def _expected_traffic(cfg: Config, op: Op, out_numel: int) -> dict:
    """rank -> {peer: bytes}: the exact traffic of the operation."""
    traffic = {r: {} for r in range(cfg.world)}
    if op.comm == "reshare":
        n = out_numel * cfg.eb
        if op.truncates and cfg.f or op.public_float:  # fused multiply-truncate / truncation
            traffic.update({0: {2: n}, 1: {2: n}, 2: {1: n}})
        else:  # plain resharing: party i sends to party i-1
            traffic.update({0: {2: n}, 1: {0: n}, 2: {1: n}})
    return traffic


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.id)
@pytest.mark.parametrize("op", OPS, ids=lambda o: o.name)
def test_operation(op: Op, cfg: Config):
    x, y, w = make_inputs(cfg, seed=zlib.crc32(f"{op.name}/{cfg.id}".encode()))
    owner_x, owner_y = cfg.owners
    inputs = {owner_x: {"x": x, "w": w}, owner_y: {"y": y}}
    if op.refused(cfg):
        with pytest.raises(RangeError):
            smpc.simulate(_job(op, cfg), ring=cfg.ring, input_parties=cfg.input_parties, inputs=inputs, timeout=120)
        return
    results = smpc.simulate(_job(op, cfg), ring=cfg.ring, input_parties=cfg.input_parties, inputs=inputs, timeout=120)

    # every rank (input parties included) receives the same value
    values = [r[1] for r in results]
    for v in values[1:]:
        assert torch.equal(v, values[0])
    got = values[0]
    f_out = results[0][2]
    assert all(r[2] == f_out for r in results)

    xe, ye, we = encoded(cfg, x), encoded(cfg, y), encoded(cfg, w)
    want_encoded = op.reference(xe, ye, we)
    want_raw = op.reference(x, y, w)
    assert got.shape == want_raw.shape
    ulp = 2.0**-f_out
    tol = torch.zeros_like(want_raw) + 4 * 2.0**-52 * want_encoded.abs()  # float64 reference rounding
    if op.truncates and (cfg.f or op.public_float):
        tol = tol + ulp
    if op.public_float:
        tol = tol + max(ulp, 1e-9 * cfg.mode.bound)
    if cfg.f == 0 and not op.truncates and not op.public_float:
        assert torch.equal(got, want_raw), "integer mode is exact"
    err_encoded = (got - want_encoded).abs()
    assert bool((err_encoded <= tol).all()), f"max error {float(err_encoded.max()):.3g} vs encoded inputs"
    e = 2.0 ** -(cfg.f + 1) if cfg.f else 0.0
    tol_raw = tol + op.propagated(cfg, x, y, w, e)
    err_raw = (got - want_raw).abs()
    assert bool((err_raw <= tol_raw).all()), f"max error {float(err_raw.max()):.3g} vs raw inputs"

    # bytes and rounds, exactly
    traffic = _expected_traffic(cfg, op, got.numel())
    for rank, (stats, _, _) in enumerate(results):
        assert stats["bytes_sent_to"] == {p: b for p, b in traffic[rank].items()}, f"rank {rank}"
        assert stats["bytes_sent"] == sum(traffic[rank].values())
        assert stats["messages_sent"] == len(traffic[rank])
        # every compute party spends exactly one round on a resharing operation (party 0 only
        # sends when it is fused with a truncation); linear operations are free
        expected_rounds = 1 if op.comm == "reshare" and rank < 3 else 0
        assert stats["rounds"] == expected_rounds, f"rank {rank}"


# ----- sharing and revealing from every owner -------------------------------------------------


@pytest.mark.parametrize("ring", [64, 128])
@pytest.mark.parametrize("input_parties", [0, 2])
def test_share_and_reveal_traffic(ring, input_parties):
    """share from each owner (compute or input party), reveal to all, to rank 0 only, and to
    one input party: values exact, bytes and rounds exact, non-recipients get None and are
    sent nothing."""
    world = 3 + input_parties
    eb = ring // 8
    shape = (4, 3)
    n = 12
    f = DEFAULTS[ring].frac_bits
    data = {o: torch.linspace(-1000, 1000, n, dtype=torch.float64).reshape(shape) * (o + 1) / 7 for o in range(world)}

    def job(ctx, value=None):
        log = []
        for owner in range(world):
            ctx.reset_comm_stats()
            s = smpc.share(ctx, value if ctx.rank == owner else None, owner=owner, bound=1e4)
            log.append(("share", owner, ctx.comm_stats()))
            targets = [None, 0] + ([3] if input_parties else [])
            for to in targets:
                ctx.reset_comm_stats()
                got = s.reveal(to=to)
                log.append(("reveal", (owner, to), ctx.comm_stats(), got))
        return log

    inputs = {o: {"value": data[o]} for o in range(world)}
    results = smpc.simulate(job, ring=ring, input_parties=input_parties, inputs=inputs)
    for rank, log in enumerate(results):
        for entry in log:
            kind, key, stats = entry[:3]
            if kind == "share":
                owner = key
                if rank == owner and owner < 3:  # the share its other holder lacks, the shape to the third
                    want = {(owner + 1) % 3: n * eb, (owner + 2) % 3: 8 * len(shape)}
                elif rank == owner:
                    want = {0: 8 * len(shape), 1: n * eb, 2: n * eb}  # the shape header to party 0
                else:
                    want = {}
                assert stats["bytes_sent_to"] == want, (rank, entry)
                receives = rank < 3 and rank != owner
                assert stats["rounds"] == (1 if rank == owner or receives else 0), (rank, entry)
                continue
            owner, to = key
            got = entry[3]
            recipients = list(range(world)) if to is None else [to]
            if rank in recipients:
                want_value = torch.round(data[owner] * 2.0**f) / 2.0**f
                assert torch.equal(got, want_value), (rank, key)
            else:
                assert got is None, (rank, key)
            want = {}
            if rank < 3:
                nxt = (rank + 1) % 3
                if nxt in recipients:  # the low bytes the bound needs and a spare (1e4 at f bits: 4+1, 5+1)
                    want[nxt] = n * (5 if ring == 64 else 6)
                for u in recipients:
                    if u >= 3:
                        want[u] = n * eb
            assert stats["bytes_sent_to"] == want, (rank, key)
            involved = bool(want) or rank in recipients
            assert stats["rounds"] == (1 if involved else 0), (rank, key)
            if to == 0:
                # reveal to rank 0 only: rank 0 and rank 1 send nothing, rank 2 sends to rank 0 only
                if rank in (0, 1) or rank >= 3:
                    assert stats["bytes_sent"] == 0
                if rank == 2:
                    assert stats["bytes_sent_to"] == {0: n * (5 if ring == 64 else 6)}


# ----- regression: secret @ public matrix on ring128 -------------------------------------------


@pytest.mark.parametrize("ring", [64, 128])
def test_secret_times_public_integer_matrix(ring):
    """x @ W with a public integer W (inner dimension 2): exact in integer mode. Regression: the
    float64 limb matmul used to round on the sign-extended public words, and about half the
    ring128 elements came out wrong."""
    x = torch.arange(-500, 500, dtype=torch.int64).reshape(-1, 2)
    w = torch.tensor([[-1, 2], [-3, -1]])

    def job(ctx, x=None):
        s = smpc.share(ctx, x, owner=0, bound=1000, frac_bits=0)
        return (s @ w).reveal_int()

    got = smpc.simulate(job, ring=ring, inputs={0: {"x": x}})[0]
    want = (x @ w).tolist()
    assert [[int(v) for v in row] for row in got] == want


# ----- "Must show": 1e6 elements at bank magnitudes -------------------------------------------

N_BIG = 1_000_000


def _uniform(seed: int, n: int, bound: float) -> torch.Tensor:
    return torch.tensor(np.random.default_rng(seed).uniform(-bound, bound, n))


@pytest.mark.slow
@pytest.mark.parametrize("ring", [128, 64])
@pytest.mark.parametrize("kind", ["product", "square"])
def test_million_products_at_bank_magnitudes(ring, kind):
    """1e6 products x*y, x in [-1e9, 1e9] (bound=1e9), y in [-1e3, 1e3] (bound=1e3), and 1e6
    squares of x in [-1e6, 1e6] (bound=1e6), ring defaults (ring128: f = 20).

    Interpretation of "agree with float64 to <= 1e-9 relative or the ring's resolution": the
    reference is float64 arithmetic on the *encoded* inputs decode(encode(x)) * decode(encode(y)),
    and every element must be within max(1e-9 |ref|, 2^-f) (truncation: < 1 ulp = 2^-f): zero
    wrong elements. Separately, against the raw float64 inputs, every element must be within
    the documented bound (|x| + |y|) 2^-(f+1) + 2^-(2f+2) + 2^-f (+ float64 rounding).
    On ring64 (f = 16) both products exceed the ring and must be refused with RangeError."""
    f = DEFAULTS[ring].frac_bits
    if kind == "product":
        x, y = _uniform(1, N_BIG, 1e9), _uniform(2, N_BIG, 1e3)
        x[:4] = torch.tensor([1e9, -1e9, 2.0**-f, -(2.0**-f)])
        y[:4] = torch.tensor([-1e3, -1e3, -1e3, 1e3])
        bx, by = 1e9, 1e3
    else:
        x = _uniform(3, N_BIG, 1e6)
        x[:3] = torch.tensor([1e6, -1e6, -(2.0**-f)])
        y = x
        bx = by = 1e6

    def job(ctx, x=None, y=None):
        a = smpc.share(ctx, x, owner=0, bound=bx)
        if kind == "square":
            ctx.reset_comm_stats()
            out = a * a
        else:
            b = smpc.share(ctx, y, owner=1, bound=by)
            ctx.reset_comm_stats()
            out = a * b
        stats = ctx.comm_stats()
        return stats, out.reveal(to=0)

    inputs = {0: {"x": x}} if kind == "square" else {0: {"x": x}, 1: {"y": y}}
    if ring == 64:
        with pytest.raises(RangeError):
            smpc.simulate(job, ring=ring, inputs=inputs)
        return
    results = smpc.simulate(job, ring=ring, inputs=inputs)
    got = results[0][1]
    xe, ye = torch.round(x * 2.0**f) / 2.0**f, torch.round(y * 2.0**f) / 2.0**f
    ref = xe * ye
    err = (got - ref).abs()
    wrong = int((err > torch.clamp(1e-9 * ref.abs(), min=2.0**-f)).sum())
    assert wrong == 0, f"{wrong} wrong elements, max error {float(err.max()):.3g}"
    # in fact within one unit of the last place plus the float64 roundings of got and ref
    assert bool((err <= 2.0**-f + 2.0**-52 * ref.abs()).all())
    raw_bound = (x.abs() + y.abs()) * 2.0 ** -(f + 1) + 2.0 ** -(2 * f + 2) + 2.0**-f + 2.0**-50 * (x * y).abs()
    assert bool(((got - x * y).abs() <= raw_bound).all())
    # communication: every compute party sends exactly N ring elements in exactly 1 round
    for rank in range(3):
        stats = results[rank][0]
        assert stats["bytes_sent"] == N_BIG * 16 and stats["rounds"] == 1 and stats["messages_sent"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("ring", [128, 64])
def test_million_sums_at_bank_magnitudes(ring):
    """Sums of 1e6 values of magnitude up to 1e9: in integer mode (reveal_int) exact; in fixed
    point exactly the sum of the encoded inputs (one float64 rounding at the end), hence within
    N 2^-(f+1) of the raw float64 sum. ring64: the integer sum fits (1e15 < 2^63) and is exact;
    the fixed-point sum (1e15 * 2^16 > 2^63) must be refused with RangeError."""
    f = DEFAULTS[ring].frac_bits
    gen = np.random.default_rng(7)
    ints = gen.integers(-(10**9), 10**9 + 1, N_BIG)
    ints[:3] = [10**9, 10**9, -(10**9)]
    reals = gen.uniform(-1e9, 1e9, N_BIG)

    def int_job(ctx, v=None):
        s = smpc.share(ctx, v, owner=2, bound=1e9, frac_bits=0)
        ctx.reset_comm_stats()
        total = s.sum()
        assert ctx.comm_stats()["bytes_sent"] == 0  # sums are local
        return total.reveal_int()

    got = smpc.simulate(int_job, ring=ring, inputs={2: {"v": torch.tensor(ints)}})[0]
    assert int(got) == sum(int(v) for v in ints.tolist())

    def fx_job(ctx, v=None):
        s = smpc.share(ctx, v, owner=0, bound=1e9)
        return s.sum().reveal()

    if ring == 64:
        with pytest.raises(RangeError):
            smpc.simulate(fx_job, ring=ring, inputs={0: {"v": torch.tensor(reals)}})
        return
    got = float(smpc.simulate(fx_job, ring=ring, inputs={0: {"v": torch.tensor(reals)}})[0])
    encoded_ints = np.round(reals * 2.0**f).astype(np.int64)
    from fractions import Fraction

    exact = Fraction(sum(int(v) for v in encoded_ints.tolist()), 1 << f)
    assert got == float(exact)  # the exact sum of the encoded values, rounded once
    assert abs(got - math.fsum(reals.tolist())) <= N_BIG * 2.0 ** -(f + 1) + abs(got) * 2.0**-52
