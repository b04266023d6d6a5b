"""Comparator predictors for the held-out targets of :mod:`.targets`.

Each is fitted on the training patients and predicts ``targets =
prediction_targets(test)`` as ``(predicted, sd)`` arrays (targets × p) in modelling
units, NaN where no prediction is possible. A target reads only its patient's
history visits (:func:`~odevae.evaluate.prediction.targets.history_mask`) and baseline
covariates.

* :func:`locf`: last observed value of the variable in the history;
* :func:`smoother`: exponentially time-weighted mean of the history, the decay
  ``tau`` chosen per variable on the training patients (:func:`fit_smoother`);
* :func:`train_mean`: the training patients' mean;
* :func:`mixed_model`: a linear mixed model per variable (random intercept and
  slope in time, fixed intercept, time and baseline covariates), predicting from
  the history's empirical-Bayes random effects, or from the fixed effects alone;
* ``mixed_multivariate``: the continuous measurements in one linear mixed model with
  correlated random effects (:mod:`.multivariate_mixed`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.linalg import qr
from statsmodels.regression.mixed_linear_model import MixedLM
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from odevae.data.cohort import Cohort
from odevae.evaluate.prediction.targets import (
    history_mask,
    long_table,
    prediction_targets,
)

log = logging.getLogger(__name__)

#: (predicted, sd), each (targets, p) in modelling units.
Prediction = tuple[np.ndarray, np.ndarray]

#: Candidate smoother decays, in multiples of the training median visit gap: from
#: LOCF-like (1e-3) to a plain mean of the past (1e3).
TAU_GRID = tuple(np.logspace(-3, 3, 25))


def _history(cohort: Cohort, targets: pd.DataFrame):
    """Rows (N,), history mask (N, T, p) of observed values, values (N, T, p)."""
    rows = targets["row"].to_numpy()
    mask = history_mask(cohort, targets)[:, :, None] & cohort.observed[rows]
    return rows, mask, cohort.values[rows]


def locf(test: Cohort, targets: pd.DataFrame) -> Prediction:
    """Last observed value of each variable among the history visits; sd NaN."""
    _, mask, values = _history(test, targets)
    slots = np.arange(mask.shape[1])[None, :, None]
    last = np.where(mask, slots, -1).max(1)  # (N, p)
    pred = np.take_along_axis(values, np.maximum(last, 0)[:, None, :], 1)[:, 0]
    pred = np.where(last >= 0, pred, np.nan)
    return pred, np.full_like(pred, np.nan)


def _smooth(cohort: Cohort, targets: pd.DataFrame, tau: np.ndarray) -> np.ndarray:
    """Mean of the history's values weighted by exp(−(t_j − t_i)/tau), tau (p,)."""
    rows, mask, values = _history(cohort, targets)
    lag = targets["time"].to_numpy()[:, None] - cohort.times[rows]  # (N, T)
    lag = np.where(mask, lag[:, :, None], np.inf)
    nearest = lag.min(1, keepdims=True)  # shift: tiny taus do not underflow
    nearest = np.where(np.isfinite(nearest), nearest, 0.0)
    weight = np.where(mask, np.exp(-(lag - nearest) / tau), 0.0)
    total = weight.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (weight * values).sum(1) / total, np.nan)


def _mse(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean squared error per column over rows where both are finite (NaN if none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no finite row
        return np.nanmean((pred - truth) ** 2, 0)


def median_gap(cohort: Cohort) -> float:
    """Median time between consecutive visits (1.0 if no patient has two)."""
    gaps = np.diff(cohort.times, axis=1)[cohort.visits[:, 1:]]
    return float(np.median(gaps)) if gaps.size and np.median(gaps) > 0 else 1.0


@dataclass(frozen=True)
class SmootherFit:
    """Per variable the chosen decay ``tau`` (p,) and its training one-step RMSE."""

    tau: np.ndarray
    rmse: np.ndarray


def fit_smoother(train: Cohort, taus: Sequence[float] = TAU_GRID) -> SmootherFit:
    """Choose tau per variable minimising the training patients' one-step MSE.

    ``taus`` are multiples of the training median visit gap.
    """
    targets = prediction_targets(train)
    targets = targets[targets["horizon"] == "one_step"].reset_index(drop=True)
    row, visit = targets["row"].to_numpy(), targets["visit"].to_numpy()
    truth = np.where(train.observed[row, visit], train.values[row, visit], np.nan)
    grid = np.asarray(taus, float) * median_gap(train)
    mse = np.array(
        [_mse(_smooth(train, targets, np.full(train.p, t)), truth) for t in grid]
    )
    usable = np.isfinite(mse).any(0)
    best = np.argmin(np.where(np.isfinite(mse), mse, np.inf), 0)
    for name in train.measurement_names[~usable]:
        log.warning("smoother: no training one-step targets for %s", name)
    tau = np.where(usable, grid[best], median_gap(train))
    rmse = np.sqrt(np.where(usable, mse[best, np.arange(train.p)], np.nan))
    return SmootherFit(tau, rmse)


def smoother(test: Cohort, targets: pd.DataFrame, fit: SmootherFit) -> Prediction:
    """Time-weighted mean of the history; sd the training one-step RMSE."""
    pred = _smooth(test, targets, fit.tau)
    return pred, np.where(np.isnan(pred), np.nan, fit.rmse)


def train_mean(train: Cohort, test: Cohort, targets: pd.DataFrame) -> Prediction:
    """The training patients' mean of each variable; sd their SD."""
    mask = train.observed & train.visits[..., None]
    count = mask.sum((0, 1))
    mean = np.where(mask, train.values, 0).sum((0, 1)) / np.maximum(count, 1)
    ss = (np.where(mask, train.values - mean, 0) ** 2).sum((0, 1))
    sd = np.sqrt(ss / np.maximum(count - 1, 1))
    mean, sd = np.where(count > 0, mean, np.nan), np.where(count > 1, sd, np.nan)
    shape = (len(targets), test.p)
    return np.broadcast_to(mean, shape).copy(), np.broadcast_to(sd, shape).copy()


@dataclass(frozen=True)
class MixedFit:
    """One variable's REML fit: y = [1, t, x]·beta + [1, t]·b + e.

    b ~ N(0, ``G``) per patient, e ~ N(0, ``sigma2``); x are the baseline covariates
    at ``keep``, NaN filled with ``fill`` (training median), standardised by
    ``mean`` and ``sd`` (of the training patients with data).
    """

    variable: str
    fill: np.ndarray
    keep: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    beta: np.ndarray | None = None
    G: np.ndarray | None = None
    sigma2: float = np.nan
    converged: bool = False
    result: object = field(repr=False, compare=False, default=None)  # statsmodels

    def covariates(self, baseline: np.ndarray) -> np.ndarray:
        """Standardised kept covariates (n, k) of raw ``baseline`` (n, q)."""
        x = np.where(np.isnan(baseline), self.fill, baseline)[:, self.keep]
        return (x - self.mean) / self.sd


def _covariate_scaling(base: np.ndarray):
    """Fill (median), keep mask, mean and sd of baseline covariates (n, q).

    Keeps the non-constant columns not collinear with the intercept or each other.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        fill = np.nanmedian(base, 0)
        x = np.where(np.isnan(base), fill, base)
        mean, sd = x.mean(0), x.std(0)
    keep = np.isfinite(fill) & (sd > 1e-12 * np.maximum(np.abs(mean), 1))
    if keep.any():
        design = np.column_stack([np.ones(len(x)), (x - mean)[:, keep] / sd[keep]])
        _, r, pivot = qr(design, mode="economic", pivoting=True)
        rank = int((np.abs(np.diag(r)) > 1e-8 * np.abs(r[0, 0])).sum())
        chosen = np.flatnonzero(keep)[pivot[:rank][pivot[:rank] > 0] - 1]
        keep = np.isin(np.arange(len(keep)), chosen)
    return fill, keep, mean[keep], sd[keep]


class _MixedLM(MixedLM):
    """statsmodels' MixedLM that remembers its last GLS fixed effects.

    L-BFGS asks for the profiled likelihood and its gradient at the same point, and
    statsmodels computes the fixed effects (a pass over every patient) for each;
    the second is the same computation on the same numbers, so it is looked up.
    """

    _last: tuple | None = None

    def get_fe_params(self, cov_re, vcomp, tol=1e-10):
        key = (np.asarray(cov_re).tobytes(), np.asarray(vcomp).tobytes(), tol)
        if self._last is None or self._last[0] != key:
            self._last = (key, super().get_fe_params(cov_re, vcomp, tol))
        fe_params, singular = self._last[1]
        return fe_params.copy(), singular


def _reml(model: MixedLM, name: str):
    """REML by L-BFGS polished by Powell (the default BFGS often stalls); the fit
    with the higher likelihood, or None. Its ConvergenceWarnings are logged."""
    result, messages, errors = None, [], []
    for method in ("lbfgs", "powell"):
        start = None if result is None else result.params_object
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                new = model.fit(reml=True, method=method, start_params=start)
            except (np.linalg.LinAlgError, ValueError) as error:
                errors.append(f"{method}: {error}")
                continue
        if result is None or new.llf >= result.llf:
            result, messages = new, caught
    for w in messages:
        level = logging.WARNING if w.category is ConvergenceWarning else logging.DEBUG
        log.log(level, "mixed model %s: %s", name, w.message)
    if result is None:
        log.warning("mixed model %s: fit failed (%s)", name, "; ".join(errors))
    return result


def fit_mixed_model(train: Cohort, variable: int) -> MixedFit | None:
    """REML fit of measurement ``variable``; None (logged) if it is not possible."""
    name = str(train.measurement_names[variable])
    rows, slots = np.nonzero(train.visits & train.observed[..., variable])
    patients = np.unique(rows)
    fit = MixedFit(name, *_covariate_scaling(train.baseline[patients]))
    t, y = train.times[rows, slots], train.values[rows, slots, variable]
    exog = np.column_stack([np.ones_like(t), t, fit.covariates(train.baseline)[rows]])
    # random slopes need repeated values: some beyond one per patient
    if len(patients) < 3 or len(y) < max(exog.shape[1] + 4, len(patients) + 2):
        log.warning("mixed model %s: too few data (%d values)", name, len(y))
        return None
    model = _MixedLM(y, exog, groups=train.patient_ids[rows], exog_re=exog[:, :2])
    result = _reml(model, name)
    if result is None:
        return None
    beta, G = np.asarray(result.fe_params), np.asarray(result.cov_re)
    if not (np.isfinite(beta).all() and np.isfinite(G).all() and result.scale > 0):
        log.warning("mixed model %s: non-finite estimates", name)
        return None
    sigma2, converged = float(result.scale), bool(result.converged)
    return replace(
        fit, beta=beta, G=G, sigma2=sigma2, converged=converged, result=result
    )


def fit_mixed_models(train: Cohort) -> list[MixedFit | None]:
    """:func:`fit_mixed_model` for every measurement."""
    return [fit_mixed_model(train, v) for v in range(train.p)]


def random_effects(
    fit: MixedFit, times: np.ndarray, y: np.ndarray, mask: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Empirical-Bayes b (N, 2) and posterior covariance (N, 2, 2) of N patients.

    From values ``y`` (N, T) at ``times`` (N, T) where ``mask`` (N, T), raw baseline
    ``x`` (N, q). b = G Z'V⁻¹(y − Xβ), cov = G − G Z'V⁻¹Z G with V = Z G Z' + σ²I,
    computed as b = M G Z'r, cov = G − M G Z'Z G for M = (G Z'Z + σ²I)⁻¹ (valid for
    singular G); no observed value gives b = 0, cov = G.
    """
    z = np.stack([np.ones_like(times), times], -1)  # (N, T, 2)
    fixed = z @ fit.beta[:2] + (fit.covariates(x) @ fit.beta[2:])[:, None]
    resid = np.where(mask, y - fixed, 0.0)
    zm = z * mask[..., None]
    ztz = np.einsum("nti,ntj->nij", zm, zm)
    m = np.linalg.inv(fit.G @ ztz + fit.sigma2 * np.eye(2))
    b = np.einsum("nij,jk,nk->ni", m, fit.G, np.einsum("nti,nt->ni", zm, resid))
    return b, fit.G - m @ fit.G @ ztz @ fit.G


def mixed_model(
    fits: Sequence[MixedFit | None],
    test: Cohort,
    targets: pd.DataFrame,
    population: bool = False,
) -> Prediction:
    """Predict each target from its history's BLUP (or b = 0 if ``population``).

    pred = x_j β + z_j b, sd = √(z_j cov z_j' + σ²); NaN for variables without fit.
    """
    rows, mask, values = _history(test, targets)
    times, t = test.times[rows], targets["time"].to_numpy()
    z = np.column_stack([np.ones_like(t), t])
    pred = np.full((len(targets), test.p), np.nan)
    sd = np.full_like(pred, np.nan)
    for v, fit in enumerate(fits):
        if fit is None:
            continue
        x = np.column_stack([z, fit.covariates(test.baseline[rows])])
        seen = mask[..., v] & (not population)
        b, cov = random_effects(fit, times, values[..., v], seen, test.baseline[rows])
        pred[:, v] = x @ fit.beta + (z * b).sum(1)
        sd[:, v] = np.sqrt(np.einsum("ni,nij,nj->n", z, cov, z) + fit.sigma2)
    return pred, sd


def comparator_predictions(
    train: Cohort, test: Cohort
) -> tuple[pd.DataFrame, dict[str, dict[str, object]]]:
    """Every comparator's long table for ``prediction_targets(test)``, and fit info.

    Methods: ``locf``, ``smoother``, ``train_mean``, ``mixed_model``,
    ``mixed_model_population`` and ``mixed_multivariate``. The info maps
    ``smoother_tau``, ``smoother_rmse``, ``mixed_model_converged`` and
    ``mixed_model_slope`` (the fixed time coefficient; both None without a fit) to
    a value per measurement name.
    """
    from odevae.evaluate.prediction import multivariate_mixed as mv  # imports this

    targets = prediction_targets(test)
    smooth = fit_smoother(train)
    fits = fit_mixed_models(train)
    methods = {
        "locf": locf(test, targets),
        "smoother": smoother(test, targets, smooth),
        "train_mean": train_mean(train, test, targets),
        "mixed_model": mixed_model(fits, test, targets),
        "mixed_model_population": mixed_model(fits, test, targets, population=True),
        "mixed_multivariate": mv.multivariate_mixed(
            mv.fit_multivariate_mixed(train), test, targets
        ),
    }
    tables = [long_table(test, targets, m, *out) for m, out in methods.items()]
    # the multivariate model predicts only the continuous measurements it fitted
    # (none when not fitted): it has no rows for the others, so that they are
    # scored for every other method
    multi = tables[-1]
    fitted = multi.groupby("variable")["predicted"].transform(
        lambda x: bool(np.isfinite(x).any())
    )
    tables[-1] = multi[fitted.astype(bool)]
    table = pd.concat(tables, ignore_index=True)
    names = [str(n) for n in train.measurement_names]

    def per_variable(values) -> dict:
        return dict(zip(names, values, strict=True))

    info = {
        "smoother_tau": per_variable(smooth.tau.tolist()),
        "smoother_rmse": per_variable(smooth.rmse.tolist()),
        "mixed_model_converged": per_variable(f and f.converged for f in fits),
        "mixed_model_slope": per_variable(f and float(f.beta[1]) for f in fits),
    }
    return table, info
