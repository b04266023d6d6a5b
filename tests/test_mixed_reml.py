"""The batched REML likelihood, gradient and GLS fixed effects equal statsmodels'
own (per-patient) computation, and a fit reaches statsmodels' optimum."""

import logging

import numpy as np
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

from odevae.evaluate.prediction.mixed_reml import BatchedMixedLM, reml


def data(seed=0, n=40):
    """Random intercepts and slopes, 2–7 irregular visits, one covariate."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        times = np.sort(rng.uniform(0, 5, rng.integers(2, 8)))
        b = rng.normal(size=2) * [1.0, 0.3]
        x = rng.normal()
        y = 1 + 0.5 * times + 0.8 * x + b[0] + b[1] * times
        noisy = y + rng.normal(0, 0.5, len(y))
        rows += [(i, t, x, v) for t, v in zip(times, noisy, strict=True)]
    g, t, x, y = map(np.array, zip(*rows, strict=True))
    exog = np.column_stack([np.ones_like(t), t, x])
    return y, exog, g


def models(seed=0):
    y, exog, g = data(seed)
    pair = [
        cls(y, exog, groups=g, exog_re=exog[:, :2]) for cls in (BatchedMixedLM, MixedLM)
    ]
    for model in pair:  # what fit() sets before it evaluates
        model.reml, model.cov_pen, model.fe_pen = True, None, None
        model._freepat, model._cov_sing = None, 0
    return pair


def test_likelihood_gradient_and_fixed_effects_equal_statsmodels():
    ours, theirs = models()
    rng = np.random.default_rng(1)
    for _ in range(20):
        root = rng.normal(size=(2, 2))
        cov_re = root @ root.T * rng.uniform(0.01, 3)
        params = MixedLMParams.from_components(np.zeros(3), cov_re=cov_re)
        packed = params.get_packed(use_sqrt=True, has_fe=False)
        np.testing.assert_allclose(ours.loglike(packed), theirs.loglike(packed), 1e-12)
        np.testing.assert_allclose(ours.score(packed), theirs.score(packed), 1e-9, 1e-9)
        np.testing.assert_allclose(
            ours.get_fe_params(cov_re, np.zeros(0))[0],
            theirs.get_fe_params(cov_re, np.zeros(0))[0],
            1e-10,
        )


def test_a_fit_reaches_statsmodels_optimum():
    y, exog, g = data(seed=2)
    ours = reml(BatchedMixedLM(y, exog, groups=g, exog_re=exog[:, :2]), "y")
    theirs = reml(MixedLM(y, exog, groups=g, exog_re=exog[:, :2]), "y")
    assert abs(ours.llf - theirs.llf) < 1e-6
    np.testing.assert_allclose(ours.fe_params, theirs.fe_params, atol=1e-4)
    np.testing.assert_allclose(ours.cov_re, theirs.cov_re, atol=1e-4)


def test_a_non_finite_likelihood_is_not_taken_for_a_fit(caplog, monkeypatch):
    y, exog, g = data(seed=3)
    model = BatchedMixedLM(y, exog, groups=g, exog_re=exog[:, :2])
    monkeypatch.setattr(BatchedMixedLM, "loglike", lambda *a, **k: np.inf)
    with caplog.at_level(logging.WARNING):
        assert reml(model, "y") is None
    assert "log-likelihood inf" in caplog.text


def test_skipping_the_standard_errors_leaves_the_fit_unchanged():
    y, exog, g = data(seed=4)
    fits = []
    for standard_errors in (False, True):
        model = BatchedMixedLM(y, exog, groups=g, exog_re=exog[:, :2])
        model.standard_errors = standard_errors
        fits.append(reml(model, "y"))
    fast, full = fits
    assert fast.llf == full.llf
    np.testing.assert_array_equal(fast.fe_params, full.fe_params)
    np.testing.assert_array_equal(fast.cov_re, full.cov_re)
    assert fast.scale == full.scale
    assert np.isnan(fast.bse).all() and np.isfinite(full.bse).all()


def test_a_point_evaluated_again_gives_what_a_fresh_model_gives():
    """The gradient reuses the likelihood's terms at the same point only: any
    order of points gives, bit for bit, what a model that never saw the others
    gives (the singular-covariance count included)."""
    rng = np.random.default_rng(3)
    points = []
    for _ in range(3):
        root = rng.normal(size=(2, 2))
        cov_re = root @ root.T * rng.uniform(0.01, 3)
        params = MixedLMParams.from_components(np.zeros(3), cov_re=cov_re)
        points.append(params.get_packed(use_sqrt=True, has_fe=False))
    singular = MixedLMParams.from_components(np.zeros(3), cov_re=np.zeros((2, 2)))
    points.append(singular.get_packed(use_sqrt=True, has_fe=False))
    ours, _ = models()
    for k in (0, 1, 0, 2, 3, 3, 1, 3):
        fresh, _ = models()
        assert ours.loglike(points[k]) == fresh.loglike(points[k])
        np.testing.assert_array_equal(ours.score(points[k]), fresh.score(points[k]))
        before = ours._cov_sing
        ours.loglike(points[k])
        again = ours._cov_sing - before
        fresh_count = fresh._cov_sing
        fresh.loglike(points[k])
        assert again == fresh._cov_sing - fresh_count
