"""Latent ODE systems with per-patient parameters, solved for a batch of patients.

Each patient b has parameters θ_b, an initial state u0_b at time 0 and its own visit
times t_b (padded). :func:`solve` returns u_b(t_b) for the whole batch at once, either
in closed form (linear systems: ``torch.linalg.matrix_exp``) or with a torchdiffeq
solver on the union of the batch's visit times.
"""

from __future__ import annotations

import torch
from torchdiffeq import odeint, odeint_adjoint


class LinearSystem:
    """du/dt = A(θ) u with the learned parameters θ placed at fixed entries of A.

    ``entries`` lists the (row, column) of A that each parameter fills; the other
    entries are 0. ``linear_diagonal`` (the workshop's 2-parameter model) learns
    a11 and a22.
    """

    has_closed_form = True

    def __init__(self, dim: int, entries: list[tuple[int, int]]) -> None:
        self.dim = dim
        self.entries = entries
        self.param_names = [f"a{i + 1}{j + 1}" for i, j in entries]
        self.n_params = len(entries)
        rows, cols = zip(*entries, strict=True)
        self._rows, self._cols = list(rows), list(cols)

    def matrix(self, theta: torch.Tensor) -> torch.Tensor:
        """System matrices A, shape (B, d, d), from parameters (B, nθ)."""
        A = theta.new_zeros(theta.shape[0], self.dim, self.dim)
        A[:, self._rows, self._cols] = theta
        return A

    def vector_field(self, u: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """du/dt for states (B, d)."""
        return torch.einsum("bij,bj->bi", self.matrix(theta), u)

    def closed_form(
        self, u0: torch.Tensor, theta: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """u(t) = exp(A t) u0 for times (B, T); returns (B, T, d)."""
        At = self.matrix(theta)[:, None] * t[..., None, None]
        return torch.einsum("btij,bj->bti", torch.linalg.matrix_exp(At), u0)


def diagonal_entries(dim: int) -> list[tuple[int, int]]:
    return [(i, i) for i in range(dim)]


SYSTEMS = {
    "linear_diagonal": lambda dim: LinearSystem(dim, diagonal_entries(dim)),
}


def make_system(name: str, dim: int) -> LinearSystem:
    """The latent system called ``name`` in config, for latent dimension ``dim``."""
    if name not in SYSTEMS:
        raise ValueError(
            f"unknown ODE system {name!r}, expected one of {list(SYSTEMS)}"
        )
    return SYSTEMS[name](dim)


class _BatchField(torch.nn.Module):
    """Vector field of a batch with fixed per-patient parameters (for torchdiffeq)."""

    def __init__(self, system, theta: torch.Tensor) -> None:
        super().__init__()
        self.system = system
        self.theta = theta

    def forward(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.system.vector_field(u, self.theta)


def solve(
    system,
    u0: torch.Tensor,
    theta: torch.Tensor,
    t: torch.Tensor,
    method: str = "closed_form",
    rtol: float = 1e-6,
    atol: float = 1e-7,
    adjoint: bool = False,
) -> torch.Tensor:
    """Solve the batch's IVPs from u0 (B, d) at t = 0 to times t (B, T) → (B, T, d).

    ``method="closed_form"`` uses the system's exact solution; any other value is a
    torchdiffeq method (e.g. ``dopri5``) integrating all patients together on the
    sorted union of their visit times (times must be ≥ 0).
    """
    if method == "closed_form":
        if not system.has_closed_form:
            raise ValueError(f"{type(system).__name__} has no closed-form solution")
        return system.closed_form(u0, theta, t)
    grid, index = torch.unique(t, sorted=True, return_inverse=True)
    if grid[0] > 0:
        grid = torch.cat([grid.new_zeros(1), grid])
        index = index + 1
    elif grid[0] < 0:
        raise ValueError("visit times must be >= 0 (relative to the first visit)")
    field = _BatchField(system, theta)
    integrate = odeint_adjoint if adjoint else odeint
    kwargs = {"adjoint_params": (theta,)} if adjoint else {}
    path = integrate(field, u0, grid, rtol=rtol, atol=atol, method=method, **kwargs)
    path = path.permute(1, 0, 2)  # (B, G, d)
    return torch.gather(path, 1, index[..., None].expand(-1, -1, path.shape[-1]))
