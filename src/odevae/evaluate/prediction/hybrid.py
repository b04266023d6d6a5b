"""The ODE-VAE's hybrid predictors: ``odevae_increment`` (the model's change added to
the last observed value) and the residual mixed model's random effects of
``odevae_mixed`` and ``vae_mixed`` (:mod:`~odevae.evaluate.prediction.model`
describes them)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from odevae.data.cohort import Cohort
from odevae.evaluate.prediction.comparators import locf
from odevae.evaluate.prediction.latent import decode, encode, latent_predictions
from odevae.evaluate.prediction.mixed import (
    MIXED_MODEL_MAX_PATIENTS,
    fit_mixed_models,
    mixed_model,
)
from odevae.model.trained import CoreAccess


def residuals(model: CoreAccess, cohort: Cohort) -> Cohort:
    """``cohort`` with its values replaced by the reconstruction residuals
    x − decode(encode(x)) (modelling units; 0 where not observed)."""
    mu, _ = encode(model, cohort)
    n, T, d = mu.shape
    mean, _ = decode(model, mu.reshape(n * T, d))
    values = cohort.values - mean.reshape(n, T, -1)
    return dataclasses.replace(cohort, values=np.where(cohort.observed, values, 0.0))


def random_effects_offsets(
    model: CoreAccess,
    train: Cohort,
    test: Cohort,
    targets: pd.DataFrame,
    max_patients: int = MIXED_MODEL_MAX_PATIENTS,
) -> tuple[np.ndarray, np.ndarray]:
    """Each target's empirical-Bayes random intercept and slope of the
    reconstruction residuals, from its patient's history, and its sd (targets × p;
    NaN for a variable without a fit): a mixed model fitted on the training
    patients' residuals only."""
    fits = fit_mixed_models(residuals(model, train), max_patients)
    return mixed_model(fits, residuals(model, test), targets)


def latent_step_variance(
    model: CoreAccess, train: Cohort, methods=("odevae", "vae_roundtrip")
) -> dict[str, pd.DataFrame]:
    """Per method, horizon and variable (rows × p): the training patients' mean
    square of decode(prediction) − decode(target visit's encoding), the error of
    the latent step that the residual mixed model does not see (it is fitted on
    reconstruction residuals)."""
    targets, latent, encoded = latent_predictions(model, train, train)
    target, _ = decode(model, encoded)
    out = {}
    for method in methods:
        predicted, _ = decode(model, latent[method])
        sq = pd.DataFrame((predicted - target) ** 2)
        out[method] = sq.groupby(targets["horizon"].to_numpy()).mean()
    return out


def with_random_effects(
    offsets: tuple[np.ndarray, np.ndarray],
    mean: np.ndarray,
    sd: np.ndarray,
    step_variance: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions ``mean`` (targets × p) plus the random-effect ``offsets`` of
    :func:`random_effects_offsets`. Their sd replaces the decoder's, widened by
    ``step_variance`` (targets × p, :func:`latent_step_variance`) so that it
    covers the forecast error too; a variable without a fit keeps ``mean`` and
    ``sd``."""
    offset, offset_sd = offsets
    fitted = np.isfinite(offset)
    if step_variance is not None:
        offset_sd = np.sqrt(offset_sd**2 + step_variance)
    return (
        np.where(fitted, mean + np.where(fitted, offset, 0.0), mean),
        np.where(fitted, offset_sd, sd),
    )


def increment(
    model: CoreAccess, test: Cohort, targets: pd.DataFrame, decoded: dict
) -> tuple[np.ndarray, np.ndarray]:
    """``odevae_increment``: each variable's last observed value plus the decoded
    change from the last history visit's encoding to the prediction; where a
    variable was never observed, the decoded prediction itself. Probabilities of
    Bernoulli variables are clipped to [0, 1]."""
    mean, sd = decoded["odevae"]
    last, _ = locf(test, targets)
    step = last + mean - decoded["vae_roundtrip"][0]
    binary = model.core.binary.cpu().numpy()
    step = np.where(binary, np.clip(step, 0.0, 1.0), step)
    return np.where(np.isfinite(last), step, mean), sd
