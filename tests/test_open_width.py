"""Reveals send only the low bytes of each share that the public bound needs, plus one spare
byte (``fixedpoint.open_width``): values exact at the edges of every width, bytes exact, and a
value beyond its declared bound refused at every recipient instead of opened wrapped."""

from __future__ import annotations

import pytest
import torch

import smpc
from smpc.fixedpoint import open_width
from smpc.ring import ring_for
from smpc.secret import SecretTensor


@pytest.mark.parametrize(
    "ring, bound, frac_bits, width",
    [
        (64, 1, 0, 2),  # one byte holds it, one spare byte
        (64, 125, 0, 2),  # 125 + 2 units of slack < 2^7
        (64, 126, 0, 3),
        (64, 2.0**15 - 3, 0, 3),
        (64, 2.0**15 - 2, 0, 4),
        (64, 1e4, 16, 5),
        (64, 2.0**31, 0, 6),
        (64, 2.0**40, 0, 7),  # 6 bytes and the spare
        (64, 2.0**47, 0, 8),  # 7 bytes and the spare: the whole element
        (64, 2.0**40, 16, 8),  # no narrower width holds it: the whole element
        (128, 1, 0, 2),
        (128, 2.0**40, 0, 7),
        (128, 2.0**40, 20, 16),  # 8 bytes and the spare: the whole element
        (128, 2.0**62, 0, 16),
        (128, 1e9, 40, 16),
    ],
)
def test_open_width(ring, bound, frac_bits, width):
    assert open_width(ring_for(ring), bound, frac_bits) == width


def _edge_values(bound: float, frac_bits: int) -> torch.Tensor:
    """The bound itself, its negative, one unit inside, zero and one unit either side."""
    ulp = 2.0**-frac_bits
    return torch.tensor([bound, -bound, bound - ulp, -bound + ulp, 0.0, ulp, -ulp], dtype=torch.float64)


@pytest.mark.parametrize("ring", [64, 128])
@pytest.mark.parametrize("bound, frac_bits", [(100.0, 0), (125.0, 0), (3.0e4, 0), (2.0e9, 0), (1e5, 16), (2.0**46, 16)])
def test_edges_reveal_exactly_with_the_narrow_width(ring, bound, frac_bits):
    values = _edge_values(bound, frac_bits)
    n = values.numel()
    width = open_width(ring_for(ring), bound, frac_bits)

    def job(ctx):
        s = smpc.share(ctx, values if ctx.rank == 0 else None, owner=0, bound=bound, frac_bits=frac_bits)
        ctx.reset_comm_stats()
        out = s.reveal()
        return out, ctx.comm_stats()

    for rank, (out, stats) in enumerate(smpc.simulate(job, ring=ring)):
        assert torch.equal(out, values), rank
        assert stats["bytes_sent_to"] == {(rank + 1) % 3: n * width}


@pytest.mark.parametrize("ring", [64, 128])
def test_products_and_comparisons_open_narrow(ring):
    """A truncated product at its bound (truncation may round up by one unit) and a
    comparison bit (1 byte and the spare byte per element) open exactly; an input-party recipient gets whole
    ring elements and the same values."""
    gen = torch.Generator().manual_seed(5)
    n = 2000
    bound = 1000.0
    x = (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * bound
    y = (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * bound
    x[:4] = torch.tensor([bound, -bound, bound, -bound])
    y[:4] = torch.tensor([bound, bound, -bound, -bound])
    f = 8 if ring == 128 else 0  # ring64 cannot truncate a product this large safely
    x, y = torch.round(x * 2**f) / 2**f, torch.round(y * 2**f) / 2**f  # exact inputs

    def job(ctx):
        xs = smpc.share(ctx, x if ctx.rank == 0 else None, owner=0, bound=bound, frac_bits=f)
        ys = smpc.share(ctx, y if ctx.rank == 1 else None, owner=1, bound=bound, frac_bits=f)
        product = xs * ys
        ctx.reset_comm_stats()
        got_product = product.reveal()
        product_stats = ctx.comm_stats()
        less = xs < ys
        ctx.reset_comm_stats()
        got_less = less.reveal()
        return got_product, product_stats, got_less, ctx.comm_stats()

    results = smpc.simulate(job, ring=ring, input_parties=1)
    want_product = x * y  # exact in float64; the truncated product is floor or one unit more
    width = open_width(ring_for(ring), bound**2, f)
    for rank, (product, product_stats, less, less_stats) in enumerate(results):
        assert (product - want_product).abs().max() <= 2.0**-f, rank
        assert torch.equal(product[:4], want_product[:4]), rank  # +-bound^2: no rounding
        assert torch.equal(less, (x < y).to(torch.float64)), rank
        if rank < 3:
            element = ring // 8
            assert product_stats["bytes_sent_to"] == {(rank + 1) % 3: n * width, 3: n * element}
            assert less_stats["bytes_sent_to"] == {(rank + 1) % 3: n * 2, 3: n * element}


@pytest.mark.parametrize("ring", [64, 128])
@pytest.mark.parametrize("held, frac_bits", [(1000.0, 0), (-1000.0, 0), (1000.0, 8), (2.0**15, 0), (-103.0, 0)])
def test_a_value_beyond_its_declared_bound_is_refused_at_every_recipient_never_wrapped(ring, held, frac_bits):
    """A secret holding 1000 under a declared bound of 100 opened as -24 at compute
    recipients (one byte: 1000 mod 256) and as 1000 at an input-party recipient. Every
    recipient, whatever it receives, now refuses it with RangeError naming its origin; the
    bytes stay exact (the spare byte is the only cost)."""
    values = torch.tensor([5.0, held, -7.0], dtype=torch.float64)

    def job(ctx):
        honest = smpc.share(ctx, values if ctx.rank == 0 else None, owner=0, bound=abs(held), frac_bits=frac_bits,
                           name="balances")
        wrong = SecretTensor(ctx, honest.shares, frac_bits, 100.0, origin="balances under a wrong bound")
        ctx.reset_comm_stats()
        try:
            return wrong.reveal(), ctx.comm_stats()
        except smpc.RangeError as exc:
            return exc, ctx.comm_stats()

    results = smpc.simulate(job, ring=ring, input_parties=1)
    width = open_width(ring_for(ring), 100.0, frac_bits)
    for rank, (outcome, stats) in enumerate(results):
        assert isinstance(outcome, smpc.RangeError), (rank, outcome)
        assert "balances under a wrong bound" in str(outcome) and "position 1" in str(outcome), rank
        assert "declared bound 100" in str(outcome), rank
        if rank < 3:
            assert stats["bytes_sent_to"] == {(rank + 1) % 3: 3 * width, 3: 3 * ring // 8}, rank


@pytest.mark.parametrize("ring", [64, 128])
def test_values_at_the_bound_and_truncation_slack_still_open(ring):
    """The check refuses only what lies beyond the bound and its two units of slack."""
    values = torch.tensor([100.0, -100.0, 102.0, -102.0], dtype=torch.float64)

    def job(ctx):
        s = smpc.share(ctx, values if ctx.rank == 0 else None, owner=0, bound=102.0, frac_bits=0)
        return SecretTensor(ctx, s.shares, 0, 100.0).reveal()

    for out in smpc.simulate(job, ring=ring, input_parties=1):
        assert torch.equal(out, values)
