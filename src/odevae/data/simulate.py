"""Simulated cohorts with known latent dynamics (the workshop's and papers' generator).

Each patient belongs to one of several groups; every group has its own latent system
started from the same u0: linear du/dt = A u (+ b), or Lotka-Volterra with rates
(α, β, γ, δ). Visits: a baseline at t = 0 plus minntps..maxntps follow-ups drawn on a
dt grid in [t_start, t_end] (times > 0). Measurement j is the
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
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from odevae.config_checks import check_simulation
from odevae.data.simulation_design import (
    followup_grid,
    param_names,
    time_grid,
)
from odevae.data.tables import write_tsv

# Defaults for the spread of baseline covariates when the config leaves them empty.
SIGMA_DEFAULTS = {"trueparams": (0.1, 0.1), "groupsonly": (1.0, 1.0)}


@dataclass(frozen=True)
class SimulatedCohort:
    """The tables a simulation writes: visits, baseline covariates and ground truth."""

    visits: pd.DataFrame
    baseline: pd.DataFrame
    truth_patients: pd.DataFrame
    truth_trajectories: pd.DataFrame


def linear_solution(
    A: np.ndarray, u0: np.ndarray, times: np.ndarray, b: np.ndarray | None = None
) -> np.ndarray:
    """Exact solution of du/dt = A u + b at each time; shape (len(times), d).

    Uses the exponential of the augmented matrix [[A, b], [0, 0]], exact also for
    singular A.
    """
    d = len(u0)
    M = np.zeros((d + 1, d + 1))
    M[:d, :d] = A
    if b is not None:
        M[:d, d] = b
    x0 = np.append(u0, 1.0)
    return np.stack([(expm(M * t) @ x0)[:d] for t in np.asarray(times, dtype=float)])


def lotka_volterra_solution(
    rates: np.ndarray, u0: np.ndarray, times: np.ndarray
) -> np.ndarray:
    """du1 = α u1 − β u1 u2, du2 = γ u1 u2 − δ u2 solved to 1e-10 at ``times``."""
    alpha, beta, gamma, delta = rates

    def field(t, u):
        return [alpha * u[0] - beta * u[0] * u[1], gamma * u[0] * u[1] - delta * u[1]]

    times = np.asarray(times, dtype=float)
    order = np.argsort(times)
    sol = solve_ivp(
        field,
        (0.0, float(times.max(initial=0.0))),
        u0,
        t_eval=times[order],
        method="DOP853",
        rtol=1e-10,
        atol=1e-10,
    )
    out = np.empty((len(times), 2))
    out[order] = sol.y.T
    return out


def group_parameters(cfg: dict, group: dict) -> np.ndarray:
    """A group's true parameters in the order of :func:`param_names`."""
    if cfg["system"] == "lotka_volterra":
        return np.asarray(group["params"], dtype=float)
    dim = len(cfg["u0"])
    A = np.asarray(group["A"], dtype=float).ravel()
    if any("b" in g for g in cfg["groups"]):
        return np.concatenate([A, np.asarray(group.get("b", [0.0] * dim), float)])
    return A


def group_solution(cfg: dict, group: dict, times: np.ndarray) -> np.ndarray:
    """The true latent trajectory of ``group`` at ``times``: (len(times), d)."""
    u0 = np.asarray(cfg["u0"], dtype=float)
    if cfg["system"] == "lotka_volterra":
        return lotka_volterra_solution(np.asarray(group["params"], float), u0, times)
    b = group.get("b")
    return linear_solution(
        np.asarray(group["A"], float), u0, times, None if b is None else np.asarray(b)
    )


def simulate_cohort(cfg: dict, seed: int) -> SimulatedCohort:
    """Simulate a cohort from the ``simulation`` config section with a seeded Generator.

    The same config and seed give identical tables.
    """
    check_simulation(cfg)
    rng = np.random.default_rng(seed)
    n, p, q, q_info = cfg["n"], cfg["p"], cfg["q"], cfg["q_info"]
    dim = len(cfg["u0"])
    specs = cfg["groups"]
    params = [group_parameters(cfg, g) for g in specs]
    n_groups = len(specs)

    # Balanced groups in random order: as equal as n allows.
    groups = rng.permutation(np.arange(n) % n_groups)

    # Visit times: baseline at 0 plus 1..maxntps sorted follow-ups on the grid.
    grid = followup_grid(cfg)
    ntps = rng.integers(cfg["minntps"], cfg["maxntps"], endpoint=True, size=n)
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
        latent = group_solution(cfg, specs[groups[i]], times[i])
        noise = rng.normal(0.0, cfg["sigma_ind"], size=(len(times[i]), p))
        x = latent[:, var_dim] + offsets + noise
        for t, xt in zip(times[i], x, strict=True):
            rows.append([_pid(i, n), t, *xt])
    visits = pd.DataFrame(rows, columns=["patient_id", "time", *_xnames(p)])

    baseline = _baseline(cfg, rng, groups, params, n, q, q_info)
    baseline.insert(0, "patient_id", [_pid(i, n) for i in range(n)])

    names = param_names(dim, cfg)
    truth_patients = pd.DataFrame(
        {"patient_id": [_pid(i, n) for i in range(n)], "group": groups + 1}
    )
    for k, name in enumerate(names):
        truth_patients[name] = [params[g][k] for g in groups]

    dense = time_grid(0.0, cfg["t_end"], cfg["dt"])
    traj = []
    for g, spec in enumerate(specs):
        sol = group_solution(cfg, spec, dense)
        frame = pd.DataFrame(sol, columns=[f"u{d + 1}" for d in range(dim)])
        frame.insert(0, "time", dense)
        frame.insert(0, "group", g + 1)
        traj.append(frame)
    return SimulatedCohort(
        visits, baseline, truth_patients, pd.concat(traj, ignore_index=True)
    )


def _baseline(cfg, rng, groups, params, n, q, q_info) -> pd.DataFrame:
    base = cfg["baseline"]
    mode = base["mode"]
    sd_info = base["sigma_info"]
    sd_noise = base["sigma_noise"]
    default_info, default_noise = SIGMA_DEFAULTS[mode]
    sd_info = default_info if sd_info is None else sd_info
    sd_noise = default_noise if sd_noise is None else sd_noise
    z = np.empty((n, q))
    if mode == "trueparams":
        names = param_names(len(cfg["u0"]), cfg)
        idx = [names.index(name) for name in base["informative_params"]]
        per = q_info // len(idx)
        for k, param in enumerate(idx):
            means = np.array([params[g][param] for g in groups])
            cols = slice(k * per, (k + 1) * per)
            z[:, cols] = rng.normal(means[:, None], sd_info, size=(n, per))
    else:  # groupsonly: ∓1 by group (evenly spaced in [-1, 1] for > 2 groups)
        centres = np.linspace(-1.0, 1.0, len(params))
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
        write_tsv(getattr(cohort, key), paths[key], digits=10)
