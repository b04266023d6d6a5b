"""Patient-grouped k-fold cross-validation folds, each fold's inner split of its
training patients included: the folds table (``folds.tsv``) is the one place that
says which patients each fold's model is fitted on, validated on and tested on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from odevae.errors import InputError

#: A patient's role for one fold's model (column ``role_<fold>``).
FIT, VALIDATION, TEST = "fit", "validation", "test"


def make_folds(
    patient_ids, k: int, seed: int, inner_fraction: float = 0.0
) -> pd.DataFrame:
    """Assign each patient to one of ``k`` folds (shuffled with ``seed``), and
    split each fold's training patients into fitted and inner validation patients.

    Folds split patients, not visits: all of a patient's visits are held out together.
    Patients are sorted by id before the seeded shuffle, so the order of rows in the
    input tables never changes the folds. Returns a table ``patient_id, fold,
    role_0, …, role_<k-1>`` (sorted by id) with folds numbered 0..k-1; ``role_f``
    is the patient's role for fold f's model: ``test`` (held out, fold f), ``fit``
    or ``validation`` (the inner validation share ``inner_fraction`` of the
    training patients, :func:`inner_split` seeded with ``seed + f``; none when
    ``inner_fraction`` is 0).
    """
    ids = np.sort(np.asarray(patient_ids))
    if len(np.unique(ids)) != len(ids):
        raise ValueError("patient ids must be unique")
    if k < 2:
        raise InputError(f"expected at least 2 folds, found {k}", key="cv.folds")
    if len(ids) < k:
        raise InputError(f"{len(ids)} patients cannot fill {k} folds", key="cv.folds")
    # imported here: the other functions are read by jobs that need no scikit-learn
    from sklearn.model_selection import KFold

    fold = np.empty(len(ids), dtype=int)
    splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
    for f, (_, test) in enumerate(splitter.split(ids)):
        fold[test] = f
    table = pd.DataFrame({"patient_id": ids, "fold": fold})
    for f in range(k):
        role = np.where(fold == f, TEST, FIT).astype(object)
        if inner_fraction > 0:
            train = ids[fold != f].astype(str)
            _, validation = inner_split(train, inner_fraction, seed + f)
            role[np.isin(ids.astype(str), validation)] = VALIDATION
        table[f"role_{f}"] = role
    return table


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


def roles(folds: pd.DataFrame, fold: int) -> pd.Series:
    """Each patient's role (``fit``, ``validation``, ``test``) for fold ``fold``'s
    model, indexed by patient id (str)."""
    column = f"role_{fold}"
    if column not in folds:
        raise ValueError(
            f"the folds table has no column {column!r}: make it with make_folds "
            "(rule split)"
        )
    return pd.Series(
        folds[column].to_numpy(), index=folds["patient_id"].astype(str).to_numpy()
    )


def has_inner_split(folds: pd.DataFrame, fold: int) -> bool:
    """Whether fold ``fold``'s training patients have inner validation patients."""
    return bool((roles(folds, fold) == VALIDATION).any())


def fitted_and_validation(
    folds: pd.DataFrame, fold: int
) -> tuple[np.ndarray, np.ndarray]:
    """The patients fold ``fold``'s model is fitted on, and those its ``val/*``
    metrics are computed on, as the folds table says (:func:`make_folds`): with an
    inner split, its fitted and inner validation patients; otherwise all training
    patients and the held-out fold. Training, tuning and prediction all read them
    here."""
    role = roles(folds, fold)
    validation = VALIDATION if (role == VALIDATION).any() else TEST
    return (
        role.index[role == FIT].to_numpy(),
        role.index[role == validation].to_numpy(),
    )
