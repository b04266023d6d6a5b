"""Solutions of a latent system for a batch at once.

Every system is autonomous, so a solution from state x0 at offset t (positive or
negative) does not depend on when the start was. :func:`solve` maps starts x0 (N, d),
parameters θ (N, nθ) and offsets t (N, M) to states (N, M, d) in one call: linear
systems in closed form (elementwise exponentials for a diagonal A, with or without a
drift; otherwise a batched matrix exponential), any system with a torchdiffeq
solver on the union of the offsets (forward and backward in time separately).

An adaptive Runge-Kutta method (``dopri5`` and its kin) is integrated by
:func:`~odevae.model.runge_kutta.adaptive_solve`: torchdiffeq's method and step-size
control in a fraction of its operators, every time inside a step read off the
step's polynomial at once. Fixed-grid methods and the adjoint go through
torchdiffeq.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from odevae.model.runge_kutta import ADAPTIVE_RK, adaptive_solve

if TYPE_CHECKING:
    from odevae.model.dynamics import LatentSystem


class _BatchField(nn.Module):
    """Vector field of a batch with fixed per-start parameters (for torchdiffeq).

    With ``prepared`` the parameters' part of the field is computed once per
    integration (:meth:`~odevae.model.dynamics.LatentSystem.field`); the adjoint
    method, which evaluates the field again under its own autograd, needs it from
    ``theta`` at each evaluation."""

    def __init__(
        self, system: LatentSystem, theta: torch.Tensor, prepared: bool = True
    ) -> None:
        super().__init__()
        self.system = system
        self.theta = theta
        self.du = system.field(theta) if prepared else None

    def forward(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        if self.du is None:
            return self.system.field(self.theta)(u)
        return self.du(u)


def _integrate(system, x0, theta, grid, method, rtol, atol, adjoint):
    """States on ``grid`` (G,), starting at grid[0] = 0 → (N, G, d)."""
    field = _BatchField(system, theta, prepared=not adjoint)
    if adjoint:
        params = (theta, *system.parameters())
        path = odeint_adjoint(
            field, x0, grid, rtol=rtol, atol=atol, method=method, adjoint_params=params
        )
    elif method in ADAPTIVE_RK:
        path = adaptive_solve(
            field.du, x0, grid, rtol=rtol, atol=atol, method_name=method
        )
    else:
        path = odeint(field, x0, grid, rtol=rtol, atol=atol, method=method)
    return path.permute(1, 0, 2)


def solve(
    system: LatentSystem,
    x0: torch.Tensor,
    theta: torch.Tensor,
    t: torch.Tensor,
    method: str = "closed_form",
    rtol: float = 1e-6,
    atol: float = 1e-7,
    adjoint: bool = False,
) -> torch.Tensor:
    """Solutions from starts x0 (N, d) after offsets t (N, M) → (N, M, d).

    ``method="closed_form"`` uses the system's exact solution; any other value is a
    torchdiffeq method (e.g. ``dopri5``, ``rk4``) integrating all starts together on
    the sorted union of the offsets: once forward over the positive offsets and once
    backward over the negative ones. ``adjoint`` uses ``odeint_adjoint`` (gradients
    by the adjoint ODE instead of backpropagation through the solver's steps).
    """
    if method == "closed_form":
        if not system.has_closed_form:
            raise ValueError(f"{type(system).__name__} has no closed-form solution")
        return system.closed_form(x0, theta, t)
    out = x0[:, None, :].expand(-1, t.shape[1], -1)
    for sign in (1.0, -1.0):
        side = t * sign > 0
        if not side.any():
            continue
        grid, index = torch.unique(
            torch.where(side, t * sign, 0.0), return_inverse=True
        )
        if grid[0] > 0:  # no zero offset on this side: add the start
            grid = torch.cat([grid.new_zeros(1), grid])
            index = index + 1
        path = _integrate(system, x0, theta, grid * sign, method, rtol, atol, adjoint)
        values = torch.gather(path, 1, index[..., None].expand(-1, -1, path.shape[-1]))
        out = torch.where(side[..., None], values, out)
    return out


def pairwise_offsets(times: torch.Tensor) -> torch.Tensor:
    """Offsets t_j − t_k between every start k and target j: (B, T) → (B, T, T)."""
    return times[:, None, :] - times[:, :, None]


def solve_from_every_visit(
    system: LatentSystem,
    starts: torch.Tensor,
    theta: torch.Tensor,
    times: torch.Tensor,
    **solver,
) -> torch.Tensor:
    """Local solutions μ̃_{k→j} from every visit k to every visit j.

    ``starts`` (B, T, d) are the states at the visits, ``times`` (B, T) their times
    and ``theta`` (B, nθ) the patients' parameters. Returns (B, T_k, T_j, d), where
    entry [b, k, k] is the start itself. All B·T starts are solved in one call.
    """
    B, T, d = starts.shape
    offsets = pairwise_offsets(times).reshape(B * T, T)
    theta_k = theta.repeat_interleave(T, dim=0)
    local = solve(system, starts.reshape(B * T, d), theta_k, offsets, **solver)
    return local.reshape(B, T, T, d)
