"""Long-format visit tables → the model's :class:`~odevae.data.cohort.Cohort`.

The long-format contract (shared by simulated and real cohorts):

* a visit table with one row per patient-visit: an id column, a numeric time column
  and one column per measurement (empty cells are missing values);
* a baseline table with one row per patient: the id column and numeric covariates
  (empty cells are missing values).

Preprocessing of irregular visits (every source): visits sorted; visits without any
observed measurement dropped; exact duplicate visits collapsed; conflicting duplicates
(same patient and time, different values) an error or averaged; times shifted so each
patient's time 0 (``time_zero``: its first visit with an observed measurement, or its
first row) is at 0 (raw times may be negative or start anywhere; the shift is
reported); patients with fewer than ``min_visits`` visits dropped;
optionally, outlier visits dropped (:func:`outlier_visits`). Every drop is counted in
:attr:`Preprocessed.drops`. A baseline covariate with missing values gets a
missingness indicator column ``<name>_missing``; its missing values stay NaN and are
imputed per fold from the training patients (:func:`odevae.train.data.scaling_stats`).
Notes for the preprocessing report (time 0, a hint on measurement scales) are
collected in :attr:`Preprocessed.notes`. Problems raise :class:`InputError` naming the
file, column and line (:mod:`odevae.data.validation`); the cleaning steps shared
with the readers are in :mod:`odevae.data.cleaning`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from odevae.data.cleaning import (
    Drops,
    collapse_duplicates,
    drop_short_patients,
    outlier_visits,
)
from odevae.data.cohort import Cohort, cohort_from_long
from odevae.data.report import scale_hint
from odevae.data.time_zero import TIME_ZERO, note_shift, note_time_zero
from odevae.data.validation import (
    check_baseline_ids,
    check_ids,
    check_observed,
    check_times,
    numeric,
    place,
    read_table,
    require_columns,
)
from odevae.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_OPTIONS = {
    "min_visits": 2,
    "time_zero": "first_measurement",
    "duplicates": "error",
    "outlier_filter": {"score": None, "iqr_factor": 2.0},
}


def score_of(table: pd.DataFrame, score: str, cols: list[str], file: str):
    """The outlier filter's score: ``sum`` of the measurements, or one of them."""
    if score == "sum":
        return table[cols].sum(axis=1, min_count=1)
    if score not in cols:
        raise InputError(
            f"expected 'sum' or a measurement column {cols}, found {score!r}",
            file=file,
            key="preprocess.outlier_filter.score",
        )
    return table[score]


def prepare_visits(
    visits: pd.DataFrame,
    measurement_cols: list[str],
    file: str,
    id_col: str = "patient_id",
    time_col: str = "time",
    options: dict | None = None,
    drops: Drops | None = None,
    notes: list[dict] | None = None,
) -> pd.DataFrame:
    """Validate, clean, sort and time-shift a long-format visit table.

    ``options`` are the ``preprocess`` config section (:data:`DEFAULT_OPTIONS`).
    Returns a table with columns id, time (relative to each patient's time 0, see
    ``time_zero``) and the measurements as floats, sorted by patient (first
    appearance) and time. Rows for the preprocessing report are appended to
    ``notes``.
    """
    opts = {**DEFAULT_OPTIONS, **(options or {})}
    drops = drops if drops is not None else Drops()
    notes = notes if notes is not None else []
    if opts["time_zero"] not in TIME_ZERO:
        raise InputError(
            f"expected one of {list(TIME_ZERO)}, found {opts['time_zero']!r}",
            key="preprocess.time_zero",
        )
    require_columns(visits, [id_col, time_col, *measurement_cols], file)
    ids = check_ids(visits[id_col], file, id_col)
    values = numeric(visits, [time_col, *measurement_cols], file)
    check_times(values[time_col], file, time_col, negative=True)
    check_observed(values, measurement_cols, file)
    table = pd.concat([ids.rename(id_col), values], axis=1)
    empty = values[measurement_cols].isna().all(axis=1).to_numpy()
    first_row = table.groupby(id_col, sort=False)[time_col].min()
    first_measured = table[~empty].groupby(id_col, sort=False)[time_col].min()
    if empty.any():
        log.warning(
            "%s: %d visits without any observed measurement (first at %s)",
            file,
            int(empty.sum()),
            place(file, table.index[empty][0]),
        )
    table = table[~empty]
    gone = ids.nunique() - table[id_col].nunique()
    drops.add(
        "preprocess",
        "visits without any observed measurement",
        int(gone),
        int(empty.sum()),
    )
    table, n_exact, n_avg = collapse_duplicates(
        table, measurement_cols, file, opts["duplicates"], id_col, time_col
    )
    drops.add("preprocess", "exact duplicate visits (collapsed)", 0, n_exact)
    if opts["duplicates"] == "average":
        drops.add("preprocess", "conflicting duplicate visits (averaged)", 0, n_avg)
    order = pd.Index(table[id_col].drop_duplicates())
    table = table.assign(_order=order.get_indexer(table[id_col]))
    table = table.sort_values(["_order", time_col], kind="stable").drop(
        columns="_order"
    )
    origin = first_row if opts["time_zero"] == "first_row" else first_measured
    table[time_col] = table[time_col] - table[id_col].map(origin).to_numpy()
    note_time_zero(first_row, first_measured, opts["time_zero"], file, notes)
    note_shift(values[time_col], ids, origin, file, notes)
    min_visits = opts["min_visits"]
    table = drop_short_patients(table, min_visits, id_col, drops)
    outliers = opts["outlier_filter"]
    if outliers.get("score") is not None:
        score = score_of(table, outliers["score"], measurement_cols, file)
        bad = outlier_visits(table, score, outliers["iqr_factor"], id_col)
        drops.add("preprocess", "outlier visits (score change)", 0, int(bad.sum()))
        table = drop_short_patients(
            table[~bad], min_visits, id_col, drops, " after the outlier filter"
        )
    if table.empty:
        raise InputError(
            f"no patient is left after preprocessing (every patient has fewer than "
            f"{min_visits} usable visits); lower the minimum or check the data",
            file=file,
            key="preprocess.min_visits",
        )
    return table.reset_index(drop=True)


def prepare_baseline(
    baseline: pd.DataFrame,
    patient_ids: list[str],
    file: str,
    id_col: str = "patient_id",
    keep: list[str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Validate the baseline table: one numeric row per patient of the visit table.

    ``patient_ids`` are all patients of the visit table; ``keep`` (default: all)
    those left after preprocessing, whose rows are returned. Covariates with a
    missing value among them get a ``<name>_missing`` indicator (1 = missing).
    Returns the table (id + float covariates, NaN where missing) and the covariate
    column names.
    """
    require_columns(baseline, [id_col], file)
    covariates = [c for c in baseline.columns if c != id_col]
    if not covariates:
        raise InputError("expected at least one covariate column", file=file)
    values = numeric(baseline, covariates, file)
    ids = check_ids(baseline[id_col], file, id_col)
    check_baseline_ids(ids, patient_ids, file, id_col)
    table = pd.concat([ids.rename(id_col), values], axis=1)
    if keep is not None:
        table = table.set_index(id_col).loc[list(keep)].reset_index()
    check_observed(table, covariates, file)
    indicators = [c for c in covariates if table[c].isna().any()]
    for col in indicators:
        table[f"{col}_missing"] = table[col].isna().astype(float)
        log.info(
            "%s: covariate %s missing for %d patients: imputed per fold with the "
            "training median, indicator %s_missing added",
            file,
            col,
            int(table[col].isna().sum()),
            col,
        )
    return table, covariates + [f"{c}_missing" for c in indicators]


@dataclass(frozen=True)
class Preprocessed:
    """The cohort, the visit table it came from, what was dropped on the way and
    notes for the report (rows of :data:`odevae.data.report.COLUMNS`)."""

    cohort: Cohort
    visits: pd.DataFrame
    drops: pd.DataFrame
    notes: pd.DataFrame = field(default_factory=pd.DataFrame)


def preprocess_tables(
    visits_path: str | Path,
    baseline_path: str | Path,
    options: dict | None = None,
    id_col: str = "patient_id",
    time_col: str = "time",
    measurement_cols: list[str] | None = None,
    time_unit: str = "a.u.",
    standardized: bool | None = None,
) -> Preprocessed:
    """Read the long-format tables, preprocess them and build the :class:`Cohort`.

    ``measurement_cols`` defaults to every column of the visit table other than the id
    and time columns; ``options`` are the ``preprocess`` config section;
    ``time_unit`` is the unit of the times (``a.u.`` for simulated cohorts).
    ``standardized`` (``model.standardize_measurements``, resolved) enables the hint
    on measurement scales when it is False.
    """
    vfile, bfile = str(visits_path), str(baseline_path)
    raw = read_table(visits_path, id_col)
    if measurement_cols is None:
        measurement_cols = [c for c in raw.columns if c not in (id_col, time_col)]
    if not measurement_cols:
        raise InputError("expected at least one measurement column", file=vfile)
    drops, notes = Drops(), []
    visits = prepare_visits(
        raw, measurement_cols, vfile, id_col, time_col, options, drops, notes
    )
    all_ids = list(check_ids(raw[id_col], vfile, id_col).drop_duplicates())
    ids = list(visits[id_col].drop_duplicates())
    baseline, covariates = prepare_baseline(
        read_table(baseline_path, id_col), all_ids, bfile, id_col, keep=ids
    )
    cohort = cohort_from_long(
        visits, baseline, measurement_cols, covariates, id_col, time_col, time_unit
    )
    if standardized is not None:
        scale_hint(cohort, standardized, notes)
    log.info(
        "cohort: %d patients, %d visits (%d-%d per patient), p=%d, q=%d",
        cohort.n,
        int(cohort.visits.sum()),
        int(cohort.visits.sum(1).min()),
        int(cohort.visits.sum(1).max()),
        cohort.p,
        cohort.q,
    )
    return Preprocessed(cohort, visits, drops.table(), pd.DataFrame(notes))


def preprocess(
    visits_path: str | Path,
    baseline_path: str | Path,
    id_col: str = "patient_id",
    time_col: str = "time",
    measurement_cols: list[str] | None = None,
    options: dict | None = None,
) -> Cohort:
    """:func:`preprocess_tables`, returning the :class:`Cohort` only."""
    return preprocess_tables(
        visits_path, baseline_path, options, id_col, time_col, measurement_cols
    ).cohort
