"""The model's input: a padded per-patient array view of irregular visits.

A :class:`Cohort` holds n patients with up to T visits each: visit times relative to
each patient's first visit, a (n, T, p) measurement array with an observation mask
(missing values are masked, never imputed) and a (n, q) baseline covariate matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Cohort:
    """Padded arrays for n patients, T visit slots, p measurements, q covariates."""

    patient_ids: np.ndarray  # (n,) str
    times: np.ndarray  # (n, T) float, from each patient's time 0, 0 in padding
    values: np.ndarray  # (n, T, p) float, 0 where not observed
    observed: np.ndarray  # (n, T, p) bool, measurement observed
    visits: np.ndarray  # (n, T) bool, visit slot in use
    baseline: np.ndarray  # (n, q) float
    measurement_names: np.ndarray  # (p,) str
    covariate_names: np.ndarray  # (q,) str
    time_unit: str = "a.u."  # unit of ``times`` (a.u.: simulated, no unit)

    @property
    def n(self) -> int:
        return len(self.patient_ids)

    @property
    def p(self) -> int:
        return len(self.measurement_names)

    @property
    def q(self) -> int:
        return len(self.covariate_names)

    def subset(self, index: np.ndarray) -> Cohort:
        """The patients at ``index`` (in that order)."""
        return Cohort(
            self.patient_ids[index],
            self.times[index],
            self.values[index],
            self.observed[index],
            self.visits[index],
            self.baseline[index],
            self.measurement_names,
            self.covariate_names,
            self.time_unit,
        )

    def index_of(self, patient_ids) -> np.ndarray:
        """Positions of the given patient ids; KeyError names an unknown id."""
        lookup = {pid: k for k, pid in enumerate(self.patient_ids)}
        return np.array([lookup[pid] for pid in patient_ids], dtype=int)

    def summary(self) -> pd.DataFrame:
        """Per patient: number of visits, follow-up length, observed share."""
        n_visits = self.visits.sum(1)
        obs = (self.observed & self.visits[..., None]).sum((1, 2))
        return pd.DataFrame(
            {
                "patient_id": self.patient_ids,
                "n_visits": n_visits,
                "follow_up": np.where(self.visits, self.times, 0.0).max(1),
                "observed_share": obs / np.maximum(n_visits * self.p, 1),
            }
        )

    def to_long(self) -> pd.DataFrame:
        """The visits as a long table: ``patient_id, time`` and one column per
        measurement (NaN where not observed)."""
        rows, slots = np.nonzero(self.visits)
        values = np.where(self.observed, self.values, np.nan)[rows, slots]
        table = pd.DataFrame(values, columns=list(self.measurement_names))
        table.insert(0, "time", self.times[rows, slots])
        table.insert(0, "patient_id", self.patient_ids[rows])
        return table

    def save(self, path: str | Path) -> None:
        """Write to a compressed ``.npz`` (no pickled objects)."""
        np.savez_compressed(
            path,
            **{k: getattr(self, k) for k in self.__dataclass_fields__},
        )

    @classmethod
    def load(cls, path: str | Path) -> Cohort:
        with np.load(path, allow_pickle=False) as data:
            fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if "time_unit" in fields:  # absent from files written before it existed
            fields["time_unit"] = str(fields["time_unit"])
        return cls(**fields)

    def median_follow_up(self) -> float:
        """Median over patients of the time from time 0 to the last visit."""
        return float(np.median(np.where(self.visits, self.times, 0.0).max(1)))


def cohort_from_long(
    visits: pd.DataFrame,
    baseline: pd.DataFrame,
    measurement_cols: list[str],
    covariate_cols: list[str],
    id_col: str = "patient_id",
    time_col: str = "time",
    time_unit: str = "a.u.",
) -> Cohort:
    """Build a :class:`Cohort` from validated long-format tables.

    ``visits`` must already be sorted by patient and time with times relative to each
    patient's time 0; ``baseline`` must hold exactly one row per patient.
    """
    ids = visits[id_col].drop_duplicates().to_numpy()
    groups = visits.groupby(id_col, sort=False)
    counts = groups.size().loc[ids].to_numpy()
    n, T, p = len(ids), int(counts.max()), len(measurement_cols)
    times = np.zeros((n, T))
    values = np.zeros((n, T, p))
    observed = np.zeros((n, T, p), dtype=bool)
    visit_mask = np.zeros((n, T), dtype=bool)
    slot = groups.cumcount().to_numpy()
    row = np.repeat(np.arange(n), counts)
    x = visits[measurement_cols].to_numpy(dtype=float)
    times[row, slot] = visits[time_col].to_numpy(dtype=float)
    visit_mask[row, slot] = True
    observed[row, slot] = ~np.isnan(x)
    values[row, slot] = np.nan_to_num(x, nan=0.0)
    base = baseline.set_index(id_col).loc[ids, covariate_cols].to_numpy(dtype=float)
    return Cohort(
        ids.astype(str),
        times,
        values,
        observed,
        visit_mask,
        base,
        np.asarray(measurement_cols, dtype=str),
        np.asarray(covariate_cols, dtype=str),
        time_unit,
    )
