"""Every cross-key config check: what the schema (``workflow/schemas/
config.schema.yaml``) cannot express.

``workflow/rules/common.smk`` calls :func:`check_config` once, after the schema
filled in the defaults, so that a bad config stops before any job with one
``odevae:`` line; the library calls the same checks where it needs them
(:func:`check_simulation` in :func:`odevae.data.simulate.simulate_cohort`).
Torch-free (numpy only). Each check raises :class:`~odevae.errors.InputError`
naming the key (its ``key`` attribute holds it too).
"""

from __future__ import annotations

import copy

import numpy as np

from odevae.config_schema import schema_error
from odevae.data.simulation_design import followup_grid, param_names
from odevae.errors import InputError
from odevae.model.systems import (
    LINEAR,
    all_param_names,
    learned_param_names,
    resolve_solver,
)


def check_config(config: dict, schema: dict) -> None:
    """Every cross-key check of a schema-validated ``config`` (``schema``: the
    loaded schema, for the tuning candidates' configs)."""
    check_source(config)
    check_variable_sets(config)
    check_trained(config)
    check_tuning(config, schema)
    if config["data"]["source"] == "simulate":
        check_simulation(config["simulation"])


def _error(message: str, key: str) -> InputError:
    """An :class:`InputError` whose message names ``key`` in its own words."""
    error = InputError(message)
    error.key = key
    return error


def check_source(config: dict) -> None:
    """Keys a real-cohort source needs (the schema defaults them to null)."""
    source = config["data"]["source"]
    required = {
        "table": ["table.visits", "table.time_unit"],
        "smartcare": ["registry.visits", "registry.baseline"],
    }.get(source, [])
    for key in required:
        section, name = key.split(".")
        if config[section][name] is None:
            hint = (
                " (seconds, minutes, hours, days, weeks, months, years, or date "
                "when the column holds dates)"
                if name == "time_unit"
                else ""
            )
            raise _error(
                f"config key '{key}' is required when data.source is {source}, "
                f"found null{hint}",
                key,
            )


def check_variable_sets(config: dict) -> None:
    """Each set of ``evaluation.variable_sets`` names measurements of the cohort,
    where the config names them all (a table whose ``table.measurements`` are exact
    names, no globs); otherwise rule ``evaluate`` checks them against the data."""
    if config["data"]["source"] != "table":
        return
    measurements = config["table"]["measurements"]
    if not measurements or any(set(m) & set("*?[") for m in measurements):
        return
    for name, variables in config["evaluation"]["variable_sets"].items():
        unknown = [v for v in variables if v not in measurements]
        if unknown:
            raise InputError(
                f"{unknown} not among table.measurements {measurements}",
                key=f"evaluation.variable_sets.{name}",
            )


def check_trained(config: dict) -> None:
    """The checks of what a trained model depends on: :func:`check_model_config`,
    and a simulated cohort's latent dimension."""
    check_model_config(config)
    dim, u0 = config["model"]["latent_dim"], config["simulation"]["u0"]
    if config["data"]["source"] == "simulate" and dim != len(u0):
        raise _error(
            f"config key 'model.latent_dim' = {dim} must equal the simulated "
            f"latent dimension len(simulation.u0) = {len(u0)}, so that learned and "
            "true trajectories can be compared",
            "model.latent_dim",
        )


def candidate_config(config: dict, name: str) -> dict:
    """``config`` with tuning candidate ``name``'s overrides merged in."""
    merged = copy.deepcopy(config)
    _update(merged, copy.deepcopy(config["tuning"]["candidates"][name]))
    return merged


def _update(config: dict, overrides: dict) -> None:
    """Merge ``overrides`` into ``config`` recursively (as Snakemake's
    ``update_config``)."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            _update(config[key], value)
        else:
            config[key] = value


def check_tuning(config: dict, schema: dict) -> None:
    """Tuning needs inner validation patients; each candidate overrides only the
    model, loss and train sections and is a valid config itself."""
    candidates = config["tuning"]["candidates"]
    if not candidates:
        return
    inner = config["train"]["early_stopping"]["inner_fraction"]
    if inner <= 0:
        raise _error(
            "config key 'tuning.candidates' chooses on inner validation patients: "
            "set train.early_stopping.inner_fraction > 0 (e.g. 0.2)",
            "train.early_stopping.inner_fraction",
        )
    for name, overrides in candidates.items():
        where = f"tuning candidate '{name}': "
        other = sorted(set(overrides) - {"model", "loss", "train"})
        if other:
            key = f"tuning.candidates.{name}.{other[0]}"
            raise _error(
                f"config key '{key}': a candidate overrides only the model, loss "
                "and train sections",
                key,
            )
        merged = candidate_config(config, name)
        if merged["train"]["early_stopping"]["inner_fraction"] != inner:
            key = f"tuning.candidates.{name}.train.early_stopping.inner_fraction"
            raise _error(
                f"config key '{key}': every candidate is scored on the same inner "
                "validation patients, so it cannot change the inner split",
                key,
            )
        problem = schema_error(merged, schema)
        if problem is not None:
            raise _error(where + problem, f"tuning.candidates.{name}")
        try:
            check_trained(merged)
        except InputError as error:
            raise _error(f"{where}{error}", error.key) from None


def check_model_config(config: dict) -> None:
    """Cross-key checks of ``model`` and ``loss``; raises :class:`InputError`."""
    model, loss = config["model"], config["loss"]
    name, dim = model["system"], model["latent_dim"]
    if name == "lotka_volterra" and dim != 2:
        raise InputError(
            f"lotka_volterra is a 2-d system, found latent_dim = {dim}",
            key="model.latent_dim",
        )
    names = all_param_names(name, dim, model["neural"])
    fixed = model["fixed_params"]
    unknown = sorted(set(fixed or {}) - set(names))
    if unknown:
        raise InputError(
            f"{name} has no parameter(s) {unknown}, expected names among {names}",
            key="model.fixed_params",
        )
    if not learned_param_names(name, dim, fixed, model["neural"]):
        raise InputError(
            f"every parameter of {name} is fixed: nothing is left to learn",
            key="model.fixed_params",
        )
    if model["solver"] == "closed_form" and name not in LINEAR:
        raise InputError(
            f"{name} has no closed-form solution: use a torchdiffeq method (or auto)",
            key="model.solver",
        )
    closed = resolve_solver(model["solver"], name) == "closed_form"
    if model["adjoint"] and closed:
        raise InputError(
            "the adjoint method applies to torchdiffeq solvers, but the solver is the "
            "closed form: set model.solver to a torchdiffeq method or adjoint: false",
            key="model.adjoint",
        )
    simulated = config.get("data", {}).get("source", "simulate") == "simulate"
    fixes_rates = bool(fixed) or name == "lotka_volterra"
    if model.get("time_scale", "auto") == "auto" and fixes_rates and not simulated:
        raise InputError(
            f"{name} with fixed parameters counts them per internal time unit, and "
            "with time_scale auto that unit is each fold's median follow-up: set "
            "model.time_scale to a number (in data.time_unit) so that the fixed "
            "values mean the same in every fold",
            key="model.time_scale",
        )
    if model.get("history_state") is True and model.get("history", "none") != "gru":
        raise InputError(
            "model.history_state corrects the forecast's latent state from the "
            "visits seen so far, which the history encoder reads: set "
            "model.history: gru (or history_state: false)",
            key="model.history_state",
        )
    stat = loss["statistical"]
    if loss["kind"] == "statistical" and stat["weighting"] and not stat["skip_own"]:
        raise InputError(
            "inverse-variance weighting needs skip_own: true (a visit's own state "
            "alone has no variance)",
            key="loss.statistical.weighting",
        )


def check_simulation(cfg: dict) -> None:
    """Cross-key checks of a ``simulation`` section (``cfg``)."""
    _check_groups(cfg)
    dim = len(cfg["u0"])
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
    names = param_names(dim, cfg)
    trueparams = cfg["baseline"]["mode"] == "trueparams"
    for name in cfg["baseline"]["informative_params"] if trueparams else []:
        if name not in names:
            raise InputError(
                f"unknown parameter '{name}', expected one of {names}",
                key="simulation.baseline.informative_params",
            )
    if cfg["minntps"] > cfg["maxntps"]:
        raise InputError(
            f"minntps = {cfg['minntps']} exceeds maxntps = {cfg['maxntps']}",
            key="simulation.minntps",
        )
    grid = followup_grid(cfg)
    if not cfg["times_with_replacement"] and cfg["maxntps"] > len(grid):
        raise InputError(
            f"maxntps = {cfg['maxntps']} distinct follow-up times do not fit on the "
            f"{len(grid)}-point grid",
            key="simulation.maxntps",
        )


def _check_groups(cfg: dict) -> None:
    """The groups' systems against ``u0``."""
    dim = len(cfg["u0"])
    lv = cfg["system"] == "lotka_volterra"
    if lv and dim != 2:
        raise InputError(
            f"Lotka-Volterra is 2-d: u0 needs 2 values, found {dim}",
            key="simulation.u0",
        )
    for g, group in enumerate(cfg["groups"]):
        need, other = ("params", "A") if lv else ("A", "params")
        key = f"simulation.groups[{g}]"
        if need not in group:
            raise InputError(
                f"a {cfg['system']} group needs '{need}', found keys {sorted(group)}",
                key=key,
            )
        extra = [k for k in (other, "b") if k in group and (lv or k != "b")]
        if extra:
            raise InputError(
                f"'{extra[0]}' does not apply to a {cfg['system']} system",
                key=f"{key}.{extra[0]}",
            )
        if lv:
            if len(group["params"]) != 4:
                raise InputError(
                    "expected 4 rates [alpha, beta, gamma, delta], found "
                    f"{len(group['params'])}",
                    key=f"{key}.params",
                )
            continue
        A = np.asarray(group["A"], dtype=float)
        if A.shape != (dim, dim):
            raise InputError(
                f"expected a {dim}x{dim} matrix (latent dimension = len(u0)), "
                f"found shape {A.shape}",
                key=f"{key}.A",
            )
        if "b" in group and len(group["b"]) != dim:
            raise InputError(
                f"expected {dim} values (latent dimension = len(u0)), found "
                f"{len(group['b'])}",
                key=f"{key}.b",
            )
