"""Long-format visit tables → the model's :class:`~odevae.cohort.Cohort`.

The long-format contract (shared by simulated and real cohorts):

* a visit table with one row per patient-visit: an id column, a numeric time column
  and one column per measurement (empty cells are missing values);
* a baseline table with one row per patient: the id column and numeric covariates.

Preprocessing sorts visits, shifts times so each patient's first visit is at 0 and
builds padded arrays with an observation mask. Problems raise :class:`InputError`
naming the file, column and line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from odevae.cohort import Cohort, cohort_from_long
from odevae.errors import InputError

log = logging.getLogger(__name__)


def read_table(path: str | Path, id_col: str = "patient_id") -> pd.DataFrame:
    """Read a CSV/TSV table (by extension), ids as text ("01" stays "01").

    An empty file, or one with a header only, is an :class:`InputError`.
    """
    path = Path(path)
    sep = "\t" if path.suffix in {".tsv", ".tab", ".txt"} else ","
    try:
        table = pd.read_csv(path, sep=sep, dtype={id_col: str})
    except pd.errors.EmptyDataError:
        raise InputError(
            "the file is empty, expected a header and rows", file=str(path)
        ) from None
    if table.empty:
        raise InputError("the file has a header but no rows", file=str(path))
    return table


def _line(table: pd.DataFrame, position: int) -> int:
    """File line of a data row (header is line 1)."""
    return int(position) + 2


def _require_columns(table: pd.DataFrame, cols: list[str], file: str) -> None:
    for col in cols:
        if col not in table.columns:
            raise InputError(
                f"column is missing; the file has columns {list(table.columns)}",
                file=file,
                column=col,
            )


def _numeric(table: pd.DataFrame, cols: list[str], file: str) -> pd.DataFrame:
    """Columns as float; text or infinite values raise an error naming the cell."""
    out = pd.DataFrame(index=table.index)
    for col in cols:
        raw = table[col]
        num = pd.to_numeric(raw, errors="coerce")
        bad = num.isna() & raw.notna()
        if bad.any():
            pos = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                f"expected a number, found {raw.iloc[pos]!r}",
                file=file,
                column=col,
                line=_line(table, pos),
            )
        inf = np.isinf(num.to_numpy(dtype=float))
        if inf.any():
            pos = int(np.flatnonzero(inf)[0])
            raise InputError(
                f"expected a finite number, found {raw.iloc[pos]!r}",
                file=file,
                column=col,
                line=_line(table, pos),
            )
        out[col] = num.astype(float)
    return out


def prepare_visits(
    visits: pd.DataFrame,
    measurement_cols: list[str],
    file: str,
    id_col: str = "patient_id",
    time_col: str = "time",
) -> pd.DataFrame:
    """Validate, sort and time-shift a long-format visit table.

    Visits without any observed measurement carry no information and are dropped
    (counted in the log). Returns a table with columns id, time (relative to each
    patient's first remaining visit) and the measurements as floats, sorted by
    patient (first appearance) and time.
    """
    _require_columns(visits, [id_col, time_col, *measurement_cols], file)
    ids = visits[id_col]
    if ids.isna().any():
        pos = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise InputError(
            "expected a patient id, found an empty cell",
            file=file,
            column=id_col,
            line=_line(visits, pos),
        )
    numeric = _numeric(visits, [time_col, *measurement_cols], file)
    t = numeric[time_col]
    if t.isna().any():
        pos = int(np.flatnonzero(t.isna().to_numpy())[0])
        raise InputError(
            "expected a visit time, found an empty cell",
            file=file,
            column=time_col,
            line=_line(visits, pos),
        )
    for col in measurement_cols:
        if numeric[col].isna().all():
            raise InputError(
                "every value is missing; drop the column or provide values",
                file=file,
                column=col,
            )
    table = pd.concat([ids.astype(str).rename(id_col), numeric], axis=1)
    empty = numeric[measurement_cols].isna().all(axis=1)
    if empty.any():
        log.warning(
            "%s: dropped %d visits without any observed measurement (first at line %d)",
            file,
            int(empty.sum()),
            _line(visits, int(np.flatnonzero(empty.to_numpy())[0])),
        )
        table = table[~empty.to_numpy()]
    order = pd.Index(table[id_col].drop_duplicates())
    table["_order"] = order.get_indexer(table[id_col])
    table = table.sort_values(["_order", time_col], kind="stable").drop(
        columns="_order"
    )
    first = table.groupby(id_col, sort=False)[time_col].transform("min")
    table[time_col] = table[time_col] - first
    return table.reset_index(drop=True)


def prepare_baseline(
    baseline: pd.DataFrame,
    patient_ids: list[str],
    file: str,
    id_col: str = "patient_id",
) -> tuple[pd.DataFrame, list[str]]:
    """Validate the baseline table: one numeric row per patient of the visit table.

    Returns the table (id + float covariates) and the covariate column names.
    """
    _require_columns(baseline, [id_col], file)
    covariates = [c for c in baseline.columns if c != id_col]
    if not covariates:
        raise InputError("expected at least one covariate column", file=file)
    numeric = _numeric(baseline, covariates, file)
    ids = baseline[id_col].astype(str)
    dup = ids.duplicated()
    if dup.any():
        pos = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputError(
            f"patient {ids.iloc[pos]!r} has more than one baseline row",
            file=file,
            column=id_col,
            line=_line(baseline, pos),
        )
    known = set(patient_ids)
    unknown = ~ids.isin(known)
    if unknown.any():
        pos = int(np.flatnonzero(unknown.to_numpy())[0])
        raise InputError(
            f"patient {ids.iloc[pos]!r} has a baseline row but no visits",
            file=file,
            column=id_col,
            line=_line(baseline, pos),
        )
    missing = [pid for pid in patient_ids if pid not in set(ids)]
    if missing:
        raise InputError(
            f"patient {missing[0]!r} has visits but no baseline row "
            f"({len(missing)} such patients)",
            file=file,
            column=id_col,
        )
    nan = numeric.isna().to_numpy()
    if nan.any():
        pos, col = np.argwhere(nan)[0]
        raise InputError(
            "expected a covariate value, found an empty cell",
            file=file,
            column=covariates[col],
            line=_line(baseline, pos),
        )
    return pd.concat([ids.rename(id_col), numeric], axis=1), covariates


def preprocess(
    visits_path: str | Path,
    baseline_path: str | Path,
    id_col: str = "patient_id",
    time_col: str = "time",
    measurement_cols: list[str] | None = None,
) -> Cohort:
    """Read the long-format tables and build the model's :class:`Cohort`.

    ``measurement_cols`` defaults to every column of the visit table other than the id
    and time columns.
    """
    vfile, bfile = str(visits_path), str(baseline_path)
    raw = read_table(visits_path, id_col)
    if measurement_cols is None:
        measurement_cols = [c for c in raw.columns if c not in (id_col, time_col)]
    if not measurement_cols:
        raise InputError("expected at least one measurement column", file=vfile)
    visits = prepare_visits(raw, measurement_cols, vfile, id_col, time_col)
    ids = list(visits[id_col].drop_duplicates())
    baseline, covariates = prepare_baseline(
        read_table(baseline_path, id_col), ids, bfile, id_col
    )
    cohort = cohort_from_long(
        visits, baseline, measurement_cols, covariates, id_col, time_col
    )
    log.info(
        "cohort: %d patients, %d visits (%d-%d per patient), p=%d, q=%d",
        cohort.n,
        int(cohort.visits.sum()),
        int(cohort.visits.sum(1).min()),
        int(cohort.visits.sum(1).max()),
        cohort.p,
        cohort.q,
    )
    return cohort
