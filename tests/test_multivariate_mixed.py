"""The multivariate linear mixed model comparator on simulated cohorts."""

import warnings
from dataclasses import fields, replace

import numpy as np
import pytest
from statsmodels.regression.mixed_linear_model import MixedLM

from odevae.evaluate.prediction.comparators import fit_mixed_models, mixed_model
from odevae.evaluate.prediction.mixed import fitting_patients
from odevae.evaluate.prediction.multivariate_mixed import (
    _ECME,
    _covariance,
    _ecme,
    _gls,
    _moments,
    _standardised,
    _valid,
    fit_multivariate_mixed,
    load_fit,
    multivariate_mixed,
    save_fit,
)
from odevae.evaluate.prediction.targets import prediction_targets
from tests.test_comparators import make_cohort, pick

#: Random-effect SDs in the order (intercept, slope) per measurement.
RE_SD = np.array([1.0, 0.5, 1.0, 0.5])


def correlated_cohort(n, seed, rho=0.6, noise=(0.3, 0.3), n_visits=5, missing=0.0):
    """Two measurements y_k = a_k + s_k·t + 0.4·x + b_k0 + b_k1·t + e_k with
    intercepts correlated ``rho``/2 and slopes ``rho`` across the two; each value
    missing with probability ``missing`` (visit 0 always complete)."""
    rng = np.random.default_rng(seed)
    corr = np.eye(4)
    corr[0, 2] = corr[2, 0] = rho / 2
    corr[1, 3] = corr[3, 1] = rho
    b = rng.multivariate_normal(np.zeros(4), corr * np.outer(RE_SD, RE_SD), n)
    x = rng.normal(size=n)
    times, values = [], []
    for i in range(n):
        t = np.concatenate([[0.0], np.sort(rng.uniform(0.2, 4.0, n_visits - 1))])
        y = np.column_stack(
            [
                1 + 0.5 * t + b[i, 0] + b[i, 1] * t,
                -1 - 0.3 * t + b[i, 2] + b[i, 3] * t,
            ]
        )
        y += 0.4 * x[i] + rng.normal(0, 1, y.shape) * noise
        y[1:][rng.uniform(size=y[1:].shape) < missing] = np.nan
        times.append(t)
        values.append(y)
    return make_cohort(times, values, x[:, None])


def one_step(cohort):
    targets = prediction_targets(cohort)
    targets = targets[targets["horizon"] == "one_step"].reset_index(drop=True)
    row, visit = targets["row"].to_numpy(), targets["visit"].to_numpy()
    truth = np.where(cohort.observed[row, visit], cohort.values[row, visit], np.nan)
    return targets, truth


def statsmodels_fit(fit, cohort):
    """statsmodels' ML fit of the same model (one residual variance) on the
    stacked standardised values, columns in the order of ``fit``."""
    rows, slots, k = np.nonzero(cohort.observed & cohort.visits[..., None])
    y = (cohort.values[rows, slots, k] - fit.center[k]) / fit.scale[k]
    t = cohort.times[rows, slots]
    one = np.eye(2)[k]
    f = np.column_stack([np.ones_like(t), t, fit.covariates(cohort.baseline)[rows]])
    exog = (one[:, :, None] * f[:, None, :]).reshape(len(y), -1)
    exog_re = (one[:, :, None] * f[:, None, :2]).reshape(len(y), -1)
    model = MixedLM(y, exog, groups=cohort.patient_ids[rows], exog_re=exog_re)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(reml=False, method="lbfgs")


def test_shared_residual_fit_and_blup_agree_with_statsmodels():
    cohort = correlated_cohort(80, seed=0)
    fit = fit_multivariate_mixed(cohort, tol=1e-11, shared_residual=True)
    assert fit.converged and fit.sigma2[0] == fit.sigma2[1]
    result = statsmodels_fit(fit, cohort)
    assert fit.loglik >= result.llf - 1e-3  # the ML: as high as statsmodels'
    assert fit.loglik == pytest.approx(result.llf, abs=1e-3)
    np.testing.assert_allclose(fit.beta.ravel(), result.fe_params, atol=1e-4)
    np.testing.assert_allclose(fit.psi, result.cov_re, atol=2e-4)
    assert fit.sigma2[0] == pytest.approx(result.scale, rel=1e-4)
    # the BLUP from all visits with statsmodels' estimates is statsmodels' BLUP:
    # targets one year after each patient's last visit, which read every visit
    slot, none = np.ones((cohort.n, 1), bool), np.zeros((cohort.n, 1, 2), bool)
    extended = replace(
        cohort,
        times=np.column_stack([cohort.times, cohort.times.max(1) + 1.0]),
        values=np.concatenate([cohort.values, np.zeros((cohort.n, 1, 2))], 1),
        observed=np.concatenate([cohort.observed, none], 1),
        visits=np.column_stack([cohort.visits, slot]),
    )
    targets = prediction_targets(extended)
    last = (targets["horizon"] == "one_step") & (
        targets["visit"] == cohort.times.shape[1]
    )
    targets = targets[last].reset_index(drop=True)
    sm_fit = replace(
        fit,
        beta=np.asarray(result.fe_params).reshape(2, -1),
        psi=np.asarray(result.cov_re),
        sigma2=np.full(2, result.scale),
    )
    pred, sd = multivariate_mixed(sm_fit, extended, targets)
    effects = result.random_effects
    t = targets["time"].to_numpy()
    for i, pid in enumerate(targets["patient_id"]):
        b = np.asarray(effects[pid]).reshape(2, 2)
        x = sm_fit.covariates(extended.baseline[targets["row"][i : i + 1]])[0]
        design = np.concatenate([[1.0, t[i]], x])
        expected = sm_fit.beta @ design + b @ [1.0, t[i]]
        np.testing.assert_allclose(
            (pred[i] - fit.center) / fit.scale, expected, atol=1e-6
        )


def with_binary(cohort, seed):
    """``cohort`` with a third, 0/1 measurement."""
    rng = np.random.default_rng(seed)
    flag = (rng.random(cohort.visits.shape) < 0.4).astype(float)
    values = np.concatenate([cohort.values, flag[..., None]], -1)
    observed = np.concatenate([cohort.observed, cohort.visits[..., None]], -1)
    names = np.append(cohort.measurement_names, "flag")
    return replace(cohort, values=values, observed=observed, measurement_names=names)


def test_prediction_never_reads_the_target_visit_or_later():
    train = with_binary(correlated_cohort(60, seed=1, missing=0.2), seed=2)
    test = with_binary(correlated_cohort(4, seed=3, missing=0.2), seed=4)
    test.baseline[1, 0] = np.nan  # a missing covariate is filled
    fit = fit_multivariate_mixed(train)
    assert list(fit.variables) == [0, 1]  # the 0/1 measurement is not modelled
    targets = prediction_targets(test)
    before = multivariate_mixed(fit, test, targets)
    assert np.isfinite(before[0][:, :2]).all() and np.isfinite(before[1][:, :2]).all()
    assert np.isnan(before[0][:, 2]).all() and np.isnan(before[1][:, 2]).all()
    rng = np.random.default_rng(5)
    for row in range(test.n):
        for h in range(1, 5):
            values, observed = test.values.copy(), test.observed.copy()
            values[row, h:] = rng.normal(5, 3, values[row, h:].shape)
            observed[row, h:] = rng.random(observed[row, h:].shape) < 0.5
            changed = replace(test, values=values, observed=observed)
            after = multivariate_mixed(fit, changed, targets)
            later = ((targets["row"] == row) & (targets["n_history"] > h)).to_numpy()
            for old, new in zip(before, after, strict=True):
                np.testing.assert_array_equal(old[~later], new[~later])
            if later.any():  # the perturbation is read where it is history
                assert not np.array_equal(before[0][later], after[0][later])


def test_borrowing_across_measurements_beats_the_univariate_mixed_model():
    """Slopes correlated 0.95; the second measurement is noisy, the first precise:
    the first's history tells the second's slope."""
    kwargs = {"rho": 0.95, "noise": (0.1, 1.0), "n_visits": 5}
    train = correlated_cohort(150, seed=6, **kwargs)
    test = correlated_cohort(100, seed=7, **kwargs)
    targets, truth = one_step(test)
    fit = fit_multivariate_mixed(train)
    joint = ((multivariate_mixed(fit, test, targets)[0] - truth) ** 2).mean(0)
    alone = (mixed_model(fit_mixed_models(train), test, targets)[0] - truth) ** 2
    alone = alone.mean(0)
    assert joint[1] < 0.9 * alone[1]
    assert joint[0] < 1.05 * alone[0]
    # without the cross-measurement covariances the advantage is gone
    block = np.kron(np.eye(2), np.ones((2, 2))) * fit.psi
    apart = multivariate_mixed(replace(fit, psi=block), test, targets)[0]
    apart = ((apart - truth) ** 2).mean(0)
    assert apart[1] > 0.97 * alone[1]


def test_missing_entries():
    train = correlated_cohort(100, seed=8, rho=0.95, missing=0.3)
    assert (~train.observed[:, 1:]).mean() == pytest.approx(0.3, abs=0.03)
    fit = fit_multivariate_mixed(train)
    assert fit.converged
    corr = fit.psi[1, 3] / np.sqrt(fit.psi[1, 1] * fit.psi[3, 3])
    assert corr > 0.8  # the simulated slope correlation, from incomplete visits
    nan = np.nan
    test = make_cohort(
        [[0.0, 1.0, 2.0, 3.0]] * 2,
        [
            [[1.0, nan], [2.0, nan], [nan, nan], [0.0, 0.0]],
            [[nan, nan], [nan, nan], [4.0, 4.0], [0.0, 0.0]],
        ],
        [[0.0], [0.5]],
    )
    targets = prediction_targets(test)
    pred, sd = multivariate_mixed(fit, test, targets)
    assert np.isfinite(pred).all() and np.isfinite(sd).all()
    # values at unobserved entries are never read
    hidden = replace(test, values=np.where(test.observed, test.values, 99.0))
    np.testing.assert_array_equal(multivariate_mixed(fit, hidden, targets)[0], pred)
    # no observed history value: the population prediction with the prior
    k = pick(targets, "from_first_two", 1, 2)
    t, x = 2.0, fit.covariates(test.baseline[1:])[0]
    design, g = np.concatenate([[1.0, t], x]), np.array([1.0, t])
    for v in range(2):
        psi = fit.psi[2 * v : 2 * v + 2, 2 * v : 2 * v + 2]
        mean = fit.center[v] + fit.scale[v] * fit.beta[v] @ design
        spread = fit.scale[v] * np.sqrt(g @ psi @ g + fit.sigma2[v])
        assert pred[k, v] == pytest.approx(mean)
        assert sd[k, v] == pytest.approx(spread)
    # the second measurement, never observed in the history, borrows from the
    # first: visits 0 and 1 rose, so its prediction is above the population's
    k = pick(targets, "from_first_two", 0, 3)
    x = fit.covariates(test.baseline[:1])[0]
    population = fit.center[1] + fit.scale[1] * fit.beta[1] @ [1.0, 3.0, *x]
    assert pred[k, 1] > population
    assert sd[k, 1] < fit.scale[1] * np.sqrt(
        [1.0, 3.0] @ fit.psi[2:, 2:] @ [1.0, 3.0] + fit.sigma2[1]
    )


def test_gls_equals_the_dense_generalised_least_squares():
    """β of ECME's GLS step against Σ X'V⁻¹X β = Σ X'V⁻¹y built densely per patient
    (V = Z Ψ Z' + R), with more covariates than measurements."""
    rng = np.random.default_rng(3)
    n, visits, m, covariates = 7, 4, 3, 4
    t = rng.uniform(0, 3, (n, visits, 1))
    x = np.broadcast_to(rng.normal(size=(n, 1, covariates)), (n, visits, covariates))
    f = np.concatenate([np.ones_like(t), t, x], -1)
    y = rng.normal(size=(n, visits, m))
    mask = rng.uniform(size=(n, visits, m)) < 0.8
    root = rng.normal(size=(2 * m, 2 * m))
    psi, sigma2 = root @ root.T / (2 * m), rng.uniform(0.5, 2, m)
    ff, fy = _moments(f, y, mask)
    _, c = _covariance(ff, psi, sigma2)
    beta = _gls(ff.sum(0), fy.sum(0), ff[..., :2].copy(), fy[..., :2], c, sigma2)
    left, right = 0, 0
    for i in range(n):
        rows = [(j, k) for j in range(visits) for k in range(m) if mask[i, j, k]]
        design = np.zeros((len(rows), m * f.shape[-1]))
        random = np.zeros((len(rows), 2 * m))
        for r, (j, k) in enumerate(rows):
            design[r, k * f.shape[-1] : (k + 1) * f.shape[-1]] = f[i, j]
            random[r, 2 * k : 2 * k + 2] = f[i, j, :2]
        noise = np.diag([sigma2[k] for _, k in rows])
        v_inv = np.linalg.inv(random @ psi @ random.T + noise)
        left = left + design.T @ v_inv @ design
        right = right + design.T @ v_inv @ np.array([y[i, j, k] for j, k in rows])
    expected = np.linalg.solve(left, right).reshape(m, -1)
    np.testing.assert_allclose(beta, expected, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(
    ("seed", "kwargs"),
    [(6, {"missing": 0.3, "n_visits": 4}), (2, {"n_visits": 3, "rho": 0.9})],
)
def test_accelerated_ecme_ends_nearer_the_maximum_in_fewer_steps(seed, kwargs):
    """SQUAREM's cycles stop by plain ECME's rule (one step gains less than the
    tolerance) at the same maximum, in fewer steps and nearer to it."""
    cohort = correlated_cohort(40, seed=seed, **kwargs)
    plain = fit_multivariate_mixed(cohort, accelerate=False)
    fast = fit_multivariate_mixed(cohort)
    best = fit_multivariate_mixed(cohort, tol=1e-13, accelerate=False, max_iter=10**5)
    assert best.converged and fast.converged and plain.converged
    assert fast.iterations < plain.iterations < best.iterations
    assert plain.loglik < fast.loglik <= best.loglik + 1e-9
    for name in ("psi", "sigma2", "beta"):
        error = [
            np.abs(getattr(f, name) - getattr(best, name)).max() for f in (fast, plain)
        ]
        assert error[0] < error[1], name


class CreepingStep:
    """A stand-in for ECME: Ψ's correlation moves towards 0.95 at rate 0.5 per
    step and σ² towards 1 at rate 0.99; the likelihood is minus the squared
    distance from there. Records every point it is evaluated at."""

    counts = np.array([1.0])

    def __init__(self):
        self.evaluations, self.points = 0, []

    def __call__(self, psi, sigma2):
        self.evaluations += 1
        self.points.append(psi.copy())
        loglik = -2 * (psi[0, 1] - 0.95) ** 2 - (sigma2[0] - 1.0) ** 2
        new_psi = psi.copy()
        new_psi[0, 1] = new_psi[1, 0] = 0.95 + (psi[0, 1] - 0.95) * 0.5
        return np.zeros(1), loglik, new_psi, 1.0 + (sigma2 - 1.0) * 0.99


def test_squarem_never_evaluates_an_extrapolation_that_is_no_covariance():
    """The slow σ² sets a long extrapolation that throws Ψ's correlation far past
    1: such points are dropped before any evaluation, and the path still ends at
    the maximum far sooner than plain steps do."""
    fast, plain = CreepingStep(), CreepingStep()
    start = (np.eye(2), np.array([1001.0]))
    result = _ecme(fast, *start, tol=1e-12, max_iter=10_000)
    slow = _ecme(plain, *start, tol=1e-12, max_iter=10_000, accelerate=False)
    assert result[-1] and slow[-1] and fast.evaluations < plain.evaluations / 10
    assert all(abs(psi[0, 1]) <= 1.0 for psi in fast.points)
    assert abs(result[2][0] - 1.0) < 1e-4 and abs(result[1][0, 1] - 0.95) < 1e-4
    assert _valid(np.eye(2), np.ones(2))
    assert not _valid(np.array([[1.0, 2.0], [2.0, 1.0]]), np.ones(2))  # eigenvalue −1
    assert not _valid(np.eye(2), np.array([1.0, 1e-12]))  # below ECME's floor
    assert not _valid(np.eye(2), np.array([1.0, np.inf]))


@pytest.mark.parametrize("accelerate", [True, False])
def test_a_fit_stopped_early_returns_one_evaluated_point(accelerate):
    """Stopped by ``max_iter``: β is the GLS estimate at the returned Ψ, σ², and
    the log likelihood is theirs."""
    cohort = correlated_cohort(40, seed=2, n_visits=3, rho=0.9)
    fit = fit_multivariate_mixed(cohort, max_iter=7, accelerate=accelerate)
    assert not fit.converged and fit.iterations == 7
    data = _standardised(cohort, (fit.center, fit.scale, fit.covariates), [0, 1])
    beta, loglik, *_ = _ECME(*data, shared=False)(fit.psi, fit.sigma2)
    np.testing.assert_array_equal(beta, fit.beta)
    assert loglik == fit.loglik


def test_a_large_cohort_is_fitted_on_a_seeded_subset():
    """Above ``max_patients`` the fit is that of the same seeded subset as the
    univariate mixed models', and it still predicts for every patient."""
    cohort = correlated_cohort(120, seed=4)
    fit = fit_multivariate_mixed(cohort, max_patients=70, seed=5)
    subset = cohort.subset(fitting_patients(cohort.n, 70, 5))
    alone = fit_multivariate_mixed(subset)
    np.testing.assert_array_equal(fit.beta, alone.beta)
    np.testing.assert_array_equal(fit.psi, alone.psi)
    assert not np.array_equal(fit.beta, fit_multivariate_mixed(cohort).beta)
    targets, _ = one_step(cohort)
    pred, _ = multivariate_mixed(fit, cohort, targets)
    assert np.isfinite(pred).all()


def test_a_saved_fit_reads_back_exactly(tmp_path):
    """Rule comparators saves the fit that rule predict combines: every field
    reads back bit for bit (and its predictions with it), and no fit reads back
    as none."""
    cohort = correlated_cohort(60, seed=3)
    fit = fit_multivariate_mixed(cohort)
    save_fit(fit, tmp_path / "fit.npz")
    loaded = load_fit(tmp_path / "fit.npz")
    for field in fields(fit):
        a, b = getattr(fit, field.name), getattr(loaded, field.name)
        assert type(a) is type(b), field.name
        np.testing.assert_array_equal(a, b, err_msg=field.name)
    targets = prediction_targets(cohort)
    for a, b in zip(
        multivariate_mixed(fit, cohort, targets),
        multivariate_mixed(loaded, cohort, targets),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    save_fit(None, tmp_path / "none.npz")
    assert load_fit(tmp_path / "none.npz") is None
