"""Value and time-unit conversions: the transform catalogue (:data:`TRANSFORMS`),
per-column transforms and their inverse, one-hot encoding, and time units.

A transform maps a measurement or covariate from the user's units into modelling
units (``table.transforms``, ``registry.items_0_6``…); its inverse maps predictions
back for figures and tables.
"""

from __future__ import annotations

import fnmatch
import logging

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from odevae.data.validation import fail_at_first
from odevae.errors import InputError

log = logging.getLogger(__name__)

# length of each time unit in days (a month is a twelfth of a Julian year)
DAYS_PER = {
    "seconds": 1.0 / 86400,
    "minutes": 1.0 / 1440,
    "hours": 1.0 / 24,
    "days": 1.0,
    "weeks": 7.0,
    "months": 365.25 / 12,
    "years": 365.25,
}
UNITS = tuple(DAYS_PER)


def _item_map(levels: int) -> np.ndarray:
    """SMArtCARE recoding of item scores 0..levels onto (0, 1) (before the logit)."""
    return {
        2: np.array([0.1, 0.5, 0.9]),
        # CHOP-INTEND's 0..4 items: the 0..2 map's even spacing over (0.1, 0.9)
        4: np.array([0.1, 0.3, 0.5, 0.7, 0.9]),
        6: np.array([0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9]),
    }[levels]


def _recode(x, levels):
    x = np.asarray(x, dtype=float)
    out = np.full(x.shape, np.nan)
    ok = ~np.isnan(x)
    out[ok] = logit(_item_map(levels)[x[ok].astype(int)])
    return out


def _decode(y, levels):
    """Inverse of the item recoding: model units → item score (continuous).

    0..2 items: the paper's back-transform (sigmoid − 0.1) · 2.5 (0..4 items:
    (sigmoid − 0.1) · 5); 0..6 items: the piecewise-linear inverse of their map
    (clamped to 0..6).
    """
    p = expit(np.asarray(y, dtype=float))
    if levels in (2, 4):
        return (p - 0.1) * levels / 0.8
    grid = _item_map(levels)
    return np.interp(p, grid, np.arange(len(grid)))


# name → (forward, inverse, valid-domain test, domain in words)
TRANSFORMS = {
    "none": (lambda x: x, lambda y: y, lambda x: np.ones_like(x, bool), "any number"),
    "log": (np.log, np.exp, lambda x: x > 0, "a value > 0"),
    "log1p": (np.log1p, np.expm1, lambda x: x > -1, "a value > -1"),
    "logit": (logit, expit, lambda x: (x > 0) & (x < 1), "a value in (0, 1)"),
    "item_0_2": (
        lambda x: _recode(x, 2),
        lambda y: _decode(y, 2),
        lambda x: np.isin(x, [0, 1, 2]),
        "an item score 0, 1 or 2",
    ),
    "item_0_4": (
        lambda x: _recode(x, 4),
        lambda y: _decode(y, 4),
        lambda x: np.isin(x, np.arange(5)),
        "an item score 0..4",
    ),
    "item_0_6": (
        lambda x: _recode(x, 6),
        lambda y: _decode(y, 6),
        lambda x: np.isin(x, np.arange(7)),
        "an item score 0..6",
    ),
}


def resolve_transforms(spec: dict[str, str], columns: list[str]) -> dict[str, str]:
    """Transform per column: the first pattern of ``spec`` (name or glob) it matches."""
    out = {}
    for col in columns:
        for pattern, name in spec.items():
            if col == pattern or fnmatch.fnmatchcase(col, pattern):
                out[col] = name
                break
    return out


def apply_transforms(
    table: pd.DataFrame, transforms: dict[str, str], file: str, key: str | None
) -> pd.DataFrame:
    """Apply per-column transforms; a value outside the domain names its cell (and
    the config key ``key.<column>`` that chose the transform, if any)."""
    table = table.copy()
    for col, name in transforms.items():
        col_key = f"{key}.{col}" if key else None
        if name not in TRANSFORMS:
            raise InputError(
                f"unknown transform {name!r}; expected one of {sorted(TRANSFORMS)}",
                key=col_key,
            )
        forward, _, valid, domain = TRANSFORMS[name]
        x = table[col].to_numpy(dtype=float)
        bad = ~np.isnan(x) & ~valid(x)
        fail_at_first(
            bad,
            lambda idx, x=x, bad=bad, name=name, domain=domain: (
                f"transform {name!r} needs {domain}, found {x[bad][0]:g}"
            ),
            file=file,
            column=col,
            key=col_key,
            index=table.index,
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            table[col] = forward(x)
    return table


def inverse_transform(table: pd.DataFrame, transforms: dict[str, str]) -> pd.DataFrame:
    """Model units → original units for the transformed columns (for figures)."""
    table = table.copy()
    for col, name in transforms.items():
        if col in table.columns:
            table[col] = TRANSFORMS[name][1](table[col].to_numpy(dtype=float))
    return table


def one_hot(
    table: pd.DataFrame, categorical: list[str]
) -> tuple[pd.DataFrame, list[str]]:
    """One-hot encode ``categorical`` columns (levels sorted; the first is dropped).

    A missing category gives missing (NaN) indicators. Returns the table and the new
    column names in place of each categorical column.
    """
    parts, names = [], []
    for col in table.columns:
        if col not in categorical:
            parts.append(table[[col]])
            names.append(col)
            continue
        raw = table[col]
        levels = sorted(raw.dropna().astype(str).unique())
        for level in levels[1:]:
            name = f"{col}_{level}"
            dummy = (raw.astype(str) == level).astype(float).where(raw.notna())
            parts.append(dummy.rename(name).to_frame())
            names.append(name)
        log.info("covariate %s: levels %s (reference %s)", col, levels, levels[0])
    return pd.concat(parts, axis=1), names
