"""Secure logistic regression (smpc.stats.logistic) against a float64 IRLS reference (the same
maximum-likelihood estimate as statsmodels' Logit, which is compared too)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import smpc
from smpc.protocols.division import cost_per_element
from smpc.stats.logistic import FitRefused, fit_logistic, iteration_rounds
from smpc.stats.rows import share_rows

GERMAN = Path(__file__).resolve().parents[1] / "examples" / "data" / "german_credit.csv"
GERMAN_BOUNDS = {"duration_in_month": 100.0, "credit_amount": 1e5, "age_in_years": 100.0,
                 "installment_rate_in_percentage_of_disposable_income": 10.0}


def reference_logit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coefficients, standard errors), intercept first, by Newton's method in float64 to
    convergence: the maximum-likelihood estimate and the inverse observed information."""
    d = np.column_stack([np.ones(len(x)), x])
    scale = np.abs(d).max(axis=0)
    ds = d / scale
    b = np.zeros(d.shape[1])
    for _ in range(200):
        mu = 1 / (1 + np.exp(-ds @ b))
        h = ds.T @ (ds * (mu * (1 - mu))[:, None])
        step = np.linalg.solve(h, ds.T @ (y - mu))
        b += step
        if np.abs(step).max() < 1e-15:
            break
    mu = 1 / (1 + np.exp(-ds @ b))
    cov = np.linalg.inv(ds.T @ (ds * (mu * (1 - mu))[:, None]))
    return b / scale, np.sqrt(np.diag(cov)) / scale


def secure_fit(parts, y_parts, bounds, **kwargs):
    """Each bank's (rows, labels) shared as rows scaled by 1 / bound; the fit on rank 0 with
    rank 0's per-iteration costs."""
    scale = 1.0 / np.asarray(bounds, dtype=np.float64)
    p = len(bounds)

    def job(ctx, rows=None, labels=None):
        x, _ = share_rows(ctx, [0, 1, 2], None if rows is None else rows * scale, width=p, bound=1.0,
                          frac_bits=30, name="features")
        y, _ = share_rows(ctx, [0, 1, 2], labels, width=1, bound=1.0, frac_bits=0, name="label")
        return fit_logistic(x, y.reshape(-1), scale=scale, **kwargs)

    inputs = {r: {"rows": parts[r], "labels": y_parts[r]} for r in range(3)}
    return smpc.simulate(job, inputs=inputs)


def test_banks_as_input_parties_receive_the_same_fit():
    """Four banks: every bank is an input party without shares and still receives the fit."""
    x, y = german()
    scale = 1.0 / np.asarray(list(GERMAN_BOUNDS.values()))
    owners = [3, 4, 5, 6]

    def job(ctx, rows=None, labels=None):
        features, counts = share_rows(ctx, owners, None if rows is None else rows * scale, width=4, bound=1.0,
                                      frac_bits=30)
        label, _ = share_rows(ctx, owners, labels, width=1, bound=1.0, frac_bits=0)
        return fit_logistic(features, label.reshape(-1), scale=scale, rows=sum(counts))

    inputs = {r: {} for r in range(3)}
    inputs.update({o: {"rows": xs, "labels": ys}
                   for o, xs, ys in zip(owners, np.array_split(x, 4), np.array_split(y, 4), strict=True)})
    results = smpc.simulate(job, inputs=inputs, input_parties=4)
    coef, se = reference_logit(x, y)
    for fit in results:
        assert np.abs(fit.coefficients - coef).max() < 1e-4
        assert np.abs(fit.std_errors / se - 1).max() < 1e-3


def split3(a):
    return np.array_split(a, 3)


def check_against_reference(x, y, fit):
    """Coefficients to 1e-4 absolute, or relative where a coefficient exceeds 1 in magnitude
    (an intercept of -104, from a feature whose mean is far from zero, is fixed point's
    ~1e-6 relative error away: up to 9.4e-5 over eight runs); standard errors to 1e-3."""
    coef, se = reference_logit(x, y)
    scale = np.maximum(1.0, np.abs(coef))
    assert (np.abs(fit.coefficients - coef) / scale).max() < 1e-4, (fit.coefficients, coef)
    assert np.abs(fit.std_errors / se - 1).max() < 1e-3, (fit.std_errors, se)
    model = sm.Logit(y, sm.add_constant(x, has_constant="add")).fit(disp=0, tol=1e-12, maxiter=100)
    assert (np.abs(fit.coefficients - model.params) / scale).max() < 1e-4
    assert np.abs(fit.std_errors / model.bse - 1).max() < 1e-3


def german():
    table = pd.read_csv(GERMAN)
    x = table[list(GERMAN_BOUNDS)].to_numpy(dtype=np.float64)
    y = (table["creditability"] == "bad").to_numpy(dtype=np.float64)
    return x, y


def test_german_credit_split_across_three_banks_matches_the_maximum_likelihood_fit():
    x, y = german()
    results = secure_fit(split3(x), split3(y), list(GERMAN_BOUNDS.values()),
                         names=list(GERMAN_BOUNDS))
    fit = results[0]
    assert all(r.coefficients.tolist() == fit.coefficients.tolist() for r in results)
    assert fit.names == ["intercept", *GERMAN_BOUNDS]
    assert fit.rows == 1000 and 3 <= fit.iterations <= 8
    check_against_reference(x, y, fit)


def test_features_of_bank_magnitudes_fit_through_their_declared_bounds():
    """Balances up to 1e9, a signed net position, a 0/1 flag and a feature whose mean is far
    from zero relative to its spread: coefficients to 1e-4 absolute and 1e-5 relative."""
    rng = np.random.default_rng(7)
    n = 1500
    balance = np.minimum(np.exp(rng.normal(13, 2.0, n)), 1e9).round(2)
    net = rng.normal(0, 3e7, n).round(2)
    flag = (rng.random(n) < 0.3).astype(np.float64)
    year = rng.integers(1990, 2010, n).astype(np.float64)
    x = np.column_stack([balance, net, flag, year])
    lin = -1.0 + 1e-6 * balance - 2e-8 * net + 0.8 * flag + 0.05 * (year - 2000)
    y = (rng.random(n) < 1 / (1 + np.exp(-lin))).astype(np.float64)
    fit = secure_fit(split3(x), split3(y), [1e9, 1e9, 1.0, 3000.0])[0]
    check_against_reference(x, y, fit)
    coef, _ = reference_logit(x, y)
    assert np.abs(fit.coefficients / coef - 1).max() < 1e-5


def test_sigmoid_error_is_far_below_what_moves_a_coefficient():
    """The sigmoid inside the fit (exp plus reciprocal on the 128-bit ring): measured error."""
    z = np.concatenate([np.linspace(-40, 40, 2001), [-8.0, -1e-6, 0.0, 1e-6, 8.0]])

    def job(ctx):
        s = smpc.share(ctx, z if ctx.rank == 0 else None, owner=0, bound=50.0, frac_bits=30)
        return s.sigmoid(frac_bits=30).reveal().numpy()

    got = smpc.simulate(job)[0]
    error = np.abs(got - 1 / (1 + np.exp(-z))).max()
    assert error < 2e-9


def test_a_constant_feature_is_refused_naming_it():
    x, y = german()
    x = np.column_stack([x[:, :2], np.full(len(x), 3.0)])
    with pytest.raises(FitRefused, match="constant_three") as info:
        secure_fit(split3(x), split3(y), [100.0, 1e5, 10.0], names=["duration", "amount", "constant_three"])
    assert info.value.reason == "constant"


def test_perfect_separation_stops_without_coefficients():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 2))
    y = (x[:, 0] > 0.1).astype(np.float64)
    with pytest.raises(FitRefused, match="separation") as info:
        secure_fit(split3(x), split3(y), [10.0, 10.0])
    assert info.value.reason == "separation"


def test_a_singular_design_is_refused():
    x, y = german()
    x = np.column_stack([x[:, 0], x[:, 2], x[:, 0] + 2 * x[:, 2]])  # the third is a combination
    with pytest.raises(FitRefused, match="singular") as info:
        secure_fit(split3(x), split3(y), [100.0, 100.0, 300.0])
    assert info.value.reason == "singular"


def test_max_iter_reached_is_refused():
    x, y = german()
    with pytest.raises(FitRefused, match="did not converge") as info:
        secure_fit(split3(x), split3(y), list(GERMAN_BOUNDS.values()), max_iter=1)
    assert info.value.reason == "max_iter"


def test_rounds_and_bytes_per_iteration_are_exact_and_rounds_do_not_grow_with_rows():
    """Every iteration costs iteration_rounds(p) rounds; its bytes are n times (sigmoid + two
    products: the linear predictor and the weights) plus a part that depends on p only."""
    rng = np.random.default_rng(11)
    per_row = [b + 32 for b in cost_per_element("sigmoid", 128)[1]]
    constant = None
    for n in (300, 600):
        x = rng.normal(size=(n, 2))
        y = (rng.random(n) < 1 / (1 + np.exp(-(x @ [0.7, -0.4])))).astype(np.float64)
        results = secure_fit(split3(x), split3(y), [8.0, 8.0])
        # a party that neither sends nor receives in a round does not count it
        assert max(fit.details["iteration_costs"][0][0] for fit in results) == iteration_rounds(2)
        for rank, fit in enumerate(results):
            costs = fit.details["iteration_costs"]
            assert len(costs) == fit.iterations
            assert len({c for c in costs}) == 1, costs  # every iteration costs the same
            fixed = costs[0][1] - n * per_row[rank]
            constant = {} if constant is None else constant
            assert constant.setdefault(rank, fixed) == fixed, (rank, n)


def test_one_bit_opens_per_iteration_and_the_fit_at_the_end(opened):
    """What leaves the shares: one bit per feature (constant?), one stop bit per iteration,
    the three reasons for stopping, then coefficients and variances (compute party 0's view)."""
    x, y = german()
    fit = secure_fit(split3(x), split3(y), list(GERMAN_BOUNDS.values()))[0]
    p = len(GERMAN_BOUNDS)
    sizes = [len(v) for v in opened]
    assert sizes == [p] + [1] * fit.iterations + [3, 2 * (p + 1)]
    assert opened[0] == [0] * p and opened[fit.iterations] == [1] and all(v == [0] for v in opened[1:fit.iterations])
