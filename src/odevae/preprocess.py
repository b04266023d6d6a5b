"""Long-format visit tables → the model's :class:`~odevae.cohort.Cohort`.

The long-format contract (shared by simulated and real cohorts):

* a visit table with one row per patient-visit: an id column, a numeric time column
  and one column per measurement (empty cells are missing values);
* a baseline table with one row per patient: the id column and numeric covariates
  (empty cells are missing values).

Preprocessing of irregular visits (every source): visits sorted; visits without any
observed measurement dropped; exact duplicate visits collapsed; conflicting duplicates
(same patient and time, different values) an error or averaged; times shifted so each
patient's time 0 (``time_zero``: its first visit with an observed measurement, or its
first row) is at 0; patients with fewer than ``min_visits`` visits dropped;
optionally, outlier visits dropped (:func:`outlier_visits`). Every drop is counted in
:attr:`Preprocessed.drops`. A baseline covariate with missing values gets a
missingness indicator column ``<name>_missing``; its missing values stay NaN and are
imputed per fold from the training patients (:func:`odevae.data.scaling_stats`).
Notes for the preprocessing report (time 0, a hint on measurement scales) are
collected in :attr:`Preprocessed.notes`. Problems raise :class:`InputError` naming the
file, column and line.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from odevae.cohort import Cohort, cohort_from_long
from odevae.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_OPTIONS = {
    "min_visits": 2,
    "time_zero": "first_measurement",
    "duplicates": "error",
    "outlier_filter": {"score": None, "iqr_factor": 2.0},
}


def is_parquet(path: str | Path) -> bool:
    return Path(path).suffix.lower() in {".parquet", ".pq"}


def read_table(path: str | Path, id_col: str = "patient_id") -> pd.DataFrame:
    """Read a CSV, TSV (by extension) or Parquet table, ids as text ("01" stays "01").

    A missing or empty file, or one with a header only, is an :class:`InputError`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("the file does not exist", file=str(path))
    if is_parquet(path):
        try:
            table = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several types for bad files
            raise InputError(
                f"expected a Parquet file, found unreadable content ({err})",
                file=str(path),
            ) from None
        if id_col in table.columns:
            ids = table[id_col]
            table[id_col] = ids.astype(str).where(ids.notna(), None)
    else:
        table = _read_text_table(path, id_col)
    if table.empty:
        raise InputError("the file has a header but no rows", file=str(path))
    return table


def _read_text_table(path: Path, id_col: str) -> pd.DataFrame:
    """A CSV/TSV table whose index is each row's position in the file.

    Blank lines are dropped after reading, so that :func:`where` still names the
    right line; duplicated column names, undecodable bytes and ragged rows are
    input errors.
    """
    sep = "\t" if path.suffix.lower() in {".tsv", ".tab", ".txt"} else ","
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle, delimiter=sep), [])
        table = pd.read_csv(path, sep=sep, dtype={id_col: str}, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise InputError(
            "the file is empty, expected a header and rows", file=str(path)
        ) from None
    except UnicodeDecodeError as err:
        raise InputError(
            f"expected UTF-8 text, found undecodable bytes at byte {err.start} "
            "(save the file as UTF-8)",
            file=str(path),
        ) from None
    except pd.errors.ParserError as err:
        raise InputError(
            f"expected every row to have the header's {len(header)} fields, found "
            f"otherwise ({err})",
            file=str(path),
        ) from None
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise InputError(
            f"expected distinct column names, found {repeated} more than once",
            file=str(path),
            column=repeated[0],
        )
    return table[table.notna().any(axis=1)]


def check_baseline_ids(
    ids: pd.Series, visit_ids, file: str, id_col: str, needed=None
) -> None:
    """One baseline row per patient with visits: no duplicates, no row for a patient
    without visits (``visit_ids``), and a row for every patient in ``needed``
    (default: ``visit_ids``). Errors name the baseline file's line."""
    visit_ids = list(dict.fromkeys(visit_ids))
    for bad, what in (
        (ids.duplicated(), "has more than one baseline row"),
        (~ids.isin(set(visit_ids)), "has a baseline row but no visits"),
    ):
        if bad.any():
            idx = ids.index[bad.to_numpy()][0]
            raise InputError(
                f"patient {ids.loc[idx]!r} {what}",
                file=file,
                column=id_col,
                **where(file, idx),
            )
    known = set(ids)
    needed = visit_ids if needed is None else needed
    missing = [pid for pid in needed if pid not in known]
    if missing:
        raise InputError(
            f"patient {missing[0]!r} has visits but no baseline row "
            f"({len(missing)} such patients)",
            file=file,
            column=id_col,
        )


def where(file: str, index) -> dict:
    """Location keywords of a data row (its index = position in the file)."""
    if is_parquet(file):
        return {"row": int(index) + 1}
    return {"line": int(index) + 2}  # header is line 1


def require_columns(
    table: pd.DataFrame, cols: list[str], file: str, key: str | None = None
) -> None:
    for col in cols:
        if col not in table.columns:
            raise InputError(
                f"column is missing; the file has columns {list(table.columns)}",
                file=file,
                column=col,
                key=key,
            )


def numeric(table: pd.DataFrame, cols: list[str], file: str) -> pd.DataFrame:
    """Columns as float; text or infinite values raise an error naming the cell."""
    out = pd.DataFrame(index=table.index)
    for col in cols:
        raw = table[col]
        num = pd.to_numeric(raw, errors="coerce")
        bad = num.isna() & raw.notna()
        if bad.any():
            idx = bad.index[bad.to_numpy()][0]
            raise InputError(
                f"expected a number, found {raw.loc[idx]!r}",
                file=file,
                column=col,
                **where(file, idx),
            )
        inf = np.isinf(num.to_numpy(dtype=float))
        if inf.any():
            idx = table.index[inf][0]
            value = raw.loc[idx]
            shown = value if isinstance(value, str) else float(value)
            raise InputError(
                f"expected a finite number, found {shown!r}",
                file=file,
                column=col,
                **where(file, idx),
            )
        out[col] = num.astype(float)
    return out


def check_ids(ids: pd.Series, file: str, id_col: str) -> pd.Series:
    """Patient ids as text; an empty id cell is an error."""
    if ids.isna().any():
        idx = ids.index[ids.isna().to_numpy()][0]
        raise InputError(
            "expected a patient id, found an empty cell",
            file=file,
            column=id_col,
            **where(file, idx),
        )
    return ids.astype(str)


def check_times(t: pd.Series, file: str, time_col: str) -> None:
    """Visit times must be present and not negative."""
    for bad, expected in ((t.isna(), "found an empty cell"), (t < 0, "found {}")):
        if bad.any():
            idx = t.index[bad.to_numpy()][0]
            raise InputError(
                f"expected a visit time >= 0, {expected.format(t.loc[idx])}",
                file=file,
                column=time_col,
                **where(file, idx),
            )


def check_measurements_present(table: pd.DataFrame, cols: list[str], file: str):
    for col in cols:
        if table[col].isna().all():
            raise InputError(
                "every value is missing; drop the column or provide values",
                file=file,
                column=col,
            )


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float | int) else str(value)


def collapse_duplicates(
    table: pd.DataFrame,
    cols: list[str],
    file: str,
    mode: str = "error",
    id_col: str = "patient_id",
    time_col: str = "time",
) -> tuple[pd.DataFrame, int, int]:
    """Collapse exact duplicate visits; conflicting ones are an error or averaged.

    Exact duplicates agree in id, time and every column of ``cols`` (missing equals
    missing). Conflicting duplicates share patient and time but differ in a value:
    with ``mode`` ``"error"`` they raise an :class:`InputError` naming their lines,
    with ``"average"`` they become one visit with the mean of the observed values.
    The table's index must be the rows' positions in ``file``. Returns the table and
    the numbers of visits removed as exact and as averaged duplicates.
    """
    exact = table.duplicated(subset=[id_col, time_col, *cols], keep="first")
    table = table[~exact.to_numpy()]
    same = table.duplicated(subset=[id_col, time_col], keep=False)
    if not same.any():
        return table, int(exact.sum()), 0
    if mode != "average":
        first = table[same].iloc[0]
        rows = table[
            (table[id_col] == first[id_col]) & (table[time_col] == first[time_col])
        ]
        places = ", ".join(
            " ".join(f"{k} {v}" for k, v in where(file, i).items()) for i in rows.index
        )
        differ = [c for c in cols if rows[c].nunique(dropna=False) > 1]
        raise InputError(
            f"patient {first[id_col]!r} has {len(rows)} visits at time "
            f"{_shown(first[time_col])} with different values ({places}); expected one "
            "visit per patient and time (set preprocess.duplicates: average to "
            "average them)",
            file=file,
            column=differ[0] if differ else None,
        )
    n_before = len(table)
    keep_index = table.groupby([id_col, time_col], sort=False).head(1).index
    means = table.groupby([id_col, time_col], sort=False)[cols].mean()
    table = table.loc[keep_index].copy()
    key = pd.MultiIndex.from_frame(table[[id_col, time_col]])
    table[cols] = means.loc[key].to_numpy()
    return table, int(exact.sum()), n_before - len(table)


def outlier_visits(
    table: pd.DataFrame,
    score: pd.Series,
    factor: float = 2.0,
    id_col: str = "patient_id",
) -> np.ndarray:
    """Visits whose |score change vs the previous kept visit| ≥ factor · IQR(changes).

    The IQR is that of the signed changes between consecutive visits of a patient
    (both with an observed score) over the whole cohort. ``table`` must be sorted by
    patient and time. Each patient's first visit is always kept; a later visit is
    compared with the patient's last *kept* visit, so an outlier does not also take
    the visit after it. Visits without a score are kept. Returns a boolean mask
    (True = drop).
    """
    ids = table[id_col].to_numpy()
    changes = score.groupby(ids, sort=False).diff().dropna().to_numpy()
    drop = np.zeros(len(table), dtype=bool)
    if len(changes) < 2:
        return drop
    q75, q25 = np.percentile(changes, [75, 25])
    threshold = factor * (q75 - q25)
    if threshold <= 0:  # no spread in the changes: nothing stands out
        return drop
    values = score.to_numpy(dtype=float)
    previous_id, last = None, np.nan
    for i, (pid, value) in enumerate(zip(ids, values, strict=True)):
        if pid != previous_id:
            previous_id, last = pid, value
        elif not np.isnan(value):
            if not np.isnan(last) and abs(value - last) >= threshold:
                drop[i] = True
            else:
                last = value
    return drop


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


@dataclass
class Drops:
    """What preprocessing removed, per step and reason."""

    rows: list[dict] = field(default_factory=list)

    def add(self, step: str, reason: str, patients: int, visits: int) -> None:
        self.rows.append(
            {"step": step, "reason": reason, "patients": patients, "visits": visits}
        )
        if patients or visits:
            log.warning(
                "%s: dropped %d patients and %d visits: %s",
                step,
                patients,
                visits,
                reason,
            )

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["step", "reason", "patients", "visits"])


def drop_short_patients(
    table, min_visits, id_col, drops, reason_suffix="", step="preprocess"
):
    """``table`` without the patients that have fewer than ``min_visits`` rows."""
    counts = table.groupby(id_col, sort=False)[id_col].transform("size")
    short = (counts < min_visits).to_numpy()
    drops.add(
        step,
        f"fewer than {min_visits} visits{reason_suffix}",
        int(table.loc[short, id_col].nunique()),
        int(short.sum()),
    )
    return table[~short]


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
    check_times(values[time_col], file, time_col)
    check_measurements_present(values, measurement_cols, file)
    table = pd.concat([ids.rename(id_col), values], axis=1)
    empty = values[measurement_cols].isna().all(axis=1).to_numpy()
    first_row = table.groupby(id_col, sort=False)[time_col].min()
    first_measured = table[~empty].groupby(id_col, sort=False)[time_col].min()
    if empty.any():
        log.warning(
            "%s: %d visits without any observed measurement (first at %s)",
            file,
            int(empty.sum()),
            " ".join(f"{k} {v}" for k, v in where(file, table.index[empty][0]).items()),
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
    _note_time_zero(first_row, first_measured, opts["time_zero"], file, notes)
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


TIME_ZERO = {
    "first_measurement": "the patient's first visit with an observed measurement",
    "first_row": "the patient's first row of the visit table",
}


def _note_time_zero(first_row, first_measured, setting, file, notes) -> None:
    """Report time 0 and the patients whose first row has no measurement (there the
    two definitions of time 0 differ)."""
    gap = (first_measured - first_row.loc[first_measured.index]).to_numpy()
    differ = gap > 0
    notes.append(
        {
            "section": "time zero",
            "step": setting,
            "item": TIME_ZERO[setting],
            "patients": int(len(first_measured)),
        }
    )
    notes.append(
        {
            "section": "time zero",
            "step": "first row without measurements",
            "item": "largest time from first row to first measured visit",
            "patients": int(differ.sum()),
            "value": float(gap.max()) if differ.any() else 0.0,
        }
    )
    if differ.any():
        other = "first_row" if setting == "first_measurement" else "first_measurement"
        log.warning(
            "%s: %d patients have rows without any measurement before their first "
            "measured visit (up to %g time units); time 0 is %s "
            "(preprocess.time_zero: %s; %s would count from the other)",
            file,
            int(differ.sum()),
            float(gap.max()),
            TIME_ZERO[setting],
            setting,
            other,
        )


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
    for col in covariates:
        if table[col].isna().all():
            raise InputError(
                "every value is missing; drop the column or provide values",
                file=file,
                column=col,
            )
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
    notes for the report (rows of :data:`odevae.report.COLUMNS`)."""

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
