"""Fixed-point encoding: exact decoding of negative values (against CrypTen 0.4.1's decoder),
integer mode, bounds, and the refusal of NaN / inf / over-bound / non-integer inputs, which
name the offending position and abort a job before anything is shared."""

from __future__ import annotations

import threading
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import smpc
from smpc.errors import InputError, PartyUnavailable, RangeError
from smpc.fixedpoint import (
    DEFAULTS,
    SECURITY_BITS,
    as_float64,
    check_fits,
    check_truncatable,
    decode,
    encode,
    encode_public,
    max_encoded,
    truncatable_encoded,
)
from smpc.ring import RING64, RING128

RINGS = [RING64, RING128]
ring_param = pytest.mark.parametrize("ring", RINGS, ids=["ring64", "ring128"])


def raw(ring, ints, shape=None):
    return ring.from_ints([int(v) for v in ints], shape)


# ----- encode / decode ------------------------------------------------------------------------
@ring_param
@given(data=st.data())
def test_encode_rounds_to_nearest_and_decode_is_exact(ring, data):
    """decode(encode(x)) == round(x * 2^f) / 2^f exactly, hence |error| <= 2^-(f+1)."""
    f = data.draw(st.integers(0, 30 if ring.bits == 64 else 40), label="frac_bits")
    bound = min(1e12, 2.0 ** (ring.bits - 2 - f))
    xs = data.draw(st.lists(st.floats(-bound, bound, allow_nan=False), min_size=1, max_size=16))
    if f == 0:
        xs = [float(round(x)) for x in xs]
    x = torch.tensor(xs, dtype=torch.float64)
    got = decode(encode(x, ring, f, bound), ring, f)
    want = torch.round(x * 2.0**f) / 2.0**f
    assert torch.equal(got, want)
    assert bool(((got - x).abs() <= 2.0 ** -(f + 1)).all())


@ring_param
@given(data=st.data())
def test_decode_is_floor_plus_fraction_on_negatives(ring, data):
    """For any encoded integer t (negatives included) decode(t) is exactly t / 2^f, i.e. the
    floor of the signed value plus the fraction: -0.25 is -1 + 0.75, never -1 or 0."""
    f = data.draw(st.integers(1, 40), label="frac_bits")
    ts = data.draw(st.lists(st.integers(-(2**53) + 1, 0), min_size=1, max_size=20))
    got = decode(raw(ring, ts), ring, f).tolist()
    for t, g in zip(ts, got, strict=True):
        assert Fraction(g) == Fraction(t, 2**f), (t, f, g)
        floor, frac = t >> f, t & ((1 << f) - 1)
        assert g == floor + frac / 2**f


@ring_param
def test_decode_examples(ring):
    f = 16
    s = 1 << f
    cases = {-(s // 4): -0.25, -s: -1.0, -(2 * s - 1): -2 + 1 / s, -1: -1 / s, -(3 * s + 1): -3 - 1 / s, 0: 0.0}
    got = decode(raw(ring, list(cases)), ring, f).tolist()
    assert got == list(cases.values())


def crypten_041_decode(tensor: torch.Tensor, precision_bits: int, dtype=torch.float64) -> torch.Tensor:
    """CrypTen 0.4.1 ``FixedPointEncoder.decode`` (crypten/encoder.py), re-implemented verbatim:

        correction = (tensor < 0).long()
        dividend = tensor.div(self._scale - correction, rounding_mode="floor")
        remainder = tensor % self._scale
        remainder += (remainder == 0).long() * self._scale * correction
        tensor = dividend.float() + remainder.float() / self._scale

    (CrypTen converts with ``.float()``; ``dtype`` lets the test use float64 so that float32
    rounding cannot be blamed: the error below is in the integer part.)
    """
    scale = int(2**precision_bits)
    correction = (tensor < 0).long()
    dividend = tensor.div(scale - correction, rounding_mode="floor")
    remainder = tensor % scale
    remainder += (remainder == 0).long() * scale * correction
    return dividend.to(dtype) + remainder.to(dtype) / scale


def test_crypten_decoder_is_off_by_one_where_ours_is_exact():
    """CrypTen divides negative encodings by scale - 1 instead of scale, so e.g. the encoding
    -(2*2^16 - 1) of -1.99998 decodes to -2.99998: exactly 1.0 too low. Over every encoding in
    [-2^20, 2^20) it is wrong on 120 negative values (never on non-negative ones); ours is
    exact on all of them."""
    f = 16
    s = 1 << f
    t = torch.arange(-(1 << 20), 1 << 20, dtype=torch.int64)
    exact = t.to(torch.float64) / s  # exact: |t| < 2^53
    theirs = crypten_041_decode(t, f)
    wrong = theirs != exact
    assert int(wrong.sum()) == 120
    assert not bool(wrong[t >= 0].any())
    assert bool(((theirs - exact)[wrong] == -1.0).all()), "every CrypTen error is exactly -1.0"
    # the concrete example, also with CrypTen's own float32 conversion
    example = torch.tensor([-(2 * s - 1), -(3 * s - 1), -(5 * s - 2)])
    assert crypten_041_decode(example, f).tolist() == [-3 + 1 / s, -4 + 1 / s, -6 + 2 / s]
    assert crypten_041_decode(example, f, torch.float32).tolist() == pytest.approx([-3 + 1 / s, -4 + 1 / s, -6 + 2 / s])
    for ring in RINGS:
        ours = decode(ring.from_int64(t), ring, f)
        assert torch.equal(ours, exact), ring.name
        assert decode(ring.from_int64(example), ring, f).tolist() == [-2 + 1 / s, -3 + 1 / s, -5 + 2 / s]


# ----- integer mode ---------------------------------------------------------------------------
@ring_param
@given(data=st.data())
def test_integer_mode_is_exact(ring, data):
    limit = 2**62 if ring.bits == 64 else 2**100
    vals = data.draw(st.lists(st.integers(-limit, limit), min_size=1, max_size=12))
    enc = encode(vals, ring, 0, float(limit))
    assert ring.to_ints(enc) == vals
    if ring.bits == 64 or max(abs(v) for v in vals) < 2**63:
        small = [v for v in vals if abs(v) < 2**63]
        t = torch.tensor(small, dtype=torch.int64)
        assert ring.to_ints(encode(t, ring, 0, float(limit))) == small
        assert ring.to_ints(encode(t.numpy(), ring, 0, float(limit))) == small


@ring_param
def test_integer_inputs_keep_full_precision_at_fraction_bits(ring):
    f = DEFAULTS[ring.bits].frac_bits
    t = torch.tensor([2**31 - 1, -(2**31) + 1, 0, -7], dtype=torch.int64)
    assert ring.to_ints(encode(t, ring, f, 2.0**31)) == [v << f for v in t.tolist()]


@pytest.mark.parametrize(
    "value,position",
    [([1.0, 2.5, 3.0], 1), (torch.tensor([[1.0, 2.0], [3.0, -0.5]], dtype=torch.float64), (1, 1)),
     (np.array([7.0, 1e-9]), 1)],
)
def test_non_integer_in_integer_mode_is_refused_with_position(value, position):
    with pytest.raises(InputError, match=rf"position {position!s}".replace("(", r"\(").replace(")", r"\)")) as err:
        encode(value, RING128, 0, 1e6, who="bank_a, column 'loans'")
    assert "bank_a, column 'loans'" in str(err.value)
    assert "whole number" in str(err.value)


# ----- refusals -------------------------------------------------------------------------------
@ring_param
@pytest.mark.parametrize(
    "bad,kind",
    [(float("nan"), "NaN"), (float("inf"), "infinite"), (float("-inf"), "infinite")],
)
def test_nan_and_inf_are_refused_with_position(ring, bad, kind):
    x = torch.tensor([[0.5, -1.0, 2.0], [3.0, bad, 4.0]], dtype=torch.float64)
    with pytest.raises(InputError, match=rf"position \(1, 1\) is {kind}") as err:
        encode(x, ring, 8, 100.0, who="bank_b, column 'balance'")
    assert "bank_b, column 'balance'" in str(err.value)
    with pytest.raises(InputError, match=rf"position 2 is {kind}"):
        encode([1.0, 2.0, bad], ring, 8, 100.0)


@ring_param
def test_over_bound_is_refused_with_position(ring):
    with pytest.raises(RangeError, match="position 3 exceeds the declared bound 1000"):
        encode(torch.tensor([1.0, -999.0, 1000.0, -1000.5], dtype=torch.float64), ring, 8, 1000.0, who="bank_c")
    with pytest.raises(RangeError, match=r"position \(0, 1\) exceeds"):
        encode(np.array([[5, 1001], [0, 0]]), ring, 0, 1000.0)
    with pytest.raises(RangeError, match="position 0 exceeds"):
        encode([2**70], ring, 0, 1000.0)


@ring_param
@pytest.mark.parametrize(
    "value",
    [
        torch.tensor([0, 2**31 + 1]),  # int64 compared in float32 rounds 2^31 + 1 down to the bound
        torch.tensor([0, -(2**63)]),  # abs(-2^63) overflows to -2^63, which is "not > bound"
        np.array([0, 2**64 - 1], dtype=np.uint64),  # astype(int64) wraps it to -1
        np.array([0, 2**31 + 1], dtype=np.int64),
    ],
    ids=["int64-bound-plus-one", "int64-min", "uint64-max", "numpy-bound-plus-one"],
)
def test_integer_tensors_over_bound_are_refused(ring, value):
    """Integer inputs are compared with the bound exactly (no float32 rounding, no overflow)."""
    with pytest.raises(RangeError, match="position 1 exceeds"):
        encode(value, ring, 0, 2.0**31)


def test_capacity_rules_match_the_documented_table():
    assert SECURITY_BITS == 40
    assert (DEFAULTS[64].frac_bits, DEFAULTS[64].bound) == (16, 2.0**31)
    assert (DEFAULTS[128].frac_bits, DEFAULTS[128].bound) == (20, 2.0**40)
    for ring in RINGS:
        d = DEFAULTS[ring.bits]
        check_fits(ring, d.bound, d.frac_bits, "default input")
        assert max_encoded(ring) == 2.0 ** (ring.bits - 1) - 1
        assert truncatable_encoded(ring) == 2.0 ** (ring.bits - 1 - SECURITY_BITS)
    # ring64 at 16 bits: no fixed-point product is safe beyond 2^-9 (the table says "none")
    with pytest.raises(RangeError, match="2\\^-40"):
        check_truncatable(RING64, 2.0**-9, 32, "product")
    # ring128 at 20 bits: products up to 2^47 (exclusive) are safe, as documented
    check_truncatable(RING128, 2.0**47 * (1 - 2**-40), 40, "product")
    with pytest.raises(RangeError, match="safe truncation range"):
        check_truncatable(RING128, 2.0**47, 40, "product")
    with pytest.raises(RangeError, match="does not fit ring64"):
        check_fits(RING64, 2.0**47, 16, "sum")
    check_fits(RING64, 2.0**47 - 2.0**-6, 16, "sum")  # the largest float64 bound below 2^47


@ring_param
def test_public_constants_and_non_numeric_values(ring):
    with pytest.raises(InputError):
        encode_public(torch.tensor([1.0, float("nan")]), ring, 8)
    with pytest.raises(InputError, match="not numeric"):
        as_float64(["a", "b"], "bank_a")
    assert decode(encode_public(-2.5, ring, 8), ring, 8).tolist() == -2.5


# ----- in a job: nothing is shared, the others abort ------------------------------------------
def _bad_input_job(owner: int, column: str, records: dict, lock: threading.Lock, world: int):
    started = threading.Barrier(world, timeout=120)  # every context is set up before the owner fails

    def job(ctx, x=None):
        started.wait()
        try:
            shared = smpc.share(ctx, x, owner=owner, bound=1e6, name=column)
            return shared.reveal()
        except BaseException as exc:
            with lock:
                records[ctx.rank] = (exc, ctx.comm_stats())
            raise

    return job


@pytest.mark.parametrize("input_parties,owner", [(0, 1), (2, 4)])
@pytest.mark.parametrize(
    "bad,error,message",
    [
        (float("nan"), InputError, r"position \(2, 0\) is NaN"),
        (float("inf"), InputError, r"position \(2, 0\) is infinite"),
        (2e6, RangeError, r"position \(2, 0\) exceeds the declared bound"),
    ],
)
def test_bad_input_aborts_the_job_before_sharing(input_parties, owner, bad, error, message):
    """The owner's error is re-raised by simulate (not a timeout: the timeout is far away),
    the owner sent nothing, and every other party was aborted naming the owner."""
    names = ["bank_a", "bank_b", "bank_c", "bank_d", "bank_e"][: 3 + input_parties]
    x = torch.zeros(4, 2, dtype=torch.float64)
    x[2, 0] = bad
    records: dict = {}
    job = _bad_input_job(owner, "balance", records, threading.Lock(), 3 + input_parties)
    with pytest.raises(error, match=message) as err:
        smpc.simulate(job, input_parties=input_parties, timeout=120.0, party_names=names, inputs={owner: {"x": x}})
    assert f"{names[owner]}, column 'balance'" in str(err.value)
    assert set(records) == set(range(3 + input_parties))
    own_exc, own_stats = records[owner]
    assert type(own_exc) is error
    assert own_stats["bytes_sent"] == 0 and own_stats["rounds"] == 0, "nothing may be sent"
    for rank, (exc, stats) in records.items():
        if rank == owner:
            continue
        assert type(exc) is PartyUnavailable, f"rank {rank} got {exc!r}, not an abort"
        assert exc.peer == owner and f"party {owner}" in str(exc)
        assert stats["bytes_sent"] == 0


@pytest.mark.parametrize("value", [torch.tensor([1234567.89]), torch.tensor([1.5], dtype=torch.float16),
                                   torch.tensor([1.5], dtype=torch.bfloat16),
                                   np.array([1234567.89], dtype=np.float32)],
                         ids=["torch-float32", "float16", "bfloat16", "numpy-float32"])
def test_share_refuses_short_floats_naming_the_party_and_column(value):
    """float32 arrives already rounded (1234567.89 is 1234567.875): sharing it exactly would be
    silently wrong, so it is refused before anything is sent."""

    def fn(ctx, x=None):
        return smpc.share(ctx, x, owner=1, bound=1e9, name="balance").reveal()

    with pytest.raises(smpc.InputError, match=r"party 1, column 'balance': values are (float32|float16|bfloat16)"):
        smpc.simulate(fn, inputs={1: {"x": value}})


def test_share_takes_float64_and_integers_exactly():
    for value in (torch.tensor([1234567.89], dtype=torch.float64), torch.tensor([1234567], dtype=torch.int64)):
        out = smpc.simulate(lambda ctx, x=None: smpc.share(ctx, x, owner=0, bound=1e9).reveal(),
                            inputs={0: {"x": value}})
        assert abs(float(out[0][0]) - float(value[0])) <= 2.0**-21
