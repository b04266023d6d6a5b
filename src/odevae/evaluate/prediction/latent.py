"""The ODE-VAE's held-out predictions in latent space, and the decoder that takes
them to data space (:mod:`~odevae.evaluate.prediction.model` lists the methods).

Only the history visits of a target are encoded, so nothing at or after its visit
enters its prediction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from odevae.data.batching import CohortDataset
from odevae.data.cohort import Cohort
from odevae.evaluate.prediction.targets import (
    history_mask,
    prediction_targets,
    target_passes,
)
from odevae.model.loss import combine_history
from odevae.model.trained import CoreAccess


def _tensors(model: CoreAccess, cohort: Cohort) -> dict:
    """The cohort as one scaled batch on the model's device (all visit slots)."""
    batch = {k: v.to(model.device) for k, v in CohortDataset(cohort).tensors.items()}
    return model.scale(batch)


@torch.no_grad()
def encode(model: CoreAccess, cohort: Cohort) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder means (n, T, d) and individual ODE parameters (n, nθ)."""
    model.eval()
    batch = _tensors(model, cohort)
    mu, _ = model.core.encode(batch)
    return mu, model.core.prior_params(batch)


@torch.no_grad()
def decode(model: CoreAccess, z: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
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


#: The scaled tensors with a visit axis.
VISIT_AXIS = ("times", "values", "observed", "visits")


@torch.no_grad()
def latent_predictions(
    model: CoreAccess, train: Cohort, test: Cohort
) -> tuple[pd.DataFrame, dict[str, torch.Tensor], torch.Tensor]:
    """The targets of ``test``, each method's latent prediction (targets × d) and
    the target visit's own encoder mean (targets × d; for latent-space scores only).

    ``train`` (the fold's training patients) only supplies the population mean of
    the ODE parameters for ``odevae_population``. Large cohorts are predicted in
    passes (:func:`target_passes`), each target from its own history as in one.
    """
    targets = prediction_targets(test)
    device = model.device
    mu_all, theta_all = encode(model, test)
    _, theta_train = encode(model, train)
    population = theta_train.mean(0, keepdim=True)
    scaled_all = _tensors(model, test)
    rows_all = targets["row"].to_numpy()
    n_history_all = targets["n_history"].to_numpy()
    time_all = targets["time"].to_numpy()
    history_all = history_mask(test, targets)
    test_times = torch.as_tensor(test.times, dtype=torch.float32, device=device)
    parts: dict[str, list[torch.Tensor]] = {}
    positions = []
    for group, width in target_passes(n_history_all, test.visits.shape[1]):
        positions.append(group)
        latent = _pass_predictions(
            model,
            mu_all,
            theta_all,
            population,
            {
                key: value[:, :width] if key in VISIT_AXIS else value
                for key, value in scaled_all.items()
            },
            test_times[:, :width],
            rows_all[group],
            n_history_all[group],
            time_all[group],
            history_all[group, :width],
        )
        for method, value in latent.items():
            parts.setdefault(method, []).append(value)
    order = torch.as_tensor(np.argsort(np.concatenate(positions)), device=device)
    latent = {method: torch.cat(values)[order] for method, values in parts.items()}
    rows = torch.as_tensor(rows_all.copy(), device=device)
    visit = torch.as_tensor(targets["visit"].to_numpy().copy(), device=device)
    return targets, latent, mu_all[rows, visit]


def _pass_predictions(
    model,
    mu_all,
    theta_all,
    population,
    scaled_all,
    times_all,
    rows,
    n_history,
    t_target,
    history,
) -> dict[str, torch.Tensor]:
    """Every method's latent prediction (targets × d) for one pass of targets: the
    patients ``rows`` of the cohort's encoder means ``mu_all``, prior parameters
    ``theta_all`` and scaled tensors ``scaled_all`` (visit slots trimmed to the
    pass's longest history), with ``n_history`` history visits (``history``: the
    mask of those) and target times ``t_target``."""
    device = model.device
    rows = torch.as_tensor(rows.copy(), device=device)
    width = history.shape[1]
    history = torch.as_tensor(history, device=device)
    times = times_all[rows]
    mu = mu_all[rows, :width]  # (N, W, d)
    prior = theta_all[rows]
    n_history = torch.as_tensor(n_history.copy(), device=device)
    scaled = {key: value[rows] for key, value in scaled_all.items()}
    # the prior without a history encoder; state: model.history_state's correction
    theta, _, state = model.infer(scaled, n_history, prior)
    t_target = torch.as_tensor(t_target.copy(), dtype=torch.float32).to(device)
    last = n_history - 1
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

    own = from_starts(theta)
    return {
        "odevae": own if state is None else own + state,
        "odevae_prior": from_starts(prior),
        "odevae_population": from_starts(population.expand_as(theta)),
        "vae_roundtrip": mu[idx, last],
        "ols_latent": ols_extrapolation(mu, times, history, last, t_target),
    }
