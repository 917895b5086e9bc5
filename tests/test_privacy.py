"""What a single party sees: every message it receives while sharing, multiplying and
truncating is uniformly distributed and the same whatever the secret (a constant vector and
random data give indistinguishable views). The transport is wrapped to record each party's
incoming messages; the statistics are chi-square tests with a fixed significance of 1e-9, so
a false failure is negligible while a real leak (e.g. an unmasked encoding) is rejected with
p ~ 0."""

from __future__ import annotations

import pytest
import recording
import torch

import smpc
from smpc.fixedpoint import DEFAULTS, encode
from smpc.ring import ring_for

P_MIN = 1e-9
N = 1 << 15


def run_recorded(fn, ring: int, world: int = 3, inputs: dict | None = None):
    """Run ``fn(ctx, **inputs[rank])`` on every rank in threads; return (results, received)."""
    return recording.run_recorded(fn, world, ring, args=lambda rank: (inputs or {}).get(rank, {}))


def view(received, prefix: str) -> list[tuple[int, str, torch.Tensor]]:
    return [m for m in received if m[1].startswith(prefix)]


# ----- statistics -----------------------------------------------------------------------------
def _chi2_sf(stat: float, df: int) -> float:
    return float(torch.special.gammaincc(torch.tensor(df / 2.0, dtype=torch.float64),
                                         torch.tensor(stat / 2.0, dtype=torch.float64)))


def uniform_p(samples: torch.Tensor) -> float:
    """Chi-square goodness of fit of byte values (0..255) to the uniform distribution."""
    counts = torch.bincount(samples.reshape(-1).to(torch.int64), minlength=256).to(torch.float64)
    expected = counts.sum() / 256
    return _chi2_sf(float(((counts - expected) ** 2 / expected).sum()), 255)


def same_distribution_p(a: torch.Tensor, b: torch.Tensor) -> float:
    """Chi-square test of homogeneity of two byte samples (2 x 256 contingency table)."""
    table = torch.stack([torch.bincount(s.reshape(-1).to(torch.int64), minlength=256) for s in (a, b)])
    table = table.to(torch.float64)
    keep = table.sum(0) > 0
    table = table[:, keep]
    expected = table.sum(1, keepdim=True) * table.sum(0, keepdim=True) / table.sum()
    return _chi2_sf(float(((table - expected) ** 2 / expected).sum()), table.shape[1] - 1)


def all_bytes(payload: torch.Tensor) -> torch.Tensor:
    return payload.contiguous().view(torch.uint8)


def top_bytes(payload: torch.Tensor, ring_bits: int) -> torch.Tensor:
    """The most significant byte of each ring element (where small or constant values show)."""
    high = payload if ring_bits == 64 else payload[1]
    return (high >> 56) & 0xFF


# ----- scenarios ------------------------------------------------------------------------------
# ring64 multiplies fixed-point values only at small precision and bounds (the capacity rules)
BOUND = {64: 4.0, 128: 1000.0}
FRAC = {64: 6, 128: None}
TRUNC = {64: 3, 128: 8}


def secret_values(kind: str, ring: int) -> torch.Tensor:
    bound = BOUND[ring]
    if kind == "constant":
        return torch.full((N,), 1.0, dtype=torch.float64)
    gen = torch.Generator().manual_seed(ring)  # test data only: smpc never uses torch generators
    return (torch.rand(N, generator=gen, dtype=torch.float64) * 2 - 1) * bound


def _share(ctx, x, owner):
    bits = ctx.ring.bits
    return smpc.share(ctx, x, owner=owner, bound=BOUND[bits], frac_bits=FRAC[bits])


def scenario_share(ctx, x=None):
    _share(ctx, x, 0)


def scenario_share_input_party(ctx, x=None):
    _share(ctx, x, 3)


def scenario_mul(ctx, x=None):
    a = _share(ctx, x, 0)
    b = _share(ctx, x, 0)
    a * b


def scenario_truncate(ctx, x=None):
    a = _share(ctx, x, 0)
    a.truncate(TRUNC[ctx.ring.bits])


# (scenario, world, step tag prefix, ranks that receive in that step)
SCENARIOS = {
    "share": (scenario_share, 3, "input0#", [1]),
    "share-from-input-party": (scenario_share_input_party, 4, "input3#", [1, 2]),
    "mul-with-truncation": (scenario_mul, 3, "mul", [1, 2]),
    "truncation": (scenario_truncate, 3, "trunc", [1, 2]),
}


def party_views(name: str, ring: int, kind: str) -> dict[int, list[torch.Tensor]]:
    fn, world, prefix, _ = SCENARIOS[name]
    owner = 3 if world == 4 else 0
    _, received = run_recorded(fn, ring, world, inputs={owner: {"x": secret_values(kind, ring)}})
    return {rank: [m[2] for m in view(received[rank], prefix)] for rank in range(world)}


@pytest.mark.parametrize("ring", [64, 128])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_single_party_views_are_uniform_and_independent_of_the_secret(name, ring):
    _, _, _, receivers = SCENARIOS[name]
    views = {kind: party_views(name, ring, kind) for kind in ("constant", "random")}
    for rank in receivers:
        const_msgs, rand_msgs = views["constant"][rank], views["random"][rank]
        assert const_msgs and len(const_msgs) == len(rand_msgs), f"rank {rank} received nothing in {name}"
        for c, r in zip(const_msgs, rand_msgs, strict=True):
            assert c.shape == r.shape and c.numel() == N * (ring // 64)
            for label, msg in (("constant", c), ("random", r)):
                assert uniform_p(all_bytes(msg)) > P_MIN, f"{name}: rank {rank}, {label} secret, bytes"
                assert uniform_p(top_bytes(msg, ring)) > P_MIN, f"{name}: rank {rank}, {label} secret, top bytes"
            assert same_distribution_p(top_bytes(c, ring), top_bytes(r, ring)) > P_MIN, (
                f"{name}: rank {rank} can tell a constant secret from random data")
    if name == "share-from-input-party":  # party 0 gets only the shape header
        header = views["constant"][0]
        assert len(header) == 1 and header[0].tolist() == [N]
    if name == "share":  # party 2 draws both its shares and gets only the shape
        header = views["constant"][2]
        assert len(header) == 1 and header[0].tolist() == [N]
    if name in ("mul-with-truncation", "truncation"):
        assert views["constant"][0] == [], "party 0 receives nothing in a fused truncation"


@pytest.mark.parametrize("ring", [64, 128])
def test_the_test_detects_a_leak(ring):
    """Negative control: the same statistics reject the plaintext encoding of the secrets."""
    r = ring_for(ring)
    f = DEFAULTS[ring].frac_bits
    const = encode(secret_values("constant", ring), r, f, BOUND[ring])
    rand = encode(secret_values("random", ring), r, f, BOUND[ring])
    assert uniform_p(all_bytes(const)) < P_MIN
    assert uniform_p(top_bytes(rand, ring)) < P_MIN
    assert same_distribution_p(all_bytes(const), all_bytes(rand)) < P_MIN


@pytest.mark.parametrize("ring", [64, 128])
def test_sharing_the_same_value_twice_sends_fresh_masks(ring):
    def job(ctx, x=None):
        smpc.share(ctx, x, owner=0, bound=10.0)
        smpc.share(ctx, x, owner=0, bound=10.0)

    _, received = run_recorded(job, ring, inputs={0: {"x": torch.zeros(64, dtype=torch.float64)}})
    first, second = (m[2] for m in view(received[1], "input0#"))  # party 1 receives the masked share
    assert not bool((first == second).any())
    assert [m[2].tolist() for m in view(received[2], "input0#")] == [[64], [64]]  # party 2: the shape


@pytest.mark.parametrize("ring", [64, 128])
@pytest.mark.parametrize("input_parties", [0, 1])
def test_reveal_to_rank0_sends_nothing_to_the_others(ring, input_parties):
    world = 3 + input_parties

    def job(ctx, x=None):
        s = smpc.share(ctx, x, owner=1, bound=100.0)
        return s.reveal(to=0)

    x = torch.linspace(-100, 100, 50, dtype=torch.float64)
    results, received = run_recorded(job, ring, world, inputs={1: {"x": x}})
    f = DEFAULTS[ring].frac_bits
    assert torch.equal(results[0], torch.round(x * 2.0**f) / 2.0**f)
    assert all(r is None for r in results[1:])
    reveals = {rank: view(received[rank], "reveal") for rank in range(world)}
    assert [m[0] for m in reveals[0]] == [2], "rank 0 hears from rank 2 only"
    for rank in range(1, world):
        assert reveals[rank] == [], f"rank {rank} was sent part of a value it may not see"
