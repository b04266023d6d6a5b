"""The held-out prediction targets shared by the model and every comparator.

A target is visit j ≥ 1 of a patient, predicted from that patient's first
``n_history`` visits (and baseline covariates) only:

* ``one_step``: from visits 0..j−1 (``n_history = j``);
* ``from_first``: from visit 0 alone (``n_history = 1``), what the papers plot;
* ``from_first_two``: from visits 0 and 1 (``n_history = 2``, targets j ≥ 2).

Predictions are arrays (targets × p) aligned with the rows of the target table;
:func:`long_table` turns them into the long table every rule writes.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pandas as pd

from odevae.data.cohort import Cohort
from odevae.data.transforms import TRANSFORMS

HORIZONS = {"one_step": None, "from_first": 1, "from_first_two": 2}

#: Columns of the long prediction table (before ``fold`` and ``units`` are added).
COLUMNS = [
    "patient_id",
    "visit",
    "time",
    "horizon",
    "n_history",
    "method",
    "variable",
    "observed",
    "predicted",
    "sd",
]


def prediction_targets(cohort: Cohort) -> pd.DataFrame:
    """Every (patient, visit j ≥ 1, horizon) of ``cohort``.

    Columns: ``row`` (the patient's index in ``cohort``), ``patient_id``, ``visit``
    (j), ``time`` (t_j), ``horizon`` and ``n_history`` (the visits 0..n_history−1
    a method may read). Ordered by horizon, patient and visit.
    """
    rows, slots = np.nonzero(cohort.visits)
    later = slots >= 1
    rows, slots = rows[later], slots[later]
    parts = []
    for horizon, fixed in HORIZONS.items():
        n_history = slots if fixed is None else np.full_like(slots, fixed)
        keep = slots >= n_history
        parts.append(
            pd.DataFrame(
                {
                    "row": rows[keep],
                    "patient_id": cohort.patient_ids[rows[keep]],
                    "visit": slots[keep],
                    "time": cohort.times[rows[keep], slots[keep]],
                    "horizon": horizon,
                    "n_history": n_history[keep],
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


#: Most target × visit-slot cells one pass over the targets holds. A larger cohort
#: (a registry's thousands of patients with up to hundreds of visits) goes in
#: passes of targets with similar history lengths, each padded to its longest
#: history only; below it (every shipped preset) one pass holds every target.
MAX_TARGET_CELLS = 2**22


def target_passes(n_history: np.ndarray, width: int) -> list[tuple[np.ndarray, int]]:
    """Groups of target positions and the visit slots each group reads: all
    targets and ``width`` when ``len(n_history) · width`` is at most
    :data:`MAX_TARGET_CELLS`, else targets sorted by ``n_history`` in groups of
    at most that many cells, each padded to its own longest history."""
    if len(n_history) * width <= MAX_TARGET_CELLS:
        return [(np.arange(len(n_history)), width)]
    order = np.argsort(n_history, kind="stable")
    passes, start = [], 0
    while start < len(order):
        # the group's longest history is its last (sorted); grow while it fits
        stop = start + 1
        while stop < len(order):
            step = min(len(order) - stop, max(1, stop - start))
            cells = (stop + step - start) * int(n_history[order[stop + step - 1]])
            if cells > MAX_TARGET_CELLS:
                break
            stop += step
        group = order[start:stop]
        passes.append((group, int(n_history[group].max())))
        start = stop
    return passes


def history_mask(cohort: Cohort, targets: pd.DataFrame) -> np.ndarray:
    """(targets, T) bool: the visit slots each target may read (its history)."""
    slots = np.arange(cohort.visits.shape[1])
    history = slots[None, :] < targets["n_history"].to_numpy()[:, None]
    return history & cohort.visits[targets["row"].to_numpy()]


def in_history_passes(cohort_arg: int):
    """Decorate a predictor ``f(..., cohort, targets, ...)`` (``cohort`` the
    positional argument at ``cohort_arg``, ``targets`` the next) whose results
    are arrays (or a tuple of arrays) with one row per target, reading only each
    target's history: for a large cohort it runs once per pass of
    :func:`target_passes` on the cohort's visit slots trimmed to the pass's longest
    history, and the rows are put back in the targets' order; below the cap (every
    shipped preset) it runs once, as it is."""

    def decorate(predictor):
        @functools.wraps(predictor)
        def wrapper(*args, **kwargs):
            cohort, targets = args[cohort_arg], args[cohort_arg + 1]
            passes = target_passes(
                targets["n_history"].to_numpy(), cohort.visits.shape[1]
            )
            if len(passes) == 1:
                return predictor(*args, **kwargs)
            results = []
            for group, width in passes:
                part = list(args)
                part[cohort_arg] = trimmed(cohort, width)
                part[cohort_arg + 1] = targets.iloc[group].reset_index(drop=True)
                results.append(predictor(*part, **kwargs))
            order = np.argsort(np.concatenate([group for group, _ in passes]))
            if isinstance(results[0], tuple):
                return tuple(
                    np.concatenate(arrays)[order]
                    for arrays in zip(*results, strict=True)
                )
            return np.concatenate(results)[order]

        return wrapper

    return decorate


def trimmed(cohort: Cohort, width: int) -> Cohort:
    """``cohort`` with its visit slots cut to the first ``width``."""
    return dataclasses.replace(
        cohort,
        times=cohort.times[:, :width],
        values=cohort.values[:, :width],
        observed=cohort.observed[:, :width],
        visits=cohort.visits[:, :width],
    )


def long_table(
    cohort: Cohort,
    targets: pd.DataFrame,
    method: str,
    predicted: np.ndarray,
    sd: np.ndarray | None = None,
) -> pd.DataFrame:
    """Predictions (targets × p) of ``method`` as rows of :data:`COLUMNS`.

    ``observed`` is the target visit's value (NaN where it was not measured);
    ``sd`` is the method's predictive standard deviation (NaN where it has none).
    """
    n, p = len(targets), cohort.p
    predicted = np.asarray(predicted, dtype=float).reshape(n, p)
    sd = np.full((n, p), np.nan) if sd is None else np.asarray(sd, float).reshape(n, p)
    row, visit = targets["row"].to_numpy(), targets["visit"].to_numpy()
    observed = np.where(
        cohort.observed[row, visit], cohort.values[row, visit], np.nan
    ).reshape(n, p)
    table = pd.DataFrame(
        {
            key: np.repeat(targets[key].to_numpy(), p)
            for key in ("patient_id", "visit", "time", "horizon", "n_history")
        }
    )
    table["method"] = method
    table["variable"] = np.tile(cohort.measurement_names, n)
    table["observed"] = observed.ravel()
    table["predicted"] = predicted.ravel()
    table["sd"] = sd.ravel()
    return table[COLUMNS]


def in_both_units(table: pd.DataFrame, transforms: dict[str, str]) -> pd.DataFrame:
    """``table`` in modelling units and back-transformed to the original units,
    stacked with a ``units`` column (``model`` / ``original``).

    ``transforms`` maps variables to the names of
    :data:`odevae.data.transforms.TRANSFORMS`
    (variables not in it are untransformed). Observed and predicted values go
    through the inverse transform; the sd by the delta method, |f'(predicted)|·sd.
    """
    original = table.copy()
    for variable, name in transforms.items():
        if name == "none":
            continue
        rows = original["variable"] == variable
        inverse = TRANSFORMS[name][1]
        pred = original.loc[rows, "predicted"].to_numpy(dtype=float)
        step = 1e-4 * np.maximum(np.abs(pred), 1.0)
        slope = (inverse(pred + step) - inverse(pred - step)) / (2 * step)
        original.loc[rows, "sd"] = np.abs(slope) * original.loc[rows, "sd"]
        for column in ("observed", "predicted"):
            values = original.loc[rows, column].to_numpy(dtype=float)
            original.loc[rows, column] = inverse(values)
    return pd.concat(
        [table.assign(units="model"), original.assign(units="original")],
        ignore_index=True,
    )
