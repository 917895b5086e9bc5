"""Logistic regression of a secret 0/1 label on secret rows, fitted by Newton's method (IRLS).

The rows (features and label) stay secret-shared throughout; the coefficients stay secret until
the fit has converged, then the coefficients and their standard errors open together.

How it runs, and why:

- The features are standardised inside MPC first (secret column means and 1 / standard
  deviation, one batched ``rsqrt``), so Newton's matrix is well scaled whatever the features'
  magnitudes: a feature of bank balances up to 1e9 and a 0/1 flag fit side by side. Every
  standardised value is at most sqrt(n) in magnitude (Cauchy-Schwarz), a bound that holds by
  construction. Coefficients are mapped back to the features' units at the end, inside MPC.
- The Hessian X^T W X is a sum over rows: the per-row products x_j x_k of the standardised
  features are formed once (one multiplication of n p (p+1) / 2 elements), after which every
  iteration gets X^T W X and the gradient X^T (y - mu) from one batched matrix product
  [w; y - mu] @ [products | X] whose message is 2 (q + p + 1) elements, whatever n is.
- The sigmoid is ``SecretTensor.sigmoid`` (exp and a Goldschmidt reciprocal on the 128-bit
  ring): error 3e-10 + 1 unit absolute (``smpc.protocols.functions.sigmoid``); measured
  1.2e-9 at the 30 fractional bits used here, over [-40, 40] (tests/test_logistic.py).
- (X^T W X / n)^-1 comes from a fixed number K of Newton-Schulz iterations G <- G (2I - A G),
  started at G = alpha I with alpha = 4 / (p + 1), which every eigenvalue of A = X^T W X / n
  stays under (its diagonal is at most 1/4), run on A + delta I with delta = 2^-20. The
  ridge keeps every eigenvalue at least delta although A's fixed-point entries carry
  rounding noise (about 2^-30 each): without it a singular A could have a tiny negative
  eigenvalue, along which Newton-Schulz diverges doubly exponentially instead of stopping.
  It does not move the fit: the gradient is the likelihood's own, so the iterations still
  stop where it is zero (the ridge only changes the step, by a factor delta / lambda_min).
  The standard errors use A itself: after convergence three more Newton-Schulz steps on A
  polish G (residual (delta / (lambda_min + delta))^8).
- After each Newton step one bit opens: "stop". It is 1 when every |step| < ``tol`` (converged),
  when a standardised coefficient exceeds ``max_coefficient``, or when delta tr(G) >= 1/2,
  which holds once an eigenvalue of A is below about delta: at the first iteration (all
  weights 1/4, so A depends on the design only) the design is singular (a feature is a
  linear combination of others); later the weights have vanished along some direction, the
  mark of separation, as is a coefficient beyond ``max_coefficient``. After the loop three
  bits open: which of these ended it. Only a converged fit opens coefficients and standard
  errors.

Leakage: n (the number of rows, from the shapes), p, the number of iterations (one opened bit
per iteration), why the fit stopped, which features are constant (one bit per feature, opened
before the fit), and, if it converged, the coefficients and their standard errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from smpc.errors import InputError, RangeError, SmpcError
from smpc.secret import SecretTensor, cat

NEWTON_SCHULZ_STEPS = 23
"""Newton-Schulz iterations per Newton step: G converges along eigenvalues with alpha lambda
>= 2^-19 (alpha lambda 2^23 >= 16: residual e^-16), and alpha 2^23 (p + 1) 2 stays within
what a 30-bit truncated product allows (the most G can grow to in 23 doublings)."""
POLISH_STEPS = 3
"""Newton-Schulz steps on A itself (without the ridge) for the standard errors."""
RIDGE = 2.0**-20
"""delta: added to A's diagonal during the iterations (see the module docstring)."""
SINGULAR_TRACE = 0.5
"""delta tr(G) at or above this: A has an eigenvalue of about delta or less (singular)."""
CONSTANT_SPREAD = 2.0**-12
"""A feature whose standard deviation is below this (in the units it was shared in, which
the caller scales to |x| <= 1) is constant for the fit: it cannot be standardised."""
WORK_BITS = 20
"""Fractional bits of the standardised features."""
FINE_BITS = 30
"""Fractional bits of mu, the weights, the gradient, the coefficients and Newton-Schulz."""
COVARIANCE_BITS = 16
"""Fractional bits of the map back to the features' units in the covariance (1/sd >= 1:
relative error 2^-16 at most)."""


MAX_ROWS = 2**18
"""The most rows a fit takes: X^T W X is one 30 x 20-bit product summed over n rows of values
up to n (standardised squares), which probabilistic truncation handles while n^2 2^50 < 2^87."""


def bounded_view(x: SecretTensor, bound: float) -> SecretTensor:
    """``x`` under a tighter public bound that holds by construction (a standardised value is
    at most sqrt(n), a weight at most 1/4, ...): worst-case propagation through sums and
    matrix products would otherwise exceed what truncation allows."""
    out = SecretTensor(x.ctx, x.shares, x.frac_bits, float(bound), x.origin)
    out.bound_known = x.bound_known
    return out


class FitRefused(InputError):
    """The fit stopped without coefficients; ``reason`` is one of "constant", "separation",
    "singular", "max_iter"."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class LogisticFit:
    """A converged fit: intercept first, then one coefficient per feature, in the units the
    features had before ``scale`` was applied."""

    names: list[str]
    coefficients: np.ndarray
    std_errors: np.ndarray
    iterations: int
    rows: int
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            name: {"estimate": float(b), "std_error": float(s)}
            for name, b, s in zip(self.names, self.coefficients, self.std_errors, strict=True)
        }


def iteration_rounds(p: int) -> int:
    """Rounds of one Newton iteration with p features: the linear predictor (1), the sigmoid
    (18), the weights (1), X^T W X and the gradient (1), their scaling by 1/n (1),
    Newton-Schulz (2 per step), the step (1), the comparisons (10), the product tree over
    2(p+1)+1 bits, the stop bit (1) and its opening (1). Independent of n."""
    return 35 + 2 * NEWTON_SCHULZ_STEPS + math.ceil(math.log2(2 * (p + 1) + 1))


def _rows(x: SecretTensor) -> int:
    return 0 if x.shape is None else int(x.shape[0])


def _expand(x: SecretTensor, shape) -> SecretTensor:
    """A (1, p) or (p,) secret broadcast to ``shape`` (local)."""
    if x.shares is None:
        return x
    return x._new(x.shares.reshape((1,) + tuple(x.shape[-1:])).expand(tuple(shape)))


def _ones(ctx, n: int, frac_bits: int) -> SecretTensor:
    return SecretTensor.from_public(ctx, torch.ones(n, 1, dtype=torch.float64), frac_bits=frac_bits)


def _pairs(p: int) -> tuple[list[int], list[int]]:
    left, right = [], []
    for j in range(p):
        for k in range(j, p):
            left.append(j)
            right.append(k)
    return left, right


def _all_of(bits: SecretTensor) -> SecretTensor:
    """Row-wise AND of a (r, m) secret 0/1 matrix by a product tree (ceil(log2 m) rounds,
    every row in the same messages)."""
    while bits.shape is None or bits.shape[1] > 1:
        if bits.shares is None:  # a rank without shares follows the same rounds
            break
        m = bits.shape[1]
        half = m // 2
        product = bits[:, :half] * bits[:, half : 2 * half]
        product.bound = 1.0
        bits = cat([product, bits[:, 2 * half :]], dim=1) if m % 2 else product
    return bits


def _standardise(x: SecretTensor, names: list[str]):
    """(z, mean, inv_sd): the standardised features at WORK_BITS, bounded by sqrt(n)."""
    ctx = x.ctx
    n = _rows(x)
    p = len(names)
    mean = x.sum(0) * (1.0 / max(n, 1))
    mean = bounded_view(mean, x.bound)
    centred = x - _expand(mean, (n, p))
    centred = bounded_view(centred, 2 * x.bound)
    var = centred.dot(centred, dim=0) * (1.0 / max(n, 1))
    var = bounded_view(var, 4 * x.bound**2)
    constant = (var < CONSTANT_SPREAD**2).reveal()
    if constant is not None and bool((constant > 0).any()):
        which = [names[j] for j in range(p) if constant[j] > 0]
        raise FitRefused("constant", f"logistic regression: feature(s) {', '.join(which)} are constant across the "
                         "pooled rows (no variation to estimate a coefficient from); leave them out")
    if constant is None and ctx.is_compute:
        raise SmpcError("logistic regression: a compute party did not receive the constant-feature test")
    inv_sd = var.rsqrt(lower=CONSTANT_SPREAD**2, frac_bits=FINE_BITS)
    centred = centred.rescale(FINE_BITS) if centred.frac_bits > FINE_BITS else centred
    z = centred * _expand(inv_sd, (n, p))
    z = z.rescale(WORK_BITS) if z.frac_bits > WORK_BITS else z
    return bounded_view(z, math.sqrt(max(n, 1)) * (1 + 1e-6) + 1e-3), mean, inv_sd


def fit_logistic(
    x: SecretTensor,
    y: SecretTensor,
    *,
    names: list[str] | None = None,
    scale=None,
    max_iter: int = 25,
    tol: float = 1e-7,
    max_coefficient: float = 30.0,
    rows: int | None = None,
    to=None,
) -> LogisticFit | None:
    """Logistic regression of the secret 0/1 label ``y`` (n,) on the secret features ``x``
    (n, p), with an intercept, by IRLS; the fit opens to the ranks in ``to`` (default: every
    party), None elsewhere.

    ``scale``: public per-feature factors the features were multiplied by before sharing
    (e.g. 1 / declared bound, so that |x| <= 1); coefficients and standard errors are reported
    per unit of the unscaled feature. ``tol``: the largest |Newton step| of a standardised
    coefficient at which the fit counts as converged. ``max_coefficient``: a standardised
    coefficient beyond it (odds multiplied by e^30 per standard deviation) means the
    likelihood has no finite maximum (separation). ``rows``: n, which a rank without shares
    (an input party receiving the fit) cannot see (``share_rows`` returns the counts).
    Raises ``FitRefused`` (an ``InputError``) on every party for a constant feature,
    separation, a singular X^T W X, or no convergence within ``max_iter``: no coefficient opens.
    Leakage: see the module docstring: n, p, the iterations, the reason for stopping, which
    features are constant, and the fitted coefficients with their standard errors.
    Cost: a fixed start (standardisation: two products, a 10-round comparison, a 22-round
    rsqrt, then the n p (p+1)/2 row products) and per iteration a fixed number of rounds,
    independent of n (``iteration_rounds``); the per-row messages of an iteration are the
    linear predictor, the sigmoid and the weights (n elements each).
    Error: the sigmoid's 3e-10 + 2^-30 per row; coefficients land within about 1e-6 of the
    exact maximum-likelihood estimate, relative to max(1, |coefficient|), for
    well-conditioned designs (tests/test_logistic.py)."""
    ctx = x.ctx
    n = _rows(x) if x.shape is not None else int(rows or 0)
    if x.shape is not None and rows is not None and int(rows) != n:
        raise SmpcError(f"logistic regression: rows={rows}, but the features have {n} rows")
    if x.shape is None and not rows:
        raise SmpcError("logistic regression: a rank without shares needs rows= (the number of rows)")
    if n > MAX_ROWS:
        raise RangeError(f"logistic regression: {n} rows exceed the {MAX_ROWS} a fit takes (its sums over rows "
                         "must stay truncatable in the 128-bit ring)")
    if x.shape is not None:
        p = int(x.shape[1])
    elif names is not None or scale is not None:  # a rank without shares learns p from these
        p = len(names) if names is not None else len(scale)
    else:
        raise SmpcError("logistic regression: a rank without shares needs names= or scale= to know the features")
    names = list(names) if names is not None else [f"x{j}" for j in range(p)]
    if len(names) != p:
        raise SmpcError(f"logistic regression: {len(names)} names for {p} features")
    scale_t = np.ones(p) if scale is None else np.asarray(scale, dtype=np.float64).reshape(p)
    if y.frac_bits != 0 or y.bound > 1:
        raise SmpcError("logistic regression: the label must be a secret 0/1 integer (frac_bits 0, bound 1)")
    if max_iter < 1:
        raise SmpcError("logistic regression: max_iter must be at least 1")

    z, mean, inv_sd = _standardise(x, names)
    q = p + 1
    design = cat([_ones(ctx, n, WORK_BITS), z], dim=1)  # (n, q)
    design = bounded_view(design, z.bound)
    left, right = _pairs(p)
    products = z[:, left] * z[:, right]  # one round: every row's x_j x_k, j <= k
    products = bounded_view(products, float(max(n, 1)))
    # rows of X^T W X: [1 | z_j | z_j z_k] hold every entry of the symmetric matrix
    stacked = cat([design, products], dim=1)  # (n, q + p(p+1)/2)
    stacked = bounded_view(stacked, float(max(n, 1)))
    hess_index = _hessian_index(p)

    beta = SecretTensor.from_public(ctx, torch.zeros(q, 1, dtype=torch.float64), frac_bits=FINE_BITS)
    beta = bounded_view(beta, max_coefficient)
    alpha = 4.0 / q
    identity = torch.eye(q, dtype=torch.float64)
    iterations = 0
    status = None
    inverse = hess = None
    costs = []
    for _ in range(max_iter):
        iterations += 1
        before = ctx.comm_stats()
        eta = design @ beta  # (n, 1)
        eta = bounded_view(eta, max_coefficient * q * design.bound)
        mu = eta.sigmoid(frac_bits=FINE_BITS).reshape(n, 1)
        weight = mu - mu * mu  # mu (1 - mu) <= 1/4
        weight = bounded_view(weight, 0.25)
        residual = y.reshape(n, 1) - mu
        residual = bounded_view(residual, 1.0)
        left_rows = cat([weight, residual], dim=1).T  # (2, n)
        sums = left_rows.matmul(stacked)  # (2, q + p(p+1)/2): X^T W X entries and the gradient
        sums = bounded_view(sums, float(max(n, 1)))  # |sum w z_j z_k| <= n/4, |sum (y - mu) z_j| <= n
        scaled = sums * (1.0 / max(n, 1))
        hess = bounded_view(_symmetric(scaled[0], hess_index, q), 0.2501)  # A: entries <= 1/4
        grad = bounded_view(scaled[1, :q].reshape(q, 1), 1.0)
        inverse = _newton_schulz(hess + identity * RIDGE, _initial(ctx, alpha, identity), NEWTON_SCHULZ_STEPS,
                                 alpha)
        step = inverse.matmul(grad)  # (q, 1)
        step = bounded_view(step, alpha * 2.0**NEWTON_SCHULZ_STEPS * q)
        beta_new = beta + step
        trace = inverse[torch.arange(q), torch.arange(q)].sum()
        # one batched comparison for the three reasons to stop, then one opened bit
        below = cat([
            step.reshape(q) - tol, -step.reshape(q) - tol,
            beta_new.reshape(q) - max_coefficient, -beta_new.reshape(q) - max_coefficient,
            trace.reshape(1) - SINGULAR_TRACE / RIDGE,
        ]) < 0
        # both ANDs in one product tree: [every |step| < tol (padded with a public 1); every
        # |coefficient| within max_coefficient, and delta tr(G) small]
        pad = SecretTensor.from_public(ctx, torch.ones(1, dtype=torch.float64), frac_bits=0)
        both = _all_of(cat([below[: 2 * q], pad, below[2 * q :]]).reshape(2, 2 * q + 1))
        converged, fine_state = both[0], both[1]
        stop = 1 - (1 - converged) * fine_state
        stop.bound = 1.0
        opened = stop.reveal()
        after = ctx.comm_stats()
        costs.append((after["rounds"] - before["rounds"], after["bytes_sent"] - before["bytes_sent"]))
        beta = bounded_view(beta_new, max_coefficient)
        status = (converged, below[-1:], fine_state)
        if opened is None:
            raise SmpcError("logistic regression: the stop bit did not reach this party")
        if float(opened.reshape(-1)[0]) > 0.5:
            break
    reasons = cat([bit.reshape(1) for bit in status]).reveal()
    done, invertible, within = (bool(v > 0.5) for v in reasons.tolist())
    if not invertible and iterations == 1:
        raise FitRefused("singular", "logistic regression: X^T X is singular (a feature is a linear combination "
                         "of others, or nearly so); no coefficients are revealed")
    if not within:
        raise FitRefused("separation", "logistic regression: the fit diverges (perfect or quasi-perfect "
                         "separation: some combination of the features predicts the label exactly, so the likelihood "
                         "has no maximum); no coefficients are revealed")
    if not done:
        raise FitRefused("max_iter", f"logistic regression: did not converge within {max_iter} iterations; no "
                         "coefficients are revealed")
    polished = _newton_schulz(hess, inverse, POLISH_STEPS, alpha)
    fit = _finish(ctx, beta, polished, mean, inv_sd, names, scale_t, n, iterations, to)
    if fit is not None:
        fit.details["iteration_costs"] = costs
    return fit


def _hessian_index(p: int) -> torch.Tensor:
    """For each entry (j, k) of the (p+1, p+1) matrix, its column in [1 | z | z_j z_k]."""
    q = p + 1
    left, right = _pairs(p)
    pair_col = {(a, b): q + i for i, (a, b) in enumerate(zip(left, right, strict=True))}
    index = torch.empty(q, q, dtype=torch.int64)
    for j in range(q):
        for k in range(q):
            if j == 0 or k == 0:
                index[j, k] = max(j, k)
            else:
                a, b = min(j, k) - 1, max(j, k) - 1
                index[j, k] = pair_col[(a, b)]
    return index


def _symmetric(row: SecretTensor, index: torch.Tensor, q: int) -> SecretTensor:
    return row[index.reshape(-1)].reshape(q, q) if row.shares is not None else row


def _initial(ctx, alpha: float, identity: torch.Tensor) -> SecretTensor:
    return SecretTensor.from_public(ctx, identity * alpha, frac_bits=FINE_BITS)


def _newton_schulz(a: SecretTensor, g: SecretTensor, steps: int, alpha: float) -> SecretTensor:
    """``steps`` of G <- G (2I - A G) from ``g``, at 30 fractional bits. From alpha I, the
    eigenvalues of G_k are at most alpha 2^k (and 1 / lambda) and those of A G_k lie in
    [0, 1]; the bounds below hold by construction. Cost: 2 rounds per step (two products
    of (q, q) matrices)."""
    q = a.shape[0] if a.shape is not None else 1
    identity = torch.eye(q, dtype=torch.float64)
    bound = max(g.bound, alpha)
    for _ in range(steps):
        product = bounded_view(a.matmul(g), 1.01)
        bound = min(bound * 2.0, alpha * 2.0**NEWTON_SCHULZ_STEPS) * 1.001
        g = bounded_view(g.matmul(bounded_view(2.0 * identity - product, 2.02)), bound)
    return g


def _finish(ctx, beta, inverse, mean, inv_sd, names, scale, n, iterations, to) -> LogisticFit | None:
    """Map the standardised fit back to the features' units inside MPC, then open it.

    beta_j = b_j / sd_j for a feature, b_0 - sum_j b_j mean_j / sd_j for the intercept; the
    covariance is T (A^-1 / n) T^T with T that linear map. The products are exact (never
    truncated), so their worst-case bounds need only fit the ring: T at 30 fractional bits
    for the coefficients, 16 for the covariance (T G T^T: 30 + 2 x 16 bits)."""
    p = len(names)
    q = p + 1
    inv_sd = inv_sd.reshape(p)
    inv_sd = inv_sd.rescale(FINE_BITS) if inv_sd.frac_bits > FINE_BITS else inv_sd
    mean = mean.reshape(p)
    shift = bounded_view(mean * inv_sd, mean.bound * inv_sd.bound)  # mean_j / sd_j

    def transform(bits: int) -> SecretTensor:  # rows: [1, -shift], then e_j / sd_j
        sd_part = inv_sd.rescale(bits) if inv_sd.frac_bits > bits else inv_sd
        shift_part = shift.rescale(bits) if shift.frac_bits > bits else shift
        top = cat([SecretTensor.from_public(ctx, torch.ones(1, 1, dtype=torch.float64), frac_bits=bits),
                   -shift_part.reshape(1, p)], dim=1)
        left = SecretTensor.from_public(ctx, torch.zeros(p, 1, dtype=torch.float64), frac_bits=bits)
        bottom = cat([left, _diag(sd_part, p)], dim=1)
        return bounded_view(cat([top, bottom], dim=0), max(1.0, shift.bound, inv_sd.bound))

    t_fine, t_work = transform(FINE_BITS), transform(COVARIANCE_BITS)
    coefficients = t_fine.matmul(beta, exact=True)
    variances = t_work.matmul(inverse, exact=True).dot(t_work, dim=1, exact=True)
    f = max(coefficients.frac_bits, variances.frac_bits)
    opened = cat([coefficients.reshape(q).rescale(f), variances.reshape(q).rescale(f)]).reveal(to)
    if opened is None:
        return None
    values = opened.numpy()
    unit = np.concatenate([[1.0], np.asarray(scale, dtype=np.float64)])
    coefficients = values[:q] * unit
    std_errors = np.sqrt(np.maximum(values[q:], 0.0) / n) * unit
    return LogisticFit(["intercept", *names], coefficients, std_errors, iterations, n)


def _diag(v: SecretTensor, p: int) -> SecretTensor:
    """diag(v) for a secret (p,) vector (local: a public 0/1 matrix times broadcast copies)."""
    rows = _expand(v, (p, p))  # every row is v
    return rows * torch.eye(p, dtype=torch.float64)


__all__ = ["FitRefused", "LogisticFit", "fit_logistic", "iteration_rounds"]
