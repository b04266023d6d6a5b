"""Baseline covariates of an ingested table (config section ``table``).

From a baseline table or from one row per patient of the visit table
(``table.baseline_row``): glob patterns expanded (:func:`expand_columns`),
categories one-hot encoded, transforms applied, covariates that change between
a patient's visit rows reported (:func:`covariate_changes`), and rows of a
baseline table for patients without visits dropped and counted (or, with
``table.strict_baseline``, an error).
"""

from __future__ import annotations

import fnmatch
import logging

import pandas as pd

from odevae.data.cleaning import Drops
from odevae.data.transforms import apply_transforms, one_hot, resolve_transforms
from odevae.data.validation import (
    check_baseline_ids,
    check_ids,
    fail_at_first,
    numeric,
)
from odevae.errors import InputError

log = logging.getLogger(__name__)


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


def baseline_rows(long: pd.DataFrame, setting: str, time_zero: str) -> pd.Index:
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


def table_covariates(cfg, visits, vfile, baseline, bfile, long, rows):
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


def drop_baseline_only(
    baseline: pd.DataFrame, visit_ids, cfg: dict, file: str, drops: Drops
) -> pd.DataFrame:
    """``baseline`` without the rows of patients who have no visits (a registry-wide
    baseline table), counted in ``drops`` (step ``ingest``); with
    ``table.strict_baseline`` such a row is an error naming its line."""
    id_col = cfg["id_column"]
    ids = check_ids(baseline[id_col], file, id_col)
    extra = ~ids.isin(set(visit_ids))
    if cfg.get("strict_baseline", False):
        fail_at_first(
            extra,
            lambda idx: (
                f"patient {ids.loc[idx]!r} has a baseline row but no visits "
                "(set table.strict_baseline: false to drop such rows)"
            ),
            file=file,
            column=id_col,
            key="table.strict_baseline",
        )
    drops.add("ingest", "baseline row but no visits", int(ids[extra].nunique()), 0)
    return baseline[~extra.to_numpy()]
