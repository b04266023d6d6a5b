"""The catalogue of latent ODE systems: names, parameters, solvers, alignment.

Torch-free, so that :mod:`odevae.config_checks` checks a config against it before
any job starts. The systems live in :mod:`odevae.model.dynamics`, their solvers
in :mod:`odevae.model.solving`.
"""

from __future__ import annotations


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
