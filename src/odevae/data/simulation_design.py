"""The design of a simulated cohort that its config fixes: the names of the true
parameters and the grid of visit times (numpy only, so that
:mod:`odevae.config_checks` checks a ``simulation`` section before any job starts).
"""

from __future__ import annotations

import numpy as np

LV_NAMES = ["alpha", "beta", "gamma", "delta"]


def param_names(dim: int, cfg: dict | None = None) -> list[str]:
    """Names of the true parameters in ``truth_patients.tsv``.

    Linear: a{i}{j} of A row-major (and b1..bd when a group has a drift b);
    Lotka-Volterra: alpha, beta, gamma, delta.
    """
    if cfg is not None and cfg.get("system", "linear") == "lotka_volterra":
        return list(LV_NAMES)
    names = [f"a{i + 1}{j + 1}" for i in range(dim) for j in range(dim)]
    if cfg is not None and any("b" in group for group in cfg["groups"]):
        names += [f"b{i + 1}" for i in range(dim)]
    return names


def time_grid(t_start: float, t_end: float, dt: float) -> np.ndarray:
    """The grid t_start, t_start + dt, ..., t_end (inclusive, rounded to dt)."""
    n = int(round((t_end - t_start) / dt)) + 1
    return np.round(t_start + dt * np.arange(n), 10)


def followup_grid(cfg: dict) -> np.ndarray:
    """Possible follow-up times: the dt grid on [t_start, t_end] without 0."""
    grid = time_grid(cfg["t_start"], cfg["t_end"], cfg["dt"])
    return grid[grid > 0]
