"""Simulated cohorts with known latent dynamics (the workshop's generator).

Each patient belongs to one of several groups; every group has its own linear latent
system du/dt = A u started from the same u0. Visits: a baseline at t = 0 plus
1..maxntps follow-ups drawn on a dt grid in [t_start, t_end]. Measurement j is the
true latent dimension it is tied to (consecutive blocks of p/d variables per
dimension) plus a per-variable offset and individual noise. Baseline covariates either
carry the group's true ODE parameters (``trueparams``) or only the group label
(``groupsonly``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.linalg import expm

from odevae.errors import InputError

PARAM_NAMES_2D = ("a11", "a12", "a21", "a22")

# Defaults for the spread of baseline covariates when the config leaves them empty.
SIGMA_DEFAULTS = {"trueparams": (0.1, 0.1), "groupsonly": (1.0, 1.0)}


@dataclass(frozen=True)
class SimulatedCohort:
    """The tables a simulation writes: visits, baseline covariates and ground truth."""

    visits: pd.DataFrame
    baseline: pd.DataFrame
    truth_patients: pd.DataFrame
    truth_trajectories: pd.DataFrame


def param_names(dim: int) -> list[str]:
    """Names a{i}{j} of the entries of a dim × dim system matrix, row-major."""
    return [f"a{i + 1}{j + 1}" for i in range(dim) for j in range(dim)]


def linear_solution(A: np.ndarray, u0: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Exact solution exp(A t) u0 of du/dt = A u at each time; shape (len(times), d)."""
    return np.stack([expm(A * t) @ u0 for t in np.asarray(times, dtype=float)])


def time_grid(t_start: float, t_end: float, dt: float) -> np.ndarray:
    """The grid t_start, t_start + dt, ..., t_end (inclusive, rounded to dt)."""
    n = int(round((t_end - t_start) / dt)) + 1
    return np.round(t_start + dt * np.arange(n), 10)


def _check(cfg: dict) -> None:
    groups = cfg["groups"]
    dim = len(cfg["u0"])
    for g, group in enumerate(groups):
        A = np.asarray(group["A"], dtype=float)
        if A.shape != (dim, dim):
            raise InputError(
                f"expected a {dim}x{dim} matrix (latent dimension = len(u0)), "
                f"found shape {A.shape}",
                key=f"simulation.groups[{g}].A",
            )
    if cfg["p"] % dim:
        raise InputError(
            f"p = {cfg['p']} must be a multiple of the latent dimension {dim}",
            key="simulation.p",
        )
    if cfg["q_info"] > cfg["q"]:
        raise InputError(
            f"q_info = {cfg['q_info']} exceeds q = {cfg['q']}", key="simulation.q_info"
        )
    if not cfg["t_start"] < cfg["t_end"]:
        raise InputError(
            f"t_start = {cfg['t_start']} must be below t_end = {cfg['t_end']}",
            key="simulation.t_start",
        )
    n_info = len(cfg["baseline"]["informative_params"])
    if cfg["baseline"]["mode"] == "trueparams" and cfg["q_info"] % n_info:
        raise InputError(
            f"q_info = {cfg['q_info']} must split evenly over the {n_info} "
            "informative parameters",
            key="simulation.q_info",
        )
    names = param_names(dim)
    for name in cfg["baseline"]["informative_params"]:
        if name not in names:
            raise InputError(
                f"unknown parameter '{name}', expected one of {names}",
                key="simulation.baseline.informative_params",
            )
    grid = time_grid(cfg["t_start"], cfg["t_end"], cfg["dt"])
    if not cfg["times_with_replacement"] and cfg["maxntps"] > len(grid):
        raise InputError(
            f"maxntps = {cfg['maxntps']} distinct follow-up times do not fit on the "
            f"{len(grid)}-point grid",
            key="simulation.maxntps",
        )


def simulate_cohort(cfg: dict, seed: int) -> SimulatedCohort:
    """Simulate a cohort from the ``simulation`` config section with a seeded Generator.

    The same config and seed give identical tables.
    """
    _check(cfg)
    rng = np.random.default_rng(seed)
    n, p, q, q_info = cfg["n"], cfg["p"], cfg["q"], cfg["q_info"]
    u0 = np.asarray(cfg["u0"], dtype=float)
    dim = len(u0)
    mats = [np.asarray(g["A"], dtype=float) for g in cfg["groups"]]
    n_groups = len(mats)

    # Balanced groups in random order: as equal as n allows.
    groups = rng.permutation(np.arange(n) % n_groups)

    # Visit times: baseline at 0 plus 1..maxntps sorted follow-ups on the grid.
    grid = time_grid(cfg["t_start"], cfg["t_end"], cfg["dt"])
    ntps = rng.integers(1, cfg["maxntps"], endpoint=True, size=n)
    times = [
        np.concatenate(
            [[0.0], np.sort(rng.choice(grid, k, replace=cfg["times_with_replacement"]))]
        )
        for k in ntps
    ]

    # Measurements: latent dimension of each variable + offset + noise.
    var_dim = np.repeat(np.arange(dim), p // dim)
    offsets = rng.normal(0.0, cfg["sigma_var"], size=p)
    rows = []
    for i in range(n):
        latent = linear_solution(mats[groups[i]], u0, times[i])
        noise = rng.normal(0.0, cfg["sigma_ind"], size=(len(times[i]), p))
        x = latent[:, var_dim] + offsets + noise
        for t, xt in zip(times[i], x, strict=True):
            rows.append([_pid(i, n), t, *xt])
    visits = pd.DataFrame(rows, columns=["patient_id", "time", *_xnames(p)])

    baseline = _baseline(cfg, rng, groups, mats, n, q, q_info)
    baseline.insert(0, "patient_id", [_pid(i, n) for i in range(n)])

    names = param_names(dim)
    truth_patients = pd.DataFrame(
        {"patient_id": [_pid(i, n) for i in range(n)], "group": groups + 1}
    )
    for k, name in enumerate(names):
        truth_patients[name] = [mats[g].ravel()[k] for g in groups]

    dense = time_grid(0.0, cfg["t_end"], cfg["dt"])
    traj = []
    for g, A in enumerate(mats):
        sol = linear_solution(A, u0, dense)
        frame = pd.DataFrame(sol, columns=[f"u{d + 1}" for d in range(dim)])
        frame.insert(0, "time", dense)
        frame.insert(0, "group", g + 1)
        traj.append(frame)
    return SimulatedCohort(
        visits, baseline, truth_patients, pd.concat(traj, ignore_index=True)
    )


def _baseline(cfg, rng, groups, mats, n, q, q_info) -> pd.DataFrame:
    base = cfg["baseline"]
    mode = base["mode"]
    sd_info = base["sigma_info"]
    sd_noise = base["sigma_noise"]
    default_info, default_noise = SIGMA_DEFAULTS[mode]
    sd_info = default_info if sd_info is None else sd_info
    sd_noise = default_noise if sd_noise is None else sd_noise
    z = np.empty((n, q))
    if mode == "trueparams":
        names = param_names(mats[0].shape[0])
        idx = [names.index(name) for name in base["informative_params"]]
        per = q_info // len(idx)
        for k, param in enumerate(idx):
            means = np.array([mats[g].ravel()[param] for g in groups])
            cols = slice(k * per, (k + 1) * per)
            z[:, cols] = rng.normal(means[:, None], sd_info, size=(n, per))
    else:  # groupsonly: ∓1 by group (evenly spaced in [-1, 1] for > 2 groups)
        centres = np.linspace(-1.0, 1.0, len(mats))
        z[:, :q_info] = rng.normal(centres[groups][:, None], sd_info, size=(n, q_info))
    z[:, q_info:] = rng.normal(0.0, sd_noise, size=(n, q - q_info))
    return pd.DataFrame(z, columns=[f"z{k + 1}" for k in range(q)])


def _pid(i: int, n: int) -> str:
    return f"P{i + 1:0{len(str(n))}d}"


def _xnames(p: int) -> list[str]:
    return [f"x{j + 1}" for j in range(p)]


def write_cohort(cohort: SimulatedCohort, paths: dict[str, str | Path]) -> None:
    """Write the cohort's tables as TSV with a fixed float format (byte-stable)."""
    for key in ("visits", "baseline", "truth_patients", "truth_trajectories"):
        getattr(cohort, key).to_csv(
            paths[key], sep="\t", index=False, float_format="%.10g"
        )
