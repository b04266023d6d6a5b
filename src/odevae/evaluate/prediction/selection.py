"""Choose the model's predictor on an inner split of the training patients.

The trained model offers several predictors (:data:`~odevae.evaluate.prediction.model.
SELECTABLE`). Which one predicts best is a setting like any other, so it is chosen
without the held-out fold: every one of them predicts the fold's inner validation
patients one step ahead (the mixed model of ``odevae_mixed`` fitted on the inner
training patients only), scored as
:mod:`~odevae.evaluate.prediction.scores` scores held-out predictions, and the lowest
standardised MSE wins. Without an inner validation split in the folds table
(``train.early_stopping.inner_fraction`` 0) there is nothing honest to choose on
(the training patients would favour whatever fits them best), so
``odevae_selected`` is ``odevae``, and the table says so.

The same inner patients fit the one weight of ``odevae_combined``
(:func:`combination_weight`), before it is scored with the others; the table's
``weight`` column keeps it for the held-out prediction (NaN in the other rows, and
where nothing could be fitted: then the weights are equal). Its inner score is
therefore slightly optimistic (one parameter fitted on the patients that score
it), which is why tuning scores candidates by ``odevae`` by default.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from odevae.data.cohort import Cohort
from odevae.data.folds import fitted_and_validation, has_inner_split
from odevae.evaluate.prediction.mixed import MIXED_MODEL_MAX_PATIENTS
from odevae.evaluate.prediction.model import (
    EQUAL_WEIGHT,
    SELECTABLE,
    combined,
    decoded_predictions,
)
from odevae.evaluate.prediction.multivariate_mixed import fit_multivariate_mixed
from odevae.evaluate.prediction.scores import variable_sd
from odevae.model.trained import CoreAccess

SELECTION_COLUMNS = [
    "predictor",
    "scored_on",
    "n_patients",
    "mse",
    "selected",
    "weight",
]


def standardised_mse(
    cohort: Cohort, targets: pd.DataFrame, mean: np.ndarray, sd: np.ndarray
) -> float:
    """Mean over variables of the mean over patients of each patient's mean squared
    error, errors divided by ``sd`` (p,); unobserved targets are left out."""
    row, visit = targets["row"].to_numpy(), targets["visit"].to_numpy()
    observed = cohort.observed[row, visit]
    err = np.where(observed, ((mean - cohort.values[row, visit]) / sd) ** 2, np.nan)
    per_patient = pd.DataFrame(err).groupby(targets["patient_id"].to_numpy()).mean()
    return float(per_patient.mean().mean())


def combination_weight(
    cohort: Cohort,
    targets: pd.DataFrame,
    hybrid: np.ndarray,
    classical: np.ndarray,
    sd: np.ndarray,
) -> float:
    """The weight w in [0, 1] of ``hybrid`` in w·hybrid + (1 − w)·``classical``
    (targets × p) with the least squared error over the observed ``targets`` of
    ``cohort`` that both predict, errors divided by ``sd`` (p,): the least-squares
    w, clipped. NaN where the two never differ there (nothing to fit: e.g. the
    multivariate model could not be fitted on these patients)."""
    row, visit = targets["row"].to_numpy(), targets["visit"].to_numpy()
    used = cohort.observed[row, visit] & np.isfinite(classical) & np.isfinite(hybrid)
    y = np.where(used, cohort.values[row, visit], 0.0)
    diff = np.where(used, (hybrid - classical) / sd, 0.0)
    gain = np.where(used, (y - classical) / sd, 0.0)
    scale = float((diff * diff).sum())
    if not scale > 0:
        return float("nan")
    return float(np.clip((diff * gain).sum() / scale, 0.0, 1.0))


def select_predictor(
    model: CoreAccess | Sequence[CoreAccess],
    fitted: Cohort,
    scored: Cohort,
    scored_on: str,
    max_patients: int = MIXED_MODEL_MAX_PATIENTS,
    multivariate="fit",
) -> pd.DataFrame:
    """Score every selectable predictor on ``scored`` one step ahead, with
    ``fitted`` (the patients the model was trained on) for the population
    parameters, the residual mixed model and the SDs (``multivariate``: the
    multivariate mixed model fitted on ``fitted``, or ``"fit"``, as
    :func:`~odevae.evaluate.prediction.model.decoded_predictions` takes it, and so
    ``model``: one model or an ensemble of them). Returns
    :data:`SELECTION_COLUMNS`, one row per predictor (``odevae_combined`` with
    its weight fitted on the same one-step targets); ``selected`` marks the
    lowest MSE (the first on ties)."""
    targets, _, decoded, _ = decoded_predictions(
        model, fitted, scored, max_patients, multivariate=multivariate
    )
    one_step = (targets["horizon"] == "one_step").to_numpy()
    sd = variable_sd(fitted)
    hybrid, classical = decoded["odevae_mixed"], decoded["mixed_multivariate"]
    weight = combination_weight(
        scored, targets[one_step], hybrid[0][one_step], classical[0][one_step], sd
    )
    fitted_weight = EQUAL_WEIGHT if np.isnan(weight) else weight
    decoded["odevae_combined"] = combined(hybrid, classical, fitted_weight)
    rows = []
    for predictor in SELECTABLE:
        mean = decoded[predictor][0][one_step]
        mse = standardised_mse(scored, targets[one_step], mean, sd)
        rows.append(
            {
                "predictor": predictor,
                "scored_on": scored_on,
                "n_patients": scored.n,
                "mse": mse,
                "weight": weight if predictor == "odevae_combined" else np.nan,
            }
        )
    table = pd.DataFrame(rows)
    best = table["mse"].fillna(np.inf).to_numpy().argmin()
    table["selected"] = np.arange(len(table)) == best
    return table[SELECTION_COLUMNS]


def no_selection() -> pd.DataFrame:
    """The selection table without an inner split: ``odevae`` is kept, nothing is
    scored (``scored_on`` ``none``, MSE NaN)."""
    return pd.DataFrame(
        {
            "predictor": list(SELECTABLE),
            "scored_on": "none",
            "n_patients": 0,
            "mse": np.nan,
            "selected": [c == "odevae" for c in SELECTABLE],
            "weight": np.nan,
        }
    )[SELECTION_COLUMNS]


def inner_selection(
    model: CoreAccess | Sequence[CoreAccess],
    cohort: Cohort,
    folds: pd.DataFrame,
    fold: int,
    max_patients: int = MIXED_MODEL_MAX_PATIENTS,
    multivariate="fit",
) -> pd.DataFrame:
    """:func:`select_predictor` on fold ``fold``'s inner split as the folds table
    gives it (the patients its training fitted on and validated on,
    :func:`~odevae.data.folds.fitted_and_validation`); :func:`no_selection`
    without an inner split. ``multivariate``: :func:`inner_multivariate` of the
    same arguments (it does not depend on the model: a ``tune`` job fits it once
    for all the candidates it trains), or ``"fit"`` to fit it here."""
    if not has_inner_split(folds, fold):
        return no_selection()
    patients = fitted_and_validation(folds, fold)
    fitted, scored = (cohort.subset(cohort.index_of(ids)) for ids in patients)
    return select_predictor(
        model, fitted, scored, "inner_validation", max_patients, multivariate
    )


def inner_multivariate(
    cohort: Cohort,
    folds: pd.DataFrame,
    fold: int,
    max_patients: int = MIXED_MODEL_MAX_PATIENTS,
):
    """The multivariate mixed model that :func:`inner_selection` fits on fold
    ``fold``'s inner training patients (None where none can be fitted, or without
    an inner split)."""
    if not has_inner_split(folds, fold):
        return None
    fitted, _ = fitted_and_validation(folds, fold)
    train = cohort.subset(cohort.index_of(fitted))
    return fit_multivariate_mixed(train, max_patients=max_patients)
