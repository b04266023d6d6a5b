"""Cleaning steps every reader shares: duplicate visits, outlier visits, patients
with too few visits, and the count of what was dropped (:class:`Drops`).

Used by the readers (:mod:`~odevae.data.ingest`, :mod:`~odevae.data.registry`) and
by :mod:`~odevae.data.preprocess`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from odevae.data.validation import place
from odevae.errors import InputError

log = logging.getLogger(__name__)


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
        places = ", ".join(place(file, i) for i in rows.index)
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
