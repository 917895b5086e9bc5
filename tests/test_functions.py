"""exp, log and sigmoid of secrets: error bounds on the ranges statistics and logistic
regression use, the clamping and zero rules, ring64, and bytes and rounds equal to the
documented formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import smpc
from smpc.errors import RangeError
from smpc.protocols import division, functions


def encoded(values, frac_bits: int) -> torch.Tensor:
    return torch.round(torch.as_tensor(values, dtype=torch.float64) * 2.0**frac_bits) / 2.0**frac_bits


def f64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def check(got, expected, rel: float, absolute: float, what: str = ""):
    err = (got - expected).abs()
    allowed = rel * expected.abs() + absolute
    bad = err > allowed
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {len(got)} off; first at {i}: expected {float(expected[i])!r}, "
            f"got {float(got[i])!r} (allowed {float(allowed[i]):.3g})"
        )


def test_exp_relative_error_on_minus_20_to_10():
    gen = np.random.default_rng(11)
    x = f64(np.concatenate([gen.uniform(-20, 10, 20_000), [-20.0, 10.0, 0.0, -1e-6, 1e-6, 0.5, -0.5]]))

    def job(ctx, x=None):
        e = smpc.share(ctx, x, owner=0, bound=20.0).exp()
        return e.frac_bits, e.bound, e.reveal()

    frac, bound, got = smpc.simulate(job, inputs={0: {"x": x}})[0]
    assert frac == 52 and math.exp(20) <= bound < math.exp(20) * 1.001
    expected = torch.exp(encoded(x, 20))
    check(got, expected, 1e-9, 2.0**-frac, "documented bound")
    check(got, expected, 2e-7, 0.0, "relative on [-20, 10]")


def test_exp_clamps_and_underflows():
    x = f64([-44.0, -50.0, -1e6, 43.9, 44.0, 44.5, 1e6, 30.0])

    def job(ctx, x=None):
        e = smpc.share(ctx, x, owner=0).exp()
        return e.frac_bits, e.reveal()

    frac, got = smpc.simulate(job, inputs={0: {"x": x}})[0]
    expected = torch.exp(encoded(x, 20).clamp(max=44.0))
    expected[:3] = 0.0  # below 2^-63: returned as 0, within one unit
    check(got, expected, 1e-9, 2.0**-frac, "clamped exp")


def test_sigmoid_absolute_error_on_minus_30_to_30():
    gen = np.random.default_rng(12)
    z = f64(np.concatenate([gen.uniform(-30, 30, 20_000), [0.0, 30.0, -30.0, 44.0, -44.0, 60.0, -60.0, 1e9, -1e9]]))

    def job(ctx, z=None):
        s = smpc.share(ctx, z, owner=0).sigmoid()
        return s.frac_bits, s.reveal()

    frac, got = smpc.simulate(job, inputs={0: {"z": z}})[0]
    expected = torch.sigmoid(encoded(z, 20))
    check(got, expected, 0.0, 3e-10 + 2.0**-frac, "sigmoid")
    assert bool(((got >= 0) & (got <= 1)).all())
    check(got[-4:], f64([1.0, 0.0, 1.0, 0.0]), 0.0, 3e-10 + 2.0**-frac, "saturation")


def test_log_absolute_error_from_1e_3_to_1e9():
    gen = np.random.default_rng(13)
    y = f64(np.concatenate([10.0 ** gen.uniform(-3, 9, 20_000), [1e-3, 1e9, 1.0, 2.0, 0.5, math.e, 1e12]]))

    def job(ctx, y=None):
        v = smpc.share(ctx, y, owner=0)
        return v.log().frac_bits, v.log().reveal()

    frac, got = smpc.simulate(job, inputs={0: {"y": y}})[0]
    expected = torch.log(encoded(y, 20))
    check(got, expected, 0.0, 2e-9 + 2 * 2.0**-frac, "log")


def test_log_of_zero_and_negative_values():
    y = f64([0.0, -3.0, -2.0**-20, 2.0**-20])

    def job(ctx, y=None):
        v = smpc.share(ctx, y, owner=0).log()
        return v.frac_bits, v.reveal()

    frac, got = smpc.simulate(job, inputs={0: {"y": y}})[0]
    ulp_log = -20 * math.log(2.0)
    check(got, f64([ulp_log, math.log(3.0), ulp_log, ulp_log]), 0.0, 2e-9 + 2 * 2.0**-frac, "log edge values")


def test_logistic_loss_pieces_agree_with_float64():
    """A logistic-regression step's non-linear parts: sigmoid(z) and log(sigmoid(z))."""
    gen = np.random.default_rng(14)
    z = f64(gen.normal(0, 4, 5000))

    def job(ctx, z=None):
        s = smpc.share(ctx, z, owner=0, bound=100.0).sigmoid()
        return s.reveal(), s.log().reveal()

    s, logs = smpc.simulate(job, inputs={0: {"z": z}})[0]
    ze = encoded(z, 20)
    check(s, torch.sigmoid(ze), 0.0, 1e-9, "sigmoid")
    # log(s) through a 38-bit s: absolute error ~ 2^-38 / s
    check(logs, torch.nn.functional.logsigmoid(ze), 2e-9, 1e-9 / torch.sigmoid(ze).min().item(), "log sigmoid")


def test_ring64_within_its_bound_or_refused():
    gen = np.random.default_rng(64)
    x = f64(gen.uniform(-10, 10, 3000))
    y = f64(10.0 ** gen.uniform(-3, 6, 3000))

    def job(ctx, x=None, y=None):
        a = smpc.share(ctx, x, owner=0, bound=10.0)
        b = smpc.share(ctx, y, owner=0)
        e, s, lg = a.exp(), a.sigmoid(), b.log()
        return (e.frac_bits, e.reveal()), (s.frac_bits, s.reveal()), (lg.frac_bits, lg.reveal())

    (fe, e), (fs, s), (fl, lg) = smpc.simulate(job, ring=64, inputs={0: {"x": x, "y": y}})[0]
    assert (fe, fs, fl) == (27, 27, 27)
    xe, ye = encoded(x, 16), encoded(y, 16)
    check(e, torch.exp(xe), 1e-9, 2.0**-fe, "ring64 exp")
    check(s, torch.sigmoid(xe), 0.0, 3e-10 + 2.0**-fs, "ring64 sigmoid")
    check(lg, torch.log(ye), 0.0, 2e-9 + 2 * 2.0**-fl, "ring64 log")

    def overflowing(ctx):  # e^44 does not fit ring64 at any precision
        return smpc.share(ctx, f64([1.0]), owner=0).exp()

    with pytest.raises(RangeError, match="do not fit ring64"):
        smpc.simulate(overflowing, ring=64)


@pytest.mark.parametrize("frac", [40, 44, 52])
def test_exp_and_sigmoid_of_finely_scaled_inputs_keep_their_bounds(frac):
    """A quotient carries up to 52 fractional bits; exp of it once lost all accuracy there
    (log2(e) kept 55 - f bits). Inputs over 40 bits are truncated to 40 first (one round)."""
    gen = np.random.default_rng(frac)
    x = f64(np.concatenate([gen.uniform(-40, 40, 2000), [-40.0, 40.0, 0.0, 2.0**-frac, 30.0, -30.0]]))

    def job(ctx, x=None):
        a = smpc.share(ctx, x, owner=0, bound=40.0, frac_bits=frac)
        ctx.reset_comm_stats()
        e = a.exp()
        rounds = ctx.comm_stats()["rounds"]
        return rounds, e.frac_bits, e.reveal(), a.sigmoid().reveal()

    rounds, f_e, got_exp, got_sig = smpc.simulate(job, inputs={0: {"x": x}})[0]
    assert rounds == 14 + (frac > functions.EXP_MAX_FRAC_BITS)
    xe = encoded(x, frac)
    check(got_exp, torch.exp(xe), 1e-9, 2.0**-f_e, "exp")  # truncating x to 40 bits: 1e-12 relative
    check(got_sig, torch.sigmoid(xe), 0.0, 3e-10 + 2.0**-38, "sigmoid")


def test_refused_ranges():
    def too_wide(ctx):  # x + 44 must fit 62 bits
        return smpc.share(ctx, f64([1.0]), owner=0, bound=2.0**50, frac_bits=20).exp()

    with pytest.raises(RangeError, match="too large to split"):
        smpc.simulate(too_wide)

    def too_precise(ctx):
        return smpc.share(ctx, f64([1.0]), owner=0).sigmoid(frac_bits=40)

    with pytest.raises(RangeError, match="at most 38"):
        smpc.simulate(too_precise)


@pytest.mark.parametrize("ring", [64, 128])
@pytest.mark.parametrize("name", ["exp", "log", "sigmoid"])
def test_bytes_and_rounds_equal_the_documented_formulas(ring, name):
    n = 300
    gen = np.random.default_rng(2)
    x = f64(gen.uniform(-5, 5, n))
    y = f64(10.0 ** gen.uniform(-3, 6, n))

    def job(ctx, x=None, y=None):
        a = smpc.share(ctx, x, owner=0, bound=10.0)
        b = smpc.share(ctx, y, owner=1)
        ctx.reset_comm_stats()
        out = {"exp": a.exp, "log": b.log, "sigmoid": a.sigmoid}[name]()
        stats = ctx.comm_stats()
        return out.frac_bits, stats["rounds"], stats["bytes_sent"]

    got = smpc.simulate(job, ring=ring, inputs={0: {"x": x}, 1: {"y": y}})
    items = len(functions.exp_items(got[0][0])) if name == "exp" else 0
    rounds, per_element = division.cost_per_element(name, ring, items)
    assert [g[1] for g in got] == [rounds] * 3
    assert [g[2] for g in got] == [n * b for b in per_element]
