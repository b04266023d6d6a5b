"""The ODE-VAE's held-out predictions in data space, and its ablations.

For every target of
:func:`~odevae.evaluate.prediction.targets.prediction_targets` (visit j from the history
visits 0..h−1), in modelling units, with the decoder's mean and
standard deviation:

* ``odevae``: the model's own predictor, with the patient's ODE parameters
  inferred from the history visits (the posterior mean of
  :mod:`~odevae.model.history` given visits 0..h−1; the parameter net's prior
  mean when the model has no history encoder). Initial-value loss: encode the
  last history visit (encoder mean), solve to t_j, decode. Statistical loss: the
  follow-up paper's combination μ̄_j of the local solutions from every history
  visit (:func:`~odevae.model.loss.combine_history`), decoded.
* ``odevae_prior``: the same with the parameters of the baseline covariates alone
  (the parameter net's prior mean): what the history adds (equal to ``odevae``
  without a history encoder).
* ``odevae_population``: the same with every patient's ODE parameters replaced by
  the training patients' mean (no individual dynamics).
* ``vae_roundtrip``: the last history visit encoded and decoded, no time step (how
  much the dynamics add).
* ``ols_latent``: the follow-up paper's comparator: a least-squares line per latent
  dimension through the history's encoder means, shifted through the last one,
  extrapolated to t_j and decoded.
* ``odevae_increment``: the model's predicted change added to each variable's last
  observed value, x̂_j = x_last + decode(ẑ_j) − decode(μ_last) (μ_last: the last
  history visit's encoder mean); a flat trajectory is then last observation carried
  forward, and the patient's own level is kept exactly.
* ``odevae_mixed``: ``odevae`` plus a per-patient random intercept and slope in time
  per variable, predicted by empirical Bayes from the patient's history: a linear
  mixed model (:mod:`~odevae.evaluate.prediction.comparators`) fitted on the training
  patients' reconstruction residuals x − decode(encode(x)) and applied to the
  history's residuals. The ODE-VAE gives the shared multivariate trajectory; the
  random effects give what is individual to a patient's variable (its level and
  trend), as a mixed model's do. Its sd is the mixed model's predictive sd
  widened by the latent step's error on the training patients
  (:func:`latent_step_variance`), which reconstruction residuals do not show.
* ``vae_mixed``: ``vae_roundtrip`` plus the same random effects: what the ODE
  adds under the hybrid.
* ``odevae_selected``: whichever of ``odevae``, ``odevae_increment`` and
  ``odevae_mixed`` predicts the fold's inner validation patients best one step ahead
  (:mod:`~odevae.evaluate.prediction.selection`); the held-out fold plays no part in the
  choice.

Only the history visits are ever encoded for a target (the encoder is per visit, the
parameters come from baseline covariates and the history encoder is causal), so
nothing at or after visit j enters its prediction.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from odevae.data.batching import CohortDataset
from odevae.data.cohort import Cohort
from odevae.evaluate.prediction.comparators import locf
from odevae.evaluate.prediction.mixed import (
    MIXED_MODEL_MAX_PATIENTS,
    fit_mixed_models,
    mixed_model,
)
from odevae.evaluate.prediction.targets import (
    history_mask,
    long_table,
    prediction_targets,
)
from odevae.model import ODEVAE
from odevae.model.loss import combine_history

#: The model's own predictors, from which
#: :mod:`~odevae.evaluate.prediction.selection` picks.
CANDIDATES = ("odevae", "odevae_increment", "odevae_mixed")
METHODS = (
    *CANDIDATES,
    "odevae_prior",
    "odevae_population",
    "vae_roundtrip",
    "vae_mixed",
    "ols_latent",
)


def _tensors(model: ODEVAE, cohort: Cohort) -> dict:
    """The cohort as one scaled batch on the model's device (all visit slots)."""
    batch = {k: v.to(model.device) for k, v in CohortDataset(cohort).tensors.items()}
    return model.scale(batch)


@torch.no_grad()
def encode(model: ODEVAE, cohort: Cohort) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder means (n, T, d) and individual ODE parameters (n, nθ)."""
    model.eval()
    batch = _tensors(model, cohort)
    mu, _ = model.core.encode(batch)
    return mu, model.core.prior_params(batch)


@torch.no_grad()
def decode(model: ODEVAE, z: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Latent states (N, d) → decoder mean and sd (N, p) in modelling units (for a
    Bernoulli variable the probability of a 1 and its sd √(p(1 − p)))."""
    mean, sd = model.core.predictive(z)
    return mean.cpu().numpy().astype(float), sd.cpu().numpy().astype(float)


def ols_extrapolation(mu, times, history, last, t_target):
    """Least-squares line per latent dimension through the history's means, shifted
    through the last history mean and evaluated at ``t_target`` → (N, d)."""
    m = history[..., None].to(mu.dtype)
    n = m.sum(1)
    t = times[..., None]
    t_mean = (t * m).sum(1) / n
    mu_mean = (mu * m).sum(1) / n
    sxx = (((t - t_mean[:, None]) ** 2) * m).sum(1)
    sxy = ((t - t_mean[:, None]) * (mu - mu_mean[:, None]) * m).sum(1)
    slope = torch.where(sxx > 0, sxy / sxx.clamp(min=1e-12), torch.zeros_like(sxy))
    idx = torch.arange(len(mu), device=mu.device)
    dt = (t_target - times[idx, last])[:, None]
    return mu[idx, last] + slope * dt


@torch.no_grad()
def latent_predictions(
    model: ODEVAE, train: Cohort, test: Cohort
) -> tuple[pd.DataFrame, dict[str, torch.Tensor], torch.Tensor]:
    """The targets of ``test``, each method's latent prediction (targets × d) and
    the target visit's own encoder mean (targets × d; for latent-space scores only).

    ``train`` (the fold's training patients) only supplies the population mean of
    the ODE parameters for ``odevae_population``.
    """
    targets = prediction_targets(test)
    device = model.device
    mu_all, theta_all = encode(model, test)
    _, theta_train = encode(model, train)
    rows = torch.as_tensor(targets["row"].to_numpy().copy(), device=device)
    history = torch.as_tensor(history_mask(test, targets), device=device)
    times = torch.as_tensor(test.times, dtype=torch.float32, device=device)[rows]
    mu = mu_all[rows]  # (N, T, d)
    prior = theta_all[rows]
    n_history = torch.as_tensor(targets["n_history"].to_numpy().copy(), device=device)
    scaled = {key: value[rows] for key, value in _tensors(model, test).items()}
    theta, _ = model.posterior(scaled, n_history, prior)  # the prior without history
    t_target = torch.as_tensor(targets["time"].to_numpy().copy(), dtype=torch.float32)
    t_target = t_target.to(device)
    last = torch.as_tensor(targets["n_history"].to_numpy() - 1, device=device)
    idx = torch.arange(len(rows), device=device)

    def from_starts(theta_used: torch.Tensor) -> torch.Tensor:
        if model.hparams.loss["kind"] == "statistical":
            N, T, d = mu.shape
            offsets = (t_target[:, None] - times).reshape(N * T, 1)
            local = model.solve(
                mu.reshape(N * T, d), theta_used.repeat_interleave(T, 0), offsets
            ).reshape(N, T, d)
            weighting = model.hparams.loss["statistical"]["weighting"]
            return combine_history(local, history, weighting)
        dt = (t_target - times[idx, last])[:, None]
        return model.solve(mu[idx, last], theta_used, dt)[:, 0]

    population = theta_train.mean(0, keepdim=True).expand_as(theta)
    latent = {
        "odevae": from_starts(theta),
        "odevae_prior": from_starts(prior),
        "odevae_population": from_starts(population),
        "vae_roundtrip": mu[idx, last],
        "ols_latent": ols_extrapolation(mu, times, history, last, t_target),
    }
    visit = torch.as_tensor(targets["visit"].to_numpy().copy(), device=device)
    return targets, latent, mu[idx, visit]


def residuals(model: ODEVAE, cohort: Cohort) -> Cohort:
    """``cohort`` with its values replaced by the reconstruction residuals
    x − decode(encode(x)) (modelling units; 0 where not observed)."""
    mu, _ = encode(model, cohort)
    n, T, d = mu.shape
    mean, _ = decode(model, mu.reshape(n * T, d))
    values = cohort.values - mean.reshape(n, T, -1)
    return dataclasses.replace(cohort, values=np.where(cohort.observed, values, 0.0))


def random_effects_offsets(
    model: ODEVAE,
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
    model: ODEVAE, train: Cohort, methods=("odevae", "vae_roundtrip")
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
    model: ODEVAE, test: Cohort, targets: pd.DataFrame, decoded: dict
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


@torch.no_grad()
def decoded_predictions(
    model: ODEVAE,
    train: Cohort,
    test: Cohort,
    max_patients: int = MIXED_MODEL_MAX_PATIENTS,
) -> tuple[pd.DataFrame, dict, dict, torch.Tensor]:
    """The targets of ``test``, every method's latent prediction, its decoded mean
    and sd (targets × p, modelling units), and the targets' own encoder means.
    ``train`` supplies the population parameters and the residual mixed model."""
    targets, latent, encoded = latent_predictions(model, train, test)
    decoded = {method: decode(model, latent[method]) for method in latent}
    decoded["odevae_increment"] = increment(model, test, targets, decoded)
    offsets = random_effects_offsets(model, train, test, targets, max_patients)
    step = latent_step_variance(model, train)

    def widen(method: str) -> np.ndarray:
        per_horizon = step[method].reindex(targets["horizon"].to_numpy())
        return per_horizon.fillna(0.0).to_numpy()

    decoded["odevae_mixed"] = with_random_effects(
        offsets, *decoded["odevae"], widen("odevae")
    )
    decoded["vae_mixed"] = with_random_effects(
        offsets, *decoded["vae_roundtrip"], widen("vae_roundtrip")
    )
    latent["odevae_increment"] = latent["odevae_mixed"] = latent["odevae"]
    latent["vae_mixed"] = latent["vae_roundtrip"]
    return targets, latent, decoded, encoded


@torch.no_grad()
def model_predictions(
    model: ODEVAE,
    train: Cohort,
    test: Cohort,
    selected: str | None = None,
    max_patients: int = MIXED_MODEL_MAX_PATIENTS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The held-out patients' predictions of every method in :data:`METHODS`, and
    ``odevae_selected`` (a copy of the ``selected`` candidate) when given.

    Returns the long table in data space (:data:`~odevae.evaluate.prediction.targets.
    COLUMNS`) and, as the follow-up paper also scores, the latent-space table:
    per target, method and latent dimension the prediction and the target visit's
    own encoder mean (``vae_roundtrip`` is then LOCF in latent space).
    """
    targets, latent, decoded, encoded = decoded_predictions(
        model, train, test, max_patients
    )
    methods = list(METHODS)
    if selected is not None:
        decoded["odevae_selected"] = decoded[selected]
        latent["odevae_selected"] = latent[selected]
        methods.append("odevae_selected")
    tables, latents = [], []
    d = encoded.shape[-1]
    keys = targets[["patient_id", "visit", "time", "horizon", "n_history"]]
    for method in methods:
        mean, sd = decoded[method]
        tables.append(long_table(test, targets, method, mean, sd))
        latents.append(
            keys.loc[keys.index.repeat(d)].assign(
                method=method,
                dim=np.tile(np.arange(1, d + 1), len(keys)),
                target=encoded.cpu().numpy().ravel(),
                predicted=latent[method].cpu().numpy().ravel(),
            )
        )
    return (
        pd.concat(tables, ignore_index=True),
        pd.concat(latents, ignore_index=True),
    )
