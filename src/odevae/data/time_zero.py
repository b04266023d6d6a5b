"""Each patient's time 0 (``preprocess.time_zero``) and the shift of the raw
times onto it, as notes for the preprocessing report
(:data:`odevae.data.report.COLUMNS`, section ``time zero``) and the log."""

from __future__ import annotations

import logging

import pandas as pd

log = logging.getLogger(__name__)


TIME_ZERO = {
    "first_measurement": "the patient's first visit with an observed measurement",
    "first_row": "the patient's first row of the visit table",
}


def note_time_zero(first_row, first_measured, setting, file, notes) -> None:
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


def note_shift(
    raw: pd.Series, ids: pd.Series, origin: pd.Series, file: str, notes: list[dict]
) -> None:
    """Report the raw times before 0 and where each patient's time 0 lies in the raw
    times (``origin``: patient → raw time of its time 0), i.e. the shift applied.

    ``raw`` are all rows' times and ``ids`` their patients, before any drop; raw
    times may be negative (e.g. days from enrolment with measurements before it).
    """
    before = (raw < 0).to_numpy()
    origin = origin.dropna()
    moved = int((origin != 0).sum())
    notes.append(
        {
            "section": "time zero",
            "step": "raw times before 0",
            "item": "rows with a negative raw time; value: the earliest raw time",
            "patients": int(ids[before].nunique()),
            "visits": int(before.sum()),
            "value": float(raw.min()),
        }
    )
    for item, value in (("smallest", origin.min()), ("largest", origin.max())):
        notes.append(
            {
                "section": "time zero",
                "step": "shift",
                "item": f"{item} raw time of a time 0 (subtracted from the times)",
                "patients": moved,
                "value": float(value),
            }
        )
    if before.any() or moved:
        log.info(
            "%s: %d patients have raw times before 0 (earliest %g); time 0 lies at "
            "raw times %g to %g, %d patients shifted",
            file,
            int(ids[before].nunique()),
            float(raw.min()),
            float(origin.min()),
            float(origin.max()),
            moved,
        )
