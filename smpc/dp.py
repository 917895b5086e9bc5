"""Differentially private release: an exact integer sampler of the discrete Laplace
distribution, noise that two compute parties contribute on shares, and what a noisy value
says about the true one (scale, standard deviation, 95 % interval).

Mechanism. A statistic vector x (integers: counts, sums of exact units) whose L1 sensitivity
(the most it changes when one customer's rows are added to or removed from one bank) is at
most Delta is released as x + Z_1 + Z_2, where Z_1 is drawn by compute party 1 and Z_2 by
compute party 2, each independently from the discrete Laplace distribution with scale
t = Delta / epsilon, P(Z = z) = (1 - p) / (1 + p) p^|z| with p = exp(-1/t), and secret-shared
by its drawer in one round (``smpc.share_each``); the sum is opened on shares, so the
recipients learn x + Z_1 + Z_2 only.

Claim: against any single compute party and any result recipient (semi-honest, honest
majority), the released vector is epsilon-DP (up to delta <= 2^-80 from the cut tails,
below). Proof. A recipient that is no compute party sees only y = x + Z_1 + Z_2. Compute party
0 sees shares, which are uniformly random and independent of x (replicated secret sharing),
and y. Compute party 1 sees shares and y, and knows Z_1; party 2 the same with Z_2. In every
case the view is a randomised function f(y', R) of y' = x + Z_j for a contribution Z_j the
viewer does not know (j = 2 for party 1, j = 1 for parties 0 and 2 and any recipient) and of
randomness R independent of x and Z_j (the shares, the other contribution). y' = x + Z_j is
the discrete Laplace mechanism at scale Delta/epsilon, epsilon-DP: for neighbours x, x' with
||x - x'||_1 <= Delta, P(x + Z = y) / P(x' + Z = y) = p^(||y-x||_1 - ||y-x'||_1) <= p^-Delta
= e^epsilon. Post-processing keeps it. Two contributions suffice for one corrupt party:
whichever party it is, one full-scale contribution is unknown to it. The third party
contributing as well would only add variance. Cost of that: the released noise has twice
the variance of one contribution, 2 * 2p / (1 - p)^2 (a trusted curator's single draw has
half of it), and the 95 % interval is about sqrt(2) wider.

Why not one draw inside MPC: sampling a geometric variable on shares needs comparisons of
shared uniform values, tens of rounds; per-party contributions cost one sharing round.

Sampling is exact (Canonne, Kamath, Steinke 2020, Algorithm 2): uniform integers from the
operating system's CSPRNG (``secrets``), Bernoulli(exp(-gamma)) by rational arithmetic, no
floating point (Mironov 2012). Its running time depends on the draw (a rejection loop); the
draw stays in its party, and rounds do not wait on it beyond the sharing message.

Tails: a contribution is redrawn while |Z| > 70 t (probability e^-70 < 2^-100 per draw) so
the noisy value has a public bound and opens without wrapping. Conditioning on that changes
the distribution by less than 2^-99 in total variation, which gives (epsilon, delta)-DP with
delta <= 2^-80 for epsilon <= MAX_EPSILON; the tests check the exact pmf.
"""

from __future__ import annotations

import functools
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from smpc.errors import InputError
from smpc.secret import SecretTensor, share_each

NOISE_RANKS = (1, 2)
"""The compute parties that draw a contribution each (see the module docstring)."""

MAX_EPSILON = 10.0
"""Largest epsilon a job may spend: beyond it the noise says next to nothing and the tail
cut's delta bound (2^-80) would no longer hold."""

MIN_EPSILON = 0.001
"""Smallest epsilon: below it the noise (and its public bound) outgrows any statistic."""

TAIL_SCALES = 70
"""A contribution lies within TAIL_SCALES scales of zero (redrawn otherwise)."""

MECHANISM = "discrete_laplace"


# ----- exact sampling ---------------------------------------------------------------------
def _bernoulli_exp_fraction(num: int, den: int, rng) -> bool:
    """True with probability exp(-num/den) for 0 <= num <= den: the first k with a failed
    Bernoulli(num / (den k)) is odd with exactly that probability."""
    k = 1
    while rng.randrange(den * k) < num:
        k += 1
    return k % 2 == 1


def bernoulli_exp(gamma: Fraction, rng) -> bool:
    """True with probability exp(-gamma) for a rational gamma >= 0, exactly
    (Canonne-Kamath-Steinke Algorithm 1): exp(-1) once per whole unit, then the fraction."""
    gamma = Fraction(gamma)
    whole = math.floor(gamma)
    for _ in range(whole):
        if not _bernoulli_exp_fraction(1, 1, rng):
            return False
    rest = gamma - whole
    return _bernoulli_exp_fraction(rest.numerator, rest.denominator, rng)


def discrete_laplace(scale: Fraction, rng=None) -> int:
    """One draw of P(z) proportional to exp(-|z| / scale) (scale > 0 rational), exactly, from
    ``rng.randrange`` (default: the operating system's CSPRNG), redrawn beyond
    ``TAIL_SCALES`` scales (Canonne-Kamath-Steinke Algorithm 2)."""
    rng = rng or secrets.SystemRandom()
    scale = Fraction(scale)
    t, s = scale.numerator, scale.denominator  # exp(-|z| s / t)
    cut = tail_bound(scale)
    while True:
        u = rng.randrange(t)
        if not _bernoulli_exp_fraction(u, t, rng):
            continue
        v = 0
        while _bernoulli_exp_fraction(1, 1, rng):
            v += 1
        y = (u + t * v) // s
        negative = rng.randrange(2) == 1
        if negative and y == 0:
            continue
        z = -y if negative else y
        if abs(z) <= cut:
            return z


def tail_bound(scale: Fraction) -> int:
    """The largest |contribution|: TAIL_SCALES scales, rounded up."""
    return math.ceil(Fraction(scale) * TAIL_SCALES)


# ----- what a noisy value says --------------------------------------------------------------
@dataclass(frozen=True)
class Noise:
    """The released noise of one statistic: ``draws`` independent discrete Laplace
    contributions of ``scale`` (2, Z_1 + Z_2, for a statistic opened once; 2 m for the sum of
    m such statistics, e.g. a merged bin)."""

    scale: Fraction
    draws: int = 2

    @property
    def p(self) -> float:
        return math.exp(-1 / float(self.scale))

    def pmf(self, z: int) -> float:
        """P(Z_1 + Z_2 = z) = ((1-p)/(1+p))^2 p^|z| (|z| + 1 + 2p^2/(1-p^2)) (two draws only)."""
        if self.draws != 2:
            raise ValueError("Noise.pmf is the closed form of two draws")
        p = self.p
        c = (1 - p) / (1 + p)
        return c * c * p ** abs(z) * (abs(z) + 1 + 2 * p * p / (1 - p * p))

    @property
    def variance(self) -> float:
        """``draws`` contributions of 2p/(1-p)^2 each."""
        p = self.p
        return self.draws * 2 * p / (-math.expm1(-1 / float(self.scale))) ** 2

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)

    def tail(self, q: int) -> float:
        """P(|noise| > q): in closed form for two draws, by ``_chernoff_tail`` (an upper
        bound) for more."""
        if self.draws != 2:
            return self._chernoff_tail(q)
        p, one_minus = self.p, -math.expm1(-1 / float(self.scale))
        c = (1 - p) / (1 + p)
        k = 2 * p * p / (1 - p * p)
        m = q + 1
        pm = math.exp(-m / float(self.scale))
        geometric = pm / one_minus                        # sum_{s>=m} p^s
        weighted = pm * (m * one_minus + p) / one_minus**2  # sum_{s>=m} s p^s
        return 2 * c * c * (weighted + (1 + k) * geometric)

    def _chernoff_tail(self, q: int) -> float:
        """2 min_l M(l)^draws e^(-l (q + 1)) >= P(|noise| > q), over the moment generating
        function M(l) = (1-p)^2 / ((1 - p e^l)(1 - p e^-l)) of one draw, 0 <= l < 1/scale."""
        a = 1 / float(self.scale)
        log_one_minus = math.log(-math.expm1(-a))

        def exponent(lam: float) -> float:  # convex in lam: a ternary search finds its minimum
            log_mgf = 2 * log_one_minus - math.log(-math.expm1(lam - a)) - math.log(-math.expm1(-lam - a))
            return self.draws * log_mgf - lam * (q + 1)

        lo, hi = 0.0, a * (1 - 1e-12)
        for _ in range(200):
            m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
            if exponent(m1) < exponent(m2):
                hi = m2
            else:
                lo = m1
        return min(1.0, 2 * math.exp(min(exponent(lo), 0.0)))

    def _chernoff_width(self, level: float) -> int:
        return _least_width(self._chernoff_tail, self.scale, level)

    def half_width(self, level: float = 0.95) -> int:
        """The least q with P(|noise| <= q) >= level: [noisy - q, noisy + q] holds the true
        value with at least that probability. Two draws: from the closed form. More: from
        the distribution of the sum, computed from its characteristic function
        ((1-p)^2 / (1 - 2p cos t + p^2))^draws by an FFT on a circle wider than twice the
        Chernoff half width at level 1 - 1e-12 (so the folded-in tails weigh under 1e-12),
        with 1e-9 of margin for rounding; where that circle would pass 2^22 points, the
        Chernoff half width itself (wider, still at least ``level``)."""
        if self.draws != 2:
            return _summed_half_width(Fraction(self.scale), self.draws, level)
        return _least_width(self.tail, self.scale, level)


def _least_width(tail, scale, level: float) -> int:
    """The least q >= 0 with tail(q) <= 1 - level, for a tail that falls with q: doubling
    from the scale, then bisection."""
    lo, hi = 0, max(1, math.ceil(float(scale)))
    while tail(hi) > 1 - level:
        lo, hi = hi, 2 * hi
    while lo < hi:
        mid = (lo + hi) // 2
        if tail(mid) > 1 - level:
            lo = mid + 1
        else:
            hi = mid
    return hi


MAX_FFT_POINTS = 2**22


@functools.lru_cache(maxsize=256)
def _summed_half_width(scale: Fraction, draws: int, level: float) -> int:
    noise = Noise(scale, draws)
    reach = noise._chernoff_width(1 - 1e-12)
    size = 1 << (2 * reach + 2).bit_length()
    if size > MAX_FFT_POINTS:
        return noise._chernoff_width(level)
    p = noise.p
    one_minus = -math.expm1(-1 / float(scale))
    theta = 2 * np.pi * np.arange(size // 2 + 1) / size
    phi = (one_minus**2 / (one_minus**2 + 2 * p * (1 - np.cos(theta)))) ** draws  # 1 - 2p cos t + p^2
    pmf = np.fft.irfft(phi, n=size)
    inside = pmf[0] + 2 * np.cumsum(pmf[1 : reach + 1])  # P(|Z| <= q) for q = 0..reach (symmetric)
    inside = np.concatenate([[pmf[0]], inside])
    return int(np.flatnonzero(inside >= level + 1e-9)[0]) if (inside >= level + 1e-9).any() else reach


def scales(epsilon: float, sensitivities: Sequence[int | Fraction]) -> list[Fraction]:
    """Per statistic group, the contribution scale when ``epsilon`` is split evenly over the
    groups (basic sequential composition): group i of L1 sensitivity Delta_i gets
    Delta_i * groups / epsilon. A group may hold many cells (the bins of a histogram) when one
    customer's rows change the group by at most Delta_i in L1 in total."""
    eps = check_epsilon(epsilon)
    n = len(sensitivities)
    return [Fraction(d) * n / eps for d in sensitivities]


def check_epsilon(epsilon: float) -> Fraction:
    """``epsilon`` as the exact decimal it prints as; InputError outside (0, MAX_EPSILON]."""
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and MIN_EPSILON <= epsilon <= MAX_EPSILON):
        raise InputError(f"parameter 'dp_epsilon' must be in [{MIN_EPSILON:g}, {MAX_EPSILON:g}], got {epsilon!r}")
    return Fraction(repr(float(epsilon)))


# ----- on shares --------------------------------------------------------------------------
def shared_noise(ctx, element_scales: Sequence[Fraction], rng=None) -> SecretTensor:
    """The noise Z_1 + Z_2 on shares, one element per scale: compute parties ``NOISE_RANKS``
    each draw and share one discrete Laplace contribution per element. Every rank calls it
    (SPMD); ranks without shares get a secret without shares.
    Leakage: a contribution to its drawer only. Cost: 1 round; parties 1 and 2 each send one
    ring element per element to one party. ``rng``: a ``randrange`` source for tests
    (default: ``secrets``)."""
    m = len(element_scales)
    cut = max(tail_bound(s) for s in element_scales)
    mine = [discrete_laplace(s, rng) for s in element_scales] if ctx.rank in NOISE_RANKS else None
    parts = share_each(ctx, mine, list(NOISE_RANKS), shape=(m,), bound=float(cut), frac_bits=0, name="privacy noise")
    return parts[0] + parts[1]


def noisy_open(ctx, values: SecretTensor, element_scales: Sequence[Fraction], to, rng=None) -> np.ndarray | None:
    """Open the integer-mode secret vector ``values`` plus noise of ``element_scales`` (one per
    element, ``shared_noise``) to the ranks ``to``. Returns the noisy values (object array of
    ints) on the recipients, None elsewhere.

    Leakage: the noisy values, to the recipients; a contribution to its drawer only.
    Cost: 2 rounds: one in which parties 1 and 2 each share one ring element per element
    (sent to one party), one opening ``values``' elements (bytes by the bound, widened by
    the noise bound).
    """
    flat = values.reshape(-1)
    if len(element_scales) != flat.numel():
        raise InputError(f"noisy_open: {len(element_scales)} scales for {flat.numel()} values")
    noise = shared_noise(ctx, element_scales, rng)
    if not ctx.is_compute and ctx.rank not in to:
        return None
    return (flat + noise).reveal_int(to)


def statistic(noisy: int, scale: Fraction, unit: int = 1, draws: int = 2) -> dict:
    """A released noisy value with its noise: value, noise scale and standard deviation per
    contribution sum, and the 95 % interval for the true value (in units of 1/``unit``);
    ``draws``: how many contributions of ``scale`` it holds (2 per statistic summed)."""
    noise = Noise(scale, draws)
    q = noise.half_width()
    return {"value": float(Fraction(noisy, unit)) if unit != 1 else int(noisy),
            "noise_scale": float(scale / unit), "noise_std": noise.std / unit,
            "interval95": [float(Fraction(noisy - q, unit)), float(Fraction(noisy + q, unit))] if unit != 1
            else [int(noisy - q), int(noisy + q)]}


def ratio_interval(num: int, num_scale: Fraction, den: int, den_scale: Fraction, lo: float, hi: float,
                   num_unit: int = 1) -> list[float]:
    """A >= 95 % interval for num_true / den_true (a mean or a rate), clipped to [lo, hi]:
    both noisy values lie within their 97.5 % half widths of the truth with probability at
    least 95 % (union bound), and the ratio then lies between the corners of that box."""
    qn = Noise(num_scale).half_width(0.975)
    qd = Noise(den_scale).half_width(0.975)
    d_lo, d_hi = den - qd, den + qd
    if d_lo <= 0:
        return [lo, hi]
    corners = [Fraction(n, num_unit * d) for n in (num - qn, num + qn) for d in (d_lo, d_hi)]
    return [max(lo, float(min(corners))), min(hi, float(max(corners)))]


__all__ = ["MAX_EPSILON", "MECHANISM", "MIN_EPSILON", "NOISE_RANKS", "Noise", "bernoulli_exp", "check_epsilon",
           "discrete_laplace", "noisy_open", "shared_noise", "ratio_interval", "scales", "statistic", "tail_bound"]
