"""Latent ODE systems with per-patient parameters (solved for a batch at once by
:mod:`odevae.model.solving`).

A system has a full parameter vector (``all_names``); config can fix some entries to
constants (``fixed``) and the parameter net predicts the rest (``param_names``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from odevae.model.systems import (
    DEFAULT_BOUND,
    DEFAULT_FIXED,
    LINEAR,
    SYSTEM_NAMES,
    all_param_names,
    linear_layout,
    linear_param_names,
)


class LatentSystem(nn.Module):
    """Base class: parameter layout (learned vs fixed) and the vector field."""

    has_closed_form = False
    #: Parameter-net output bound used when config says ``auto``.
    default_bound = "sigmoid"
    #: Entries fixed unless config says otherwise: {name: value}.
    default_fixed: dict[str, float] = {}
    #: States live in the positive orthant (the encoder's means are made positive).
    positive_states = False

    def __init__(self, dim: int, all_names: list[str], fixed: dict | None) -> None:
        super().__init__()
        self.dim = dim
        self.all_names = list(all_names)
        fixed = dict(self.default_fixed if fixed is None else fixed)
        unknown = sorted(set(fixed) - set(all_names))
        if unknown:
            raise ValueError(
                f"cannot fix unknown parameter(s) {unknown}, expected names among "
                f"{self.all_names}"
            )
        self.fixed = {name: float(fixed[name]) for name in all_names if name in fixed}
        self.param_names = [name for name in all_names if name not in fixed]
        if not self.param_names:
            raise ValueError("every parameter is fixed: nothing is left to learn")
        learned = [all_names.index(name) for name in self.param_names]
        self.register_buffer("_learned", torch.tensor(learned), persistent=False)
        template = torch.zeros(len(all_names))
        for name, value in self.fixed.items():
            template[all_names.index(name)] = value
        self.register_buffer("_template", template, persistent=False)

    @property
    def n_params(self) -> int:
        """Number of learned parameters (the parameter net's output size)."""
        return len(self.param_names)

    def expand(self, theta: torch.Tensor) -> torch.Tensor:
        """Learned parameters (N, nθ) → the full parameter vector (N, n_all)."""
        full = self._template.to(theta).expand(theta.shape[0], -1).clone()
        full[:, self._learned] = theta
        return full

    def vector_field(self, u: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """du/dt for states (N, d) and learned parameters (N, nθ). A system
        defines this or :meth:`field` (the solvers call :meth:`field`: a subclass
        of a system that defines :meth:`field` overrides that)."""
        if type(self).field is LatentSystem.field:
            raise NotImplementedError(f"{type(self).__name__} has no vector field")
        return self.field(theta)(u)

    def field(self, theta: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """du/dt as a function of the states (N, d) alone, for the learned
        parameters ``theta`` (N, nθ). A system that defines it computes what does
        not depend on the state once, not at each of a solver's six evaluations
        per step."""
        return lambda u: self.vector_field(u, theta)


class LinearSystem(LatentSystem):
    """dx/dt = A x + b with learned entries of A and b; the rest are 0.

    ``matrix_entries`` lists the (row, column) entries of A that carry parameters,
    in column-major order (as the follow-up paper reshapes θ); ``drift`` adds a
    parameter b_i per dimension.
    """

    has_closed_form = True

    def __init__(
        self,
        dim: int,
        matrix_entries: list[tuple[int, int]],
        drift: bool,
        fixed: dict | None = None,
    ) -> None:
        names = linear_param_names(matrix_entries, drift, dim)
        super().__init__(dim, names, fixed)
        self.matrix_entries = list(matrix_entries)
        self.drift = drift
        rows = [i for i, _ in matrix_entries]
        cols = [j for _, j in matrix_entries]
        self._rows, self._cols = rows, cols
        # A diagonal A (with or without a drift): the solution is elementwise.
        self._diagonal = all(i == j for i, j in matrix_entries)

    def matrix_and_drift(self, theta: torch.Tensor):
        """A (N, d, d) and b (N, d) from learned parameters (N, nθ)."""
        full = self.expand(theta)
        n_a = len(self.matrix_entries)
        A = full.new_zeros(full.shape[0], self.dim, self.dim)
        if n_a:
            A[:, self._rows, self._cols] = full[:, :n_a]
        b = full[:, n_a:] if self.drift else full.new_zeros(full.shape[0], self.dim)
        return A, b

    def field(self, theta: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        A, b = self.matrix_and_drift(theta)
        return lambda u: torch.einsum("nij,nj->ni", A, u) + b

    def closed_form(
        self, x0: torch.Tensor, theta: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """x(t) for starts (N, d), parameters (N, nθ) and offsets (N, M) → (N, M, d).

        Where every learned entry of A is on the diagonal (rates a) the solution is
        elementwise: x(t) = e^{at} x0 + b t E(at), E(z) = (e^z − 1)/z
        (:func:`exp_ratio`), exact also for a = 0 (x0 + b t; ``linear_drift``,
        which has no matrix entries, is that case); about 3x faster
        training than a batched matrix exponential and its backward, and far more
        with a drift (whose augmented matrix would be (d+1) × (d+1)). Otherwise,
        with a drift b, the solution e^{At}(x0 + c) − c, c = A⁻¹b, is computed as
        the exponential of the augmented matrix [[A, b], [0, 0]] applied to
        (x0, 1): the same value where A is invertible, and exact also where A is
        singular or near-singular, so no inverse is ever formed.
        """
        A, b = self.matrix_and_drift(theta)
        if self._diagonal:
            z = torch.diagonal(A, dim1=1, dim2=2)[:, None, :] * t[..., None]
            out = x0[:, None, :] * torch.exp(z)
            if self.drift:
                out = out + b[:, None, :] * t[..., None] * exp_ratio(z)
            return out
        if self.drift:
            n, d = b.shape
            A = torch.cat(
                [torch.cat([A, b[:, :, None]], 2), A.new_zeros(n, 1, d + 1)], 1
            )
            x0 = torch.cat([x0, x0.new_ones(n, 1)], 1)
        expm = torch.linalg.matrix_exp(A[:, None] * t[..., None, None])
        return torch.einsum("nmij,nj->nmi", expm, x0)[..., : self.dim]


#: |z| below which :func:`exp_ratio` uses its Taylor series.
EXP_RATIO_SERIES = 0.1


def exp_ratio(z: torch.Tensor) -> torch.Tensor:
    """E(z) = (e^z − 1)/z elementwise, E(0) = 1, with a finite gradient wherever
    the value is finite: ``expm1(z)/z`` for |z| ≥ :data:`EXP_RATIO_SERIES`, and
    within it the Taylor series Σ_{k=0..6} z^k/(k+1)!, whose truncation error
    there is below 3e-12 (its derivative's below 4e-10, relative). The switch is
    that wide because in float32 the derivative of ``expm1(z)/z`` loses about
    2e-7/|z| (relative) to cancellation: 2e-6 at the switch, 6e-5 at 1e-3."""
    small = z.abs() < EXP_RATIO_SERIES
    safe = torch.where(small, torch.ones_like(z), z)
    series = torch.ones_like(z)
    for k in range(7, 1, -1):  # Horner: 1 + z/2 (1 + z/3 (1 + … (1 + z/7)))
        series = 1.0 + z / k * series
    return torch.where(small, series, torch.expm1(safe) / safe)


class LotkaVolterra(LatentSystem):
    """du1/dt = α u1 − β u1 u2, du2/dt = γ u1 u2 − δ u2 (BJ 2022 Sec. 5.3).

    By default α and δ are learned and β = γ = 1 are fixed. States are populations:
    the positive orthant is invariant (solutions stay bounded on their closed
    orbits), while from a negative state the system can blow up in finite time, so
    the encoder's means are kept positive (``positive_states``).
    """

    positive_states = True

    default_bound = DEFAULT_BOUND["lotka_volterra"]
    default_fixed = DEFAULT_FIXED["lotka_volterra"]

    def __init__(self, dim: int, fixed: dict | None = None) -> None:
        if dim != 2:
            raise ValueError(f"Lotka-Volterra needs latent_dim 2, found {dim}")
        super().__init__(dim, all_param_names("lotka_volterra", dim), fixed)

    def field(self, theta: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        # du = u ⊙ (rate + coupling ⊙ (u2, u1)): rate (α, −δ), coupling (−β, γ);
        # four operators per evaluation instead of ten (a solver evaluates the
        # field six times per step, forward and backward)
        alpha, beta, gamma, delta = self.expand(theta).unbind(-1)
        rate = torch.stack([alpha, -delta], -1)
        coupling = torch.stack([-beta, gamma], -1)
        return lambda u: u * (rate + coupling * u.flip(-1))


class NeuralField(LatentSystem):
    """A neural ODE: du/dt = MLP([u, θ]) with the individual θ as conditioning.

    The MLP (one tanh hidden layer of width ``hidden``) is shared by all patients
    and trained with the rest of the model; θ (``n_cond`` values from the parameter
    net) makes the dynamics individual.
    """

    def __init__(
        self, dim: int, n_cond: int = 2, hidden: int = 16, fixed: dict | None = None
    ) -> None:
        names = all_param_names("neural", dim, {"n_cond": n_cond})
        super().__init__(dim, names, fixed)
        self.net = nn.Sequential(
            nn.Linear(dim + n_cond, hidden), nn.Tanh(), nn.Linear(hidden, dim)
        )
        # Start near the zero field so early solutions stay close to their starts.
        nn.init.normal_(self.net[2].weight, std=0.01)
        nn.init.zeros_(self.net[2].bias)

    def field(self, theta: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        full = self.expand(theta)
        return lambda u: self.net(torch.cat([u, full], -1))


def _linear(name: str):
    def build(dim: int, fixed: dict | None, options: dict) -> LinearSystem:
        entries, drift = linear_layout(name, dim)
        return LinearSystem(dim, entries, drift, fixed)

    return build


#: Config name → constructor (dim, fixed, options) of each latent system.
_NONLINEAR = {
    "lotka_volterra": lambda d, fixed, o: LotkaVolterra(d, fixed),
    "neural": lambda d, fixed, o: NeuralField(
        d, o.get("n_cond", 2), o.get("hidden", 16), fixed
    ),
}
#: Built from :data:`odevae.model.systems.SYSTEM_NAMES` (a name without a
#: constructor fails at import).
SYSTEMS = {
    name: _linear(name) if name in LINEAR else _NONLINEAR[name] for name in SYSTEM_NAMES
}


def make_system(
    name: str, dim: int, fixed: dict | None = None, options: dict | None = None
) -> LatentSystem:
    """The latent system called ``name`` in config, for latent dimension ``dim``.

    ``fixed`` maps parameter names to constants (``None``: the system's defaults);
    ``options`` holds the neural ODE's ``n_cond`` and ``hidden``.
    """
    if name not in SYSTEMS:
        raise ValueError(
            f"unknown ODE system {name!r}, expected one of {list(SYSTEMS)}"
        )
    return SYSTEMS[name](dim, fixed, options or {})
