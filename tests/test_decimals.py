"""Exact money in the value type: ``smpc.share(ctx, x, owner, decimals=2)`` holds cents as
integers, so sums, products (decimals add) and comparisons are exact, checked against Python's
``decimal`` on adversarial magnitudes (balances to 1e9 with cents, negatives, 1e6-row sums);
over-precise values are refused before anything is sent; what cannot be exact (means, division
by a secret) converts to binary fixed point with its stated error."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import torch

import smpc
from smpc.errors import InputError, RangeError, SmpcError
from smpc.fixedpoint import decimals_of, encode_decimal, public_decimal
from smpc.ring import RING64, RING128

RNG = np.random.default_rng(20261207)


def cents(n, high=1e9):
    """Amounts with exactly two decimals up to ``high``, both signs, as float64 and Decimal."""
    units = RNG.integers(-int(high * 100), int(high * 100) + 1, size=n)
    return units / 100.0, [Decimal(int(u)).scaleb(-2) for u in units]


def run(fn, ring=128, **inputs):
    return smpc.simulate(fn, ring=ring, inputs={0: inputs})


def test_sums_of_a_million_balances_are_exact_to_the_cent():
    floats, exact = cents(1_000_000)

    def job(ctx, x=None):
        s = smpc.share(ctx, x, owner=0, bound=1e9, decimals=2, name="balance")
        assert s.frac_bits == 0 and s.decimals == 2
        return s.sum().reveal_decimal()

    got = run(job, x=floats)[1]
    assert got.item() == sum(exact)  # Decimal with two places: the sum, to the cent
    assert str(got.item()).endswith(str(sum(exact))[-3:])


@pytest.mark.parametrize("ring", [64, 128])
def test_products_add_decimals_and_are_exact(ring):
    rates = np.array([0.015, -0.0725, 1.5, 0.001, 0.0])  # 4 decimals at most
    floats, exact = cents(5, high=1e4 if ring == 64 else 1e9)
    exact_rates = [Decimal(repr(float(r))) for r in rates]

    def job(ctx, x=None, r=None):
        a = smpc.share(ctx, x, owner=0, bound=1e9 if ring == 128 else 1e4, decimals=2)
        b = smpc.share(ctx, r, owner=0, bound=2, decimals=4)
        p = a * b
        assert p.decimals == 6
        return p.reveal_decimal(), (a * 3).reveal_decimal(), (a * 0.25).decimals

    out, tripled, quarter_decimals = smpc.simulate(job, ring=ring, inputs={0: {"x": floats, "r": rates}})[2]
    assert list(out) == [x * r for x, r in zip(exact, exact_rates, strict=True)]
    assert list(tripled) == [3 * x for x in exact] and quarter_decimals == 4


def test_comparisons_read_public_values_as_the_decimals_they_print_as():
    # 0.1 + 0.2 == 0.3 exactly, and 0.10 < 0.1 is false: binary fixed point gets both wrong
    values = np.array([0.1, 0.2, 0.3, 499999.99, 500000.0, 500000.01, -0.01])

    def job(ctx, x=None):
        a = smpc.share(ctx, x, owner=0, bound=1e9, decimals=2)
        pair = a[0] + a[1]
        return [t.reveal().tolist() for t in (
            pair == 0.3, pair == a[2], a < 0.1, a > 500000, a >= 500000, a == 0.105, a < 0.105, a > -0.005,
        )]

    eq_public, eq_secret, below, above, at_least, odd_eq, odd_lt, above_neg = run(job, x=values)[0]
    assert eq_public == 1.0 and eq_secret == 1.0
    assert below == [0, 0, 0, 0, 0, 0, 1]
    assert above == [0, 0, 0, 0, 0, 1, 0] and at_least == [0, 0, 0, 0, 1, 1, 0]
    assert odd_eq == [0] * 7  # 0.105 is not on the cent grid: nothing equals it
    assert odd_lt == [1, 0, 0, 0, 0, 0, 1] and above_neg == [1, 1, 1, 1, 1, 1, 0]


def test_decimals_align_across_operands_and_in_where_and_cat():
    def job(ctx, x=None, y=None):
        a = smpc.share(ctx, x, owner=0, bound=1e6, decimals=2)
        b = smpc.share(ctx, y, owner=0, bound=1e6, decimals=3)
        total = a + b
        mixed = smpc.where(a > b, a, 0.005)  # the public branch needs 3 decimals
        joined = smpc.cat([a, b])
        return total.decimals, total.reveal_decimal(), mixed.reveal_decimal(), joined.reveal_decimal(), \
            (a - 1.25).reveal_decimal(), abs(a - b).reveal_decimal(), a.max().reveal_decimal()

    d, total, mixed, joined, shifted, gap, top = run(
        job, x=np.array([10.25, -3.5]), y=np.array([0.125, -7.001]))[0]
    assert d == 3 and list(total) == [Decimal("10.375"), Decimal("-10.501")]
    assert list(mixed) == [Decimal("10.250"), Decimal("-3.500")]
    assert list(joined) == [Decimal("10.250"), Decimal("-3.500"), Decimal("0.125"), Decimal("-7.001")]
    assert list(shifted) == [Decimal("9.00"), Decimal("-4.75")]
    assert list(gap) == [Decimal("10.125"), Decimal("3.501")] and top.item() == Decimal("10.25")


def test_a_value_with_more_decimals_than_declared_is_refused_before_anything_is_sent():
    def job(ctx, x=None):
        return smpc.share(ctx, x, owner=0, bound=1e9, decimals=2, name="balance").reveal()

    for bad, position in (([1.5, 1234567.891], 1), ([Decimal("0.001")], 0), (["12.345"], 0)):
        with pytest.raises(InputError, match=rf"column 'balance': value at position {position} has more than 2 "
                                             r"decimal places \(declare more decimals\)"):
            run(job, x=bad)
    with pytest.raises(RangeError, match="exceeds the declared bound"):
        run(job, x=[1e9 + 0.01])
    with pytest.raises(InputError, match="is NaN"):
        run(job, x=[float("nan")])


def test_exact_inputs_as_decimal_strings_and_python_numbers():
    ring = RING128
    encoded = encode_decimal(["1234567.89", Decimal("-0.01"), 7, Fraction(1, 4)], ring, 2, 1e9)
    assert ring.to_ints(encoded) == [123456789, -1, 700, 25]
    assert public_decimal(0.1) == Fraction(1, 10) and decimals_of([0.1, 2.25]) == 2 and decimals_of([1 / 3]) is None
    with pytest.raises(RangeError, match="below 2\\^53"):
        encode_decimal([1.0], RING64, 6, 1e12)


def test_what_cannot_be_exact_converts_to_fixed_point_with_its_stated_error():
    floats, exact = cents(1000, high=1e6)

    def job(ctx, x=None):
        a = smpc.share(ctx, x, owner=0, bound=1e6, decimals=2)
        mean = a.mean()
        ratio = a[:10] / a[10:20]  # division by a secret
        third = a / 3
        return mean.decimals, mean.reveal(), ratio.reveal(), third.reveal(), (a / 100).reveal_decimal()

    d, mean, ratio, third, hundredth = run(job, x=floats)[0]
    assert d == 0
    true_mean = float(sum(exact) / len(exact))
    assert abs(float(mean) - true_mean) <= 2 * 2.0**-20
    np.testing.assert_allclose(ratio.numpy(), floats[:10] / floats[10:20], rtol=1e-8, atol=1e-5)
    np.testing.assert_allclose(third.numpy(), floats / 3, atol=2 * 2.0**-20)
    assert list(hundredth) == [x / 100 for x in exact]  # by a power of ten: still exact


def test_decimals_do_not_mix_with_binary_fixed_point_silently():
    def job(ctx, x=None):
        a = smpc.share(ctx, x, owner=0, bound=100, decimals=2)
        f = smpc.share(ctx, x, owner=0, bound=100)  # binary fixed point
        with pytest.raises(SmpcError, match="do not mix; convert the decimal one with to_fixed"):
            a + f
        with pytest.raises(SmpcError, match="reveal_int of an exact decimal"):
            a.reveal_int()
        return (a.to_fixed() + f).reveal()

    out = run(job, x=np.array([1.25, -2.5]))[0]
    np.testing.assert_allclose(out.numpy(), [2.5, -5.0], atol=1e-5)
    with pytest.raises(SmpcError, match="either exact decimals"):
        run(lambda ctx, x=None: smpc.share(ctx, x, owner=0, decimals=2, frac_bits=16), x=[1.0])


def test_sharing_decimals_costs_what_sharing_integers_costs():
    x = np.array([1.25, 2.5, -3.75])

    def job(ctx, x=None, decimals=None):
        before = ctx.comm_stats()
        # the same public bound in units: 1e6 at 2 decimals is 1e8 cents
        bound = 1e6 if decimals else 1e8
        smpc.share(ctx, x, owner=0, bound=bound, decimals=decimals, frac_bits=0).sum().reveal()
        after = ctx.comm_stats()
        return after["bytes_sent"] - before["bytes_sent"], after["rounds"] - before["rounds"]

    as_decimal = smpc.simulate(job, inputs={0: {"x": x, "decimals": 2}, 1: {"decimals": 2}, 2: {"decimals": 2}})
    as_integer = smpc.simulate(job, inputs={0: {"x": x * 100, "decimals": None}, 1: {"decimals": None},
                                            2: {"decimals": None}})
    assert as_decimal == as_integer


def test_a_product_beyond_the_ring_is_refused_before_any_message():
    def job(ctx, x=None):
        a = smpc.share(ctx, x, owner=0, bound=1e9, decimals=2)
        return (a * a * a).reveal()  # 1e33 units: beyond ring64, checked at the product

    with pytest.raises(RangeError, match="multiplication"):
        run(job, ring=64, x=[1.0])
    assert torch.is_tensor(run(job, ring=128, x=[1.5])[0])
