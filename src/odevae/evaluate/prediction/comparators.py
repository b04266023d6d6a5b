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
* :func:`~odevae.evaluate.prediction.mixed.mixed_model`: a linear mixed model per
  variable (random intercept and slope in time, fixed intercept, time and baseline
  covariates), predicting from the history's empirical-Bayes random effects, or
  from the fixed effects alone; fitted on at most ``mixed_model_max_patients``
  training patients (a seeded random subset of a larger cohort, logged);
* ``mixed_multivariate``: the continuous measurements in one linear mixed model with
  correlated random effects (:mod:`.multivariate_mixed`), fitted on the same
  patients as the mixed models.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from odevae.data.cohort import Cohort
from odevae.evaluate.prediction.mixed import (
    MIXED_MODEL_MAX_PATIENTS,
    MixedFit,
    Prediction,
    fit_mixed_model,
    fit_mixed_models,
    history_values,
    mixed_model,
    random_effects,
)
from odevae.evaluate.prediction.targets import (
    in_history_passes,
    long_table,
    prediction_targets,
)

log = logging.getLogger(__name__)

__all__ = [
    "MixedFit",
    "comparator_predictions",
    "fit_mixed_model",
    "fit_mixed_models",
    "fit_smoother",
    "locf",
    "mixed_model",
    "random_effects",
    "smoother",
    "train_mean",
]

#: Candidate smoother decays, in multiples of the training median visit gap: from
#: LOCF-like (1e-3) to a plain mean of the past (1e3).
TAU_GRID = tuple(np.logspace(-3, 3, 25))


@in_history_passes(cohort_arg=0)
def locf(test: Cohort, targets: pd.DataFrame) -> Prediction:
    """Last observed value of each variable among the history visits; sd NaN."""
    _, mask, values = history_values(test, targets)
    slots = np.arange(mask.shape[1])[None, :, None]
    last = np.where(mask, slots, -1).max(1)  # (N, p)
    pred = np.take_along_axis(values, np.maximum(last, 0)[:, None, :], 1)[:, 0]
    pred = np.where(last >= 0, pred, np.nan)
    return pred, np.full_like(pred, np.nan)


@in_history_passes(cohort_arg=0)
def _smooth(cohort: Cohort, targets: pd.DataFrame, tau: np.ndarray) -> np.ndarray:
    """Mean of the history's values weighted by exp(−(t_j − t_i)/tau), tau (p,)."""
    rows, mask, values = history_values(cohort, targets)
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


def comparator_predictions(
    train: Cohort,
    test: Cohort,
    mixed_model_max_patients: int = MIXED_MODEL_MAX_PATIENTS,
    seed: int = 0,
    multivariate="fit",
) -> tuple[pd.DataFrame, dict[str, dict[str, object]]]:
    """Every comparator's long table for ``prediction_targets(test)``, and fit info.

    Methods: ``locf``, ``smoother``, ``train_mean``, ``mixed_model``,
    ``mixed_model_population`` and ``mixed_multivariate``. The info maps
    ``smoother_tau``, ``smoother_rmse``, ``mixed_model_converged``,
    ``mixed_model_slope`` (the fixed time coefficient; both None without a fit)
    and ``mixed_model_patients`` (the training patients it was fitted on: at most
    ``mixed_model_max_patients``, a subset drawn with ``seed`` above) to a value
    per measurement name. ``multivariate``: the multivariate mixed model's fit
    (:class:`~odevae.evaluate.prediction.multivariate_mixed.MultivariateMixedFit`,
    or None where none could be fitted) if already fitted on ``train`` with these
    ``mixed_model_max_patients`` and ``seed``; ``"fit"``: fitted here.
    """
    from odevae.evaluate.prediction import multivariate_mixed as mv  # imports this

    multivariate = mv.given_or_fitted(
        multivariate, train, max_patients=mixed_model_max_patients, seed=seed
    )

    targets = prediction_targets(test)
    smooth = fit_smoother(train)
    fits = fit_mixed_models(train, mixed_model_max_patients, seed)
    methods = {
        "locf": locf(test, targets),
        "smoother": smoother(test, targets, smooth),
        "train_mean": train_mean(train, test, targets),
        "mixed_model": mixed_model(fits, test, targets),
        "mixed_model_population": mixed_model(fits, test, targets, population=True),
        "mixed_multivariate": mv.multivariate_mixed(multivariate, test, targets),
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
        "mixed_model_patients": per_variable(f and f.patients for f in fits),
    }
    return table, info
