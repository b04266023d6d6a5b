"""Per-patient outputs of a trained model: parameters, latent states, trajectories,
and its held-out predictions in data space."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from odevae.data.batching import CohortDataset, collate
from odevae.data.cohort import Cohort
from odevae.data.folds import fold_members
from odevae.errors import InputError
from odevae.evaluate.prediction.mixed import MIXED_MODEL_MAX_PATIENTS
from odevae.evaluate.prediction.model import EQUAL_WEIGHT, model_predictions
from odevae.evaluate.prediction.selection import SELECTION_COLUMNS, inner_selection
from odevae.evaluate.prediction.targets import in_both_units
from odevae.model.trained import CoreAccess, load_trained

log = logging.getLogger(__name__)

MAX_GRID = 10_000  # trajectory points per patient (predict.grid_dt)
AUTO_STEPS = 100  # predict.grid_dt auto: at most this many steps per follow-up
NICE = (1.0, 2.0, 2.5, 5.0, 10.0)  # auto steps are one of these × 10^k


def auto_grid_dt(follow_up: float, steps: int = AUTO_STEPS) -> float:
    """The smallest step of 1, 2, 2.5 or 5 × 10^k that covers ``follow_up`` in at
    most ``steps`` steps (so in more than ``steps`` / 2): 0.1 for 10 a.u., 0.2 for
    14 years, 100 for 5,152 days or 8,090 hours."""
    if not follow_up > 0:
        return 1.0
    raw = follow_up / steps
    k = math.floor(math.log10(raw))
    return next(
        step for step in (float(f"{m}e{k}") for m in NICE) if step >= raw * (1 - 1e-9)
    )


def resolve_grid_dt(grid_dt: float | str, cohort: Cohort, train_ids) -> float:
    """``predict.grid_dt``: a number as it is; ``auto``: :func:`auto_grid_dt` of the
    training patients' (``train_ids``) longest follow-up, in the data's unit."""
    if grid_dt != "auto":
        return float(grid_dt)
    train = cohort.subset(cohort.index_of(train_ids))
    follow_up = float(np.where(train.visits, train.times, 0.0).max())
    step = auto_grid_dt(follow_up)
    log.info(
        "predict.grid_dt auto: a step of %g %s (the training patients' longest "
        "follow-up is %g %s)",
        step,
        cohort.time_unit,
        follow_up,
        cohort.time_unit,
    )
    return step


@torch.no_grad()
def predict(
    model: CoreAccess, cohort: Cohort, grid: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Run ``model`` on every patient of ``cohort``.

    Returns three tables keyed by ``patient_id``:

    * ``params``: the individual ODE parameters (one column per parameter), as
      rates per data time unit
      (:meth:`~odevae.model.trained.CoreAccess.rates_per_data_unit`);
    * ``latents``: per visit, the encoder mean ``mu*``, log-variance ``logvar*`` and
      the ODE solution ``ode*`` from the first visit's encoder mean;
    * ``trajectories``: the ODE solution ``z*`` on the time ``grid`` (data time
      units, from the first visit's encoder mean at the first visit's time).
    """
    model.eval()
    everyone = CohortDataset(cohort).tensors  # one copy of the cohort, not n
    batch = collate(everyone | {"index": torch.arange(cohort.n)})
    batch = {k: v.to(model.device) for k, v in batch.items()}
    out = model(model.scale(batch))
    d = out["mu_enc"].shape[-1]
    ids = cohort.patient_ids

    rates = model.rates_per_data_unit(out["theta"]).cpu().numpy()
    params = pd.DataFrame(rates, columns=model.param_names)
    params.insert(0, "patient_id", ids)

    visits = batch["visits"].cpu().numpy()
    rows, slots = np.nonzero(visits)
    latents = pd.DataFrame(
        {
            "patient_id": ids[rows],
            "visit": slots,
            "time": batch["times"].cpu().numpy()[rows, slots],
        }
    )
    for name in ("mu_enc", "logvar_enc", "mu_ode"):
        values = out[name].cpu().numpy()[rows, slots]
        prefix = {"mu_enc": "mu", "logvar_enc": "logvar", "mu_ode": "ode"}[name]
        for k in range(d):
            latents[f"{prefix}{k + 1}"] = values[:, k]

    t = torch.as_tensor(grid, dtype=torch.float32, device=model.device)
    offsets = t[None, :] - batch["times"][:, :1]  # 0 when the first visit is time 0
    path = model.solve(out["mu_enc"][:, 0], out["theta"], offsets)
    path = path.cpu().numpy().reshape(-1, d)
    trajectories = pd.DataFrame(
        {"patient_id": np.repeat(ids, len(grid)), "time": np.tile(grid, cohort.n)}
    )
    for k in range(d):
        trajectories[f"z{k + 1}"] = path[:, k]
    return params, latents, trajectories


def predict_fold(
    checkpoint: str | Sequence[str],
    cohort: Cohort,
    folds: pd.DataFrame,
    fold: int,
    grid_dt: float | str,
    transforms: dict[str, str],
    *,
    mixed_model_max_patients: int = MIXED_MODEL_MAX_PATIENTS,
    selection: pd.DataFrame | None = None,
    multivariate="fit",
) -> dict[str, pd.DataFrame]:
    """Load a fold's checkpoint and predict every patient, marked train or test.

    ``checkpoint``: one checkpoint, or a list of them, best first: an ensemble
    (``tuning.ensemble``), whose predictions in data space are the members' mean
    (:func:`~odevae.evaluate.prediction.model.decoded_predictions`); the
    parameters, latent states, trajectories and latent-space predictions are the
    first member's, and the inner selection is scored again for the ensemble (a
    given ``selection`` is one candidate's).

    The trajectory grid runs from 0 in steps of ``grid_dt`` (a number, or ``auto``:
    :func:`resolve_grid_dt`) until it covers the cohort's last visit. Returns the
    tables of :func:`predict` keyed ``params``, ``latents`` and ``trajectories``,
    each with ``fold`` and ``split`` columns, and ``predictions``: the held-out
    patients' predictions in data space
    (:func:`~odevae.evaluate.prediction.model.model_predictions`) in modelling and
    original units (``transforms``: variable → transform name), and
    ``latent_predictions`` (the same in latent space, against the target visit's
    encoder mean), and
    ``selection``: the predictors' scores on the inner validation patients that
    training held out (:func:`~odevae.data.folds.fitted_and_validation`, as in
    training); the best is written as ``odevae_selected``, and ``odevae_combined``
    takes the weight fitted there. Without an inner split in ``folds`` nothing is
    scored, ``odevae_selected`` is ``odevae`` and the weight is equal. A given
    ``selection`` (tuning scored the same model on the same inner patients, rule
    ``choose`` keeps it) is used as it is instead, unless it has no ``weight``
    column (written by an older odevae): then it is scored again.
    ``multivariate``: the multivariate mixed model of ``odevae_combined`` as rule
    ``comparators`` fitted it on the fold's training patients
    (:func:`~odevae.evaluate.prediction.multivariate_mixed.load_fit`), or ``"fit"``
    to fit it here.
    """
    paths = [checkpoint] if isinstance(checkpoint, str) else list(checkpoint)
    members = [load_trained(path) for path in paths]
    model = members[0]
    if len(members) > 1:
        selection = None  # tuning scored one candidate, not the ensemble
        log.info(
            "fold %d: the predictions are the mean of an ensemble of %d models: %s",
            fold,
            len(members),
            ", ".join(paths),
        )
    train_ids, held_ids = fold_members(folds, fold)
    grid_dt = resolve_grid_dt(grid_dt, cohort, train_ids)
    t_max = float(cohort.times[cohort.visits].max())
    steps = int(np.ceil(t_max / grid_dt - 1e-9))
    if steps > MAX_GRID:
        raise InputError(
            f"a grid step of {grid_dt:g} {cohort.time_unit} over the follow-up of "
            f"{t_max:g} {cohort.time_unit} gives {steps + 1} trajectory points per "
            f"patient (at most {MAX_GRID + 1}); choose a step of at least "
            f"{t_max / MAX_GRID:.3g} (in data.time_unit)",
            key="predict.grid_dt",
        )
    log.info(
        "fold %d: the model's time scale is %.6g %s; params.tsv holds rates per %s",
        fold,
        model.time_scale,
        cohort.time_unit,
        cohort.time_unit,
    )
    grid = np.round(grid_dt * np.arange(steps + 1), 10)
    held = set(held_ids)
    tables = dict(
        zip(
            ("params", "latents", "trajectories"),
            predict(model, cohort, grid),
            strict=True,
        )
    )
    for table in tables.values():
        split = np.where(table["patient_id"].isin(held), "test", "train")
        table.insert(1, "fold", fold)
        table.insert(2, "split", split)
    train = cohort.subset(cohort.index_of(train_ids))
    cap = mixed_model_max_patients
    if selection is None or "weight" not in selection:
        selection = inner_selection(members, cohort, folds, fold, cap)
    selection = selection[SELECTION_COLUMNS]
    selected = selection.loc[selection["selected"], "predictor"].item()
    weight = selection.set_index("predictor")["weight"].get("odevae_combined")
    if weight is None or np.isnan(weight):
        weight = EQUAL_WEIGHT
        log.info(
            "fold %d: odevae_combined weighs odevae_mixed %g: no weight was fitted "
            "on inner patients (no inner split, or no multivariate mixed model "
            "there)",
            fold,
            weight,
        )
    else:
        log.info("fold %d: odevae_combined weighs odevae_mixed %.3g", fold, weight)
    heldout, latent = model_predictions(
        members,
        train,
        cohort.subset(cohort.index_of(held_ids)),
        selected,
        cap,
        weight,
        multivariate,
    )
    tables["selection"] = selection.assign(fold=fold)
    tables["predictions"] = in_both_units(heldout, transforms)
    tables["latent_predictions"] = latent
    for key in ("predictions", "latent_predictions"):
        tables[key].insert(0, "fold", fold)
    return tables
