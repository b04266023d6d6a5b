"""The preprocessing report: what was kept and dropped, how complete it is, and a
hint where the measurements' scales call for standardisation."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from odevae.data.cohort import Cohort

log = logging.getLogger(__name__)

COLUMNS = ["section", "step", "item", "patients", "visits", "value"]


def cohort_report(
    drops: pd.DataFrame, cohort: Cohort, notes: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One long table: drops per step and reason, the kept cohort, visits per
    patient, follow-up length (section ``follow-up (<unit>)``) and missing share per
    measurement and covariate, then ``notes`` (rows in :data:`COLUMNS`: time 0,
    covariates that change between visits, hints).

    ``drops`` has columns ``step, reason, patients, visits``; the missing shares are
    over the kept visits (measurements) and kept patients (covariates, before
    imputation).
    """
    rows = [
        {
            "section": "dropped",
            "step": r.step,
            "item": r.reason,
            "patients": r.patients,
            "visits": r.visits,
        }
        for r in drops.itertuples()
    ]
    n_visits = cohort.visits.sum(1)
    rows.append(
        {
            "section": "kept",
            "step": "all",
            "item": "cohort",
            "patients": cohort.n,
            "visits": int(n_visits.sum()),
        }
    )
    follow_up = np.where(cohort.visits, cohort.times, 0.0).max(1)
    follow = f"follow-up ({cohort.time_unit})"
    for section, values in (("visits per patient", n_visits), (follow, follow_up)):
        for stat, func in (("min", np.min), ("median", np.median), ("max", np.max)):
            rows.append({"section": section, "item": stat, "value": func(values)})
    seen = cohort.observed[cohort.visits]
    for j, name in enumerate(cohort.measurement_names):
        rows.append(
            {
                "section": "missing share",
                "step": "measurement",
                "item": name,
                "value": 1.0 - seen[:, j].mean(),
            }
        )
    for j, name in enumerate(cohort.covariate_names):
        rows.append(
            {
                "section": "missing share",
                "step": "covariate",
                "item": name,
                "value": float(np.isnan(cohort.baseline[:, j]).mean()),
            }
        )
    table = pd.DataFrame(rows, columns=COLUMNS)
    if notes is not None and not notes.empty:
        extra = notes.reindex(columns=COLUMNS)
        table = pd.concat([table, extra], ignore_index=True)
    return table.astype({"patients": "Int64", "visits": "Int64"})


SCALE_RATIO = 100.0  # measurement spreads this many times apart get a hint


def scale_hint(cohort: Cohort, standardized: bool, notes: list[dict]) -> None:
    """A warning and a report row when the measurements' standard deviations span
    :data:`SCALE_RATIO` or more and they are not standardised (0/1 columns, which
    get a Bernoulli likelihood, and constant ones left out)."""
    mask = cohort.observed & cohort.visits[..., None]
    spread = {}
    for j, name in enumerate(cohort.measurement_names):
        seen = cohort.values[..., j][mask[..., j]]
        if len(seen) < 2 or set(np.unique(seen).tolist()) <= {0.0, 1.0}:
            continue
        sd = float(np.std(seen, ddof=1))
        if sd > 0:
            spread[str(name)] = sd
    if len(spread) < 2:
        return
    low, high = min(spread, key=spread.get), max(spread, key=spread.get)
    ratio = spread[high] / spread[low]
    if standardized or ratio < SCALE_RATIO:
        return
    message = (
        f"measurement sd from {spread[low]:.3g} ({low}) to {spread[high]:.3g} "
        f"({high}), {ratio:.3g}-fold: set model.standardize_measurements: true"
    )
    log.warning("measurement scales span orders of magnitude: %s", message)
    notes.append(
        {
            "section": "hint",
            "step": "model.standardize_measurements is off",
            "item": message,
            "value": ratio,
        }
    )
