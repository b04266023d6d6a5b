"""The catalogue of latent ODE systems and the config checks that depend on it.

Torch-free, so the workflow can check a config before any job starts. The solvers
live in :mod:`odevae.model.dynamics`.
"""

from __future__ import annotations

from odevae.errors import InputError


def _all(dim: int) -> list[tuple[int, int]]:
    return [(i, j) for j in range(dim) for i in range(dim)]  # column-major


def _diag(dim: int) -> list[tuple[int, int]]:
    return [(i, i) for i in range(dim)]


def _offdiag(dim: int) -> list[tuple[int, int]]:
    return [(i, j) for i, j in _all(dim) if i != j]


#: Linear systems dx/dt = A x + b: (entries of A that carry parameters, drift b?).
LINEAR = {
    "linear_diagonal": (_diag, False),
    "linear_full": (_all, False),
    "linear_drift": (lambda dim: [], True),
    "linear_offdiagonal_inhomogeneous": (_offdiag, True),
    "linear_diagonal_inhomogeneous": (_diag, True),
    "linear_full_inhomogeneous": (_all, True),
}
NONLINEAR = ("lotka_volterra", "neural")
#: Every system's config name (``model.system``): the schema's enum equals it
#: (tests/test_systems.py) and :data:`odevae.model.dynamics.SYSTEMS` is built from it.
SYSTEM_NAMES = (*LINEAR, *NONLINEAR)

#: Parameters fixed unless config says otherwise.
DEFAULT_FIXED = {"lotka_volterra": {"beta": 1.0, "gamma": 1.0}}
#: The parameter net's output bound for ``param_bound: auto``.
DEFAULT_BOUND = {"lotka_volterra": "tanh1"}
#: Systems whose parameters act per latent axis: learned and true latents match up
#: to axis order, sign and scale. Every other system needs a general linear map.
AXIS_ALIGNED = ("linear_diagonal", "linear_diagonal_inhomogeneous", "linear_drift")


def resolve_solver(solver: str, name: str) -> str:
    """``model.solver`` with ``auto`` resolved: the closed form for linear systems,
    else torchdiffeq's ``dopri5``."""
    if solver != "auto":
        return solver
    return "closed_form" if name in LINEAR else "dopri5"


def alignment_kind(config: dict) -> str:
    """The alignment of learned onto true latents: ``evaluation.alignment`` or auto."""
    kind = config["evaluation"]["alignment"]
    if kind != "auto":
        return kind
    return "axis" if config["model"]["system"] in AXIS_ALIGNED else "affine"


def linear_layout(name: str, dim: int) -> tuple[list[tuple[int, int]], bool]:
    """Entries (row, column) of A with parameters, column-major, and the drift flag."""
    entries, drift = LINEAR[name]
    return entries(dim), drift


def linear_param_names(
    entries: list[tuple[int, int]], drift: bool, dim: int
) -> list[str]:
    """Names a<i><j> of the entries of A that carry parameters, then b1..bd."""
    names = [f"a{i + 1}{j + 1}" for i, j in entries]
    return names + ([f"b{i + 1}" for i in range(dim)] if drift else [])


def all_param_names(name: str, dim: int, neural: dict | None = None) -> list[str]:
    """Every parameter of system ``name`` (learned or fixed), in the model's order."""
    if name in LINEAR:
        return linear_param_names(*linear_layout(name, dim), dim)
    if name == "lotka_volterra":
        return ["alpha", "beta", "gamma", "delta"]
    if name == "neural":
        return [f"c{k + 1}" for k in range((neural or {}).get("n_cond", 2))]
    raise ValueError(f"unknown ODE system {name!r}, expected one of {SYSTEM_NAMES}")


def learned_param_names(
    name: str, dim: int, fixed: dict | None, neural: dict | None = None
) -> list[str]:
    """The parameters the parameter net predicts: all but the fixed ones."""
    fixed = DEFAULT_FIXED.get(name, {}) if fixed is None else fixed
    return [n for n in all_param_names(name, dim, neural) if n not in fixed]


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
    stat = loss["statistical"]
    if loss["kind"] == "statistical" and stat["weighting"] and not stat["skip_own"]:
        raise InputError(
            "inverse-variance weighting needs skip_own: true (a visit's own state "
            "alone has no variance)",
            key="loss.statistical.weighting",
        )
