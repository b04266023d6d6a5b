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
  visit (:func:`~odevae.model.loss.combine_history`), decoded. With
  ``model.history_state`` the latent state is shifted by the history's
  correction before decoding.
* ``odevae_prior``: the same with the parameters of the baseline covariates alone
  (the parameter net's prior mean) and no state correction: what the history adds
  (equal to ``odevae`` without a history encoder).
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
  forward, and the patient's own level is kept exactly (with ``model.history_state``
  the correction is part of ẑ_j, so it moves that level too; with the identity
  autoencoder, the case of ``history_state: auto``, this is ``odevae`` itself).
* ``odevae_mixed``: ``odevae`` plus a per-patient random intercept and slope in time
  per variable, predicted by empirical Bayes from the patient's history: a linear
  mixed model (:mod:`~odevae.evaluate.prediction.comparators`) fitted on the training
  patients' reconstruction residuals x − decode(encode(x)) and applied to the
  history's residuals. The ODE-VAE gives the shared multivariate trajectory; the
  random effects give what is individual to a patient's variable (its level and
  trend), as a mixed model's do. Its sd is the mixed model's predictive sd
  widened by the latent step's error on the training patients
  (:func:`~odevae.evaluate.prediction.hybrid.latent_step_variance`), which
  reconstruction residuals do not show.
* ``vae_mixed``: ``vae_roundtrip`` plus the same random effects: what the ODE
  adds under the hybrid.
* ``odevae_combined``: w·``odevae_mixed`` + (1 − w)·the multivariate linear mixed
  model (``mixed_multivariate`` of
  :mod:`~odevae.evaluate.prediction.multivariate_mixed`, fitted on the same
  training patients) for the continuous measurements it models; ``odevae_mixed``
  for the others (0/1 measurements, or every one when the mixed model has too few
  patients to fit). A forecast combination (Bates & Granger 1969): the weight w in
  [0, 1] is fitted on the fold's inner validation patients
  (:mod:`~odevae.evaluate.prediction.selection`), so it leans to whichever of the
  two predicts them better and averages where they err differently; 0.5 where
  none was fitted (no inner split, or no multivariate model on inner patients).
  Its sd is √(w·sd₁² + (1 − w)·sd₂²), an upper bound of the combination's error
  sd for any correlation of the two errors.
* ``odevae_selected``: whichever of ``odevae``, ``odevae_increment``,
  ``odevae_mixed`` and ``odevae_combined`` predicts the fold's inner validation
  patients best one step ahead
  (:mod:`~odevae.evaluate.prediction.selection`); the held-out fold plays no part in the
  choice.

With tuning, a fold's model can be an **ensemble** of the candidates best on the
inner validation patients (``tuning.ensemble``): every predictor above is then the
mean of the members' predictions (:func:`ensemble_mean`; the random effects of
``odevae_mixed`` and ``vae_mixed`` fitted on each member's own residuals), with the
sd of the equal mixture of the members' predictive distributions. Latent spaces of
different models are not comparable, so the latent-space predictions are the first
(best) member's.

Only the history visits are ever encoded for a target (the encoder is per visit, the
parameters come from baseline covariates and the history encoder is causal), so
nothing at or after visit j enters its prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from odevae.data.cohort import Cohort
from odevae.evaluate.prediction.hybrid import (
    increment,
    latent_step_variance,
    random_effects_offsets,
    with_random_effects,
)
from odevae.evaluate.prediction.latent import decode, latent_predictions
from odevae.evaluate.prediction.mixed import MIXED_MODEL_MAX_PATIENTS
from odevae.evaluate.prediction.multivariate_mixed import (
    given_or_fitted,
    multivariate_mixed,
)
from odevae.evaluate.prediction.targets import long_table
from odevae.model.trained import CoreAccess

#: The model's own predictors, from which
#: :mod:`~odevae.evaluate.prediction.selection` picks.
SELECTABLE = ("odevae", "odevae_increment", "odevae_mixed", "odevae_combined")
METHODS = (
    *SELECTABLE,
    "odevae_prior",
    "odevae_population",
    "vae_roundtrip",
    "vae_mixed",
    "ols_latent",
)


#: The weight of ``odevae_mixed`` in ``odevae_combined`` where none was fitted.
EQUAL_WEIGHT = 0.5


def combined(
    hybrid: tuple[np.ndarray, np.ndarray],
    classical: tuple[np.ndarray, np.ndarray],
    weight: float = EQUAL_WEIGHT,
) -> tuple[np.ndarray, np.ndarray]:
    """``odevae_combined``: ``weight``·hybrid + (1 − ``weight``)·classical
    (targets × p) where ``classical`` has a prediction (finite), ``hybrid``
    elsewhere; sd √(weight·sd_h² + (1 − weight)·sd_c²)."""
    (mean_h, sd_h), (mean_c, sd_c) = hybrid, classical
    both = np.isfinite(mean_c)
    mean_c, sd_c = np.where(both, mean_c, 0.0), np.where(both, sd_c, 0.0)
    w = float(weight)
    return (
        np.where(both, w * mean_h + (1.0 - w) * mean_c, mean_h),
        np.where(both, np.sqrt(w * sd_h**2 + (1.0 - w) * sd_c**2), sd_h),
    )


def ensemble_mean(
    members: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """The equal mixture of the members' predictive distributions, each a (mean,
    sd) pair of arrays: its mean (the members' mean) and its sd, √(mean of sd² +
    mean squared deviation of the members' means from it). One member is returned
    as it is."""
    if len(members) == 1:
        return members[0]
    means = np.stack([mean for mean, _ in members])
    mean = means.mean(axis=0)
    variance = np.stack([sd**2 for _, sd in members]).mean(axis=0)
    spread = ((means - mean) ** 2).mean(axis=0)
    return mean, np.sqrt(variance + spread)


def as_members(model: CoreAccess | Sequence[CoreAccess]) -> list[CoreAccess]:
    """A fold's model as a list of ensemble members (one model: a list of one)."""
    if isinstance(model, Sequence):
        if not model:
            raise ValueError("an ensemble needs at least one model")
        return list(model)
    return [model]


@torch.no_grad()
def decoded_predictions(
    model: CoreAccess | Sequence[CoreAccess],
    train: Cohort,
    test: Cohort,
    max_patients: int = MIXED_MODEL_MAX_PATIENTS,
    weight: float = EQUAL_WEIGHT,
    multivariate="fit",
) -> tuple[pd.DataFrame, dict, dict, torch.Tensor]:
    """The targets of ``test``, every method's latent prediction, its decoded mean
    and sd (targets × p, modelling units; ``mixed_multivariate`` too, the classical
    half of ``odevae_combined``, whose ``weight`` is that of ``odevae_mixed``), and
    the targets' own encoder means. ``train`` supplies the population parameters
    and the residual and multivariate mixed models. ``multivariate``: the
    multivariate mixed model already fitted on ``train``
    (:class:`~odevae.evaluate.prediction.multivariate_mixed.MultivariateMixedFit`;
    None: none could be fitted), or ``"fit"`` to fit it here (on a subset drawn
    with seed 0 above ``max_patients``; rule ``comparators`` draws with the run's
    seed + fold, and rule ``predict`` combines its fit).

    ``model`` may be a list of models, an ensemble: each decoded prediction is
    then :func:`ensemble_mean` of the members' (the multivariate model fitted once
    for all), and the latent predictions and encoder means are the first
    member's."""
    members = as_members(model)
    if len(members) == 1:
        return _decoded_one(members[0], train, test, max_patients, weight, multivariate)
    multivariate = given_or_fitted(multivariate, train, max_patients=max_patients)
    each = [
        _decoded_one(member, train, test, max_patients, weight, multivariate)
        for member in members
    ]
    targets, latent, _, encoded = each[0]
    decoded = {
        method: ensemble_mean([out[2][method] for out in each]) for method in each[0][2]
    }
    return targets, latent, decoded, encoded


def _decoded_one(
    model: CoreAccess,
    train: Cohort,
    test: Cohort,
    max_patients: int,
    weight: float,
    multivariate,
) -> tuple[pd.DataFrame, dict, dict, torch.Tensor]:
    """:func:`decoded_predictions` of one model."""
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
    multivariate = given_or_fitted(multivariate, train, max_patients=max_patients)
    decoded["mixed_multivariate"] = multivariate_mixed(multivariate, test, targets)
    decoded["odevae_combined"] = combined(
        decoded["odevae_mixed"], decoded["mixed_multivariate"], weight
    )
    latent["odevae_increment"] = latent["odevae_mixed"] = latent["odevae"]
    latent["odevae_combined"] = latent["odevae"]
    latent["vae_mixed"] = latent["vae_roundtrip"]
    return targets, latent, decoded, encoded


@torch.no_grad()
def model_predictions(
    model: CoreAccess | Sequence[CoreAccess],
    train: Cohort,
    test: Cohort,
    selected: str | None = None,
    max_patients: int = MIXED_MODEL_MAX_PATIENTS,
    weight: float = EQUAL_WEIGHT,
    multivariate="fit",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The held-out patients' predictions of every method in :data:`METHODS`, and
    ``odevae_selected`` (a copy of the ``selected`` predictor) when given;
    ``weight``: ``odevae_mixed``'s in ``odevae_combined``; ``model`` (one, or an
    ensemble) and ``multivariate`` as :func:`decoded_predictions` takes them.

    Returns the long table in data space (:data:`~odevae.evaluate.prediction.targets.
    COLUMNS`) and, as the follow-up paper also scores, the latent-space table:
    per target, method and latent dimension the prediction and the target visit's
    own encoder mean (``vae_roundtrip`` is then LOCF in latent space).
    """
    targets, latent, decoded, encoded = decoded_predictions(
        model, train, test, max_patients, weight, multivariate
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
