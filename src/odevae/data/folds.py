"""Patient-grouped k-fold cross-validation folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from odevae.errors import InputError


def make_folds(patient_ids, k: int, seed: int) -> pd.DataFrame:
    """Assign each patient to one of ``k`` folds (shuffled with ``seed``).

    Folds split patients, not visits: all of a patient's visits are held out together.
    Patients are sorted by id before the seeded shuffle, so the order of rows in the
    input tables never changes the folds. Returns a table ``patient_id, fold``
    (sorted by id) with folds numbered 0..k-1.
    """
    ids = np.sort(np.asarray(patient_ids))
    if len(np.unique(ids)) != len(ids):
        raise ValueError("patient ids must be unique")
    if k < 2:
        raise InputError(f"expected at least 2 folds, found {k}", key="cv.folds")
    if len(ids) < k:
        raise InputError(f"{len(ids)} patients cannot fill {k} folds", key="cv.folds")
    fold = np.empty(len(ids), dtype=int)
    splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
    for f, (_, test) in enumerate(splitter.split(ids)):
        fold[test] = f
    return pd.DataFrame({"patient_id": ids, "fold": fold})


def fold_members(folds: pd.DataFrame, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """Patient ids used for training and held out in ``fold``."""
    held = folds["fold"].to_numpy() == fold
    ids = folds["patient_id"].astype(str).to_numpy()
    return ids[~held], ids[held]


def inner_split(train_ids, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's training patients into inner training and inner validation
    patients (``fraction`` of them, at least one; seeded, independent of order).

    Model selection (early stopping) looks at the inner validation patients only,
    never at the held-out fold.
    """
    ids = np.sort(np.asarray(train_ids))
    n_val = max(1, int(round(fraction * len(ids))))
    if n_val >= len(ids):
        raise InputError(
            f"an inner validation share of {fraction} leaves no inner training "
            f"patients among {len(ids)}",
            key="train.early_stopping.inner_fraction",
        )
    order = np.random.default_rng(seed).permutation(len(ids))
    held = np.zeros(len(ids), dtype=bool)
    held[order[:n_val]] = True
    return ids[~held], ids[held]


def fitted_and_validation(
    folds: pd.DataFrame, fold: int, inner_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The patients fold ``fold``'s model is fitted on, and those its ``val/*``
    metrics are computed on: with ``inner_fraction`` > 0, the inner split of the
    training patients (seeded with ``seed + fold``, as training seeds that fold);
    otherwise all training patients and the held-out fold. Training and prediction
    both call this, so the inner validation patients are the same in both."""
    train_ids, held_ids = fold_members(folds, fold)
    if inner_fraction > 0:
        return inner_split(train_ids, inner_fraction, seed + fold)
    return train_ids, held_ids
