"""Solutions of a latent system for a batch at once.

Every system is autonomous, so a solution from state x0 at offset t (positive or
negative) does not depend on when the start was. :func:`solve` maps starts x0 (N, d),
parameters θ (N, nθ) and offsets t (N, M) to states (N, M, d) in one call: linear
systems in closed form (elementwise exponentials for a diagonal A, with or without a
drift; otherwise a batched matrix exponential), any system with a torchdiffeq
solver on the union of the offsets (forward and backward in time separately).

torchdiffeq's adaptive Runge-Kutta solvers (``dopri5`` and its kin) step through
an integration and interpolate each requested time inside the step that covers it,
one time after another: a batch's union of visit times is about a hundred times,
each a dozen small operators forward and backward, more than the steps themselves.
:func:`_integrate` takes the same steps and interpolates all the times inside one
step at once (:func:`dense_odeint`): the same values bit for bit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint
from torchdiffeq._impl.misc import _check_inputs
from torchdiffeq._impl.odeint import SOLVERS
from torchdiffeq._impl.rk_common import RKAdaptiveStepsizeODESolver

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


#: torchdiffeq's solvers that step adaptively and interpolate inside a step.
ADAPTIVE_RK = {
    name
    for name, solver in SOLVERS.items()
    if issubclass(solver, RKAdaptiveStepsizeODESolver)
}


def _interpolate(coefficients, t0, t1, t: torch.Tensor) -> torch.Tensor:
    """torchdiffeq's ``_interp_evaluate`` at every time of ``t`` (K,) in [t0, t1]
    at once → (K, *state): the same elementwise operations in the same order, so
    the same values bit for bit."""
    x = ((t - t0) / (t1 - t0)).to(coefficients[0].dtype)
    x = x.reshape(-1, *([1] * coefficients[0].dim()))
    total = coefficients[0] + x * coefficients[1]
    x_power = x
    for coefficient in coefficients[2:]:
        x_power = x_power * x
        total = total + x_power * coefficient
    return total


class _AutonomousField:
    """An autonomous field as torchdiffeq's adaptive solvers call it,
    ``(t, y, perturb=...)``, with their step callbacks. torchdiffeq wraps a field
    to move t just off a step's end (for fields that jump in time) and, backward
    in time, to negate t and the field; a field that ignores t needs only the
    negation (``mul`` −1, the same product as torchdiffeq's): the same values
    in fewer operators per evaluation."""

    def __init__(self, field, mul: float) -> None:
        self.field, self.mul = field, mul

    def __call__(self, t, y, perturb=None):
        du = self.field(t, y)
        return du if self.mul == 1.0 else self.mul * du

    def callback_step(self, t0, y0, dt) -> None:
        pass

    callback_accept_step = callback_reject_step = callback_step


def dense_odeint(field, y0, t, *, rtol, atol, method):
    """``torchdiffeq.odeint(field, y0, t, ...)`` for an autonomous ``field`` (its
    value does not depend on t, as no system here does), an adaptive Runge-Kutta
    ``method`` (:data:`ADAPTIVE_RK`) and a tensor ``y0``, with the times that fall
    inside one accepted step interpolated together: the same steps and the same
    values, bit for bit, in far fewer operators when ``t`` is long."""
    if not torch.is_tensor(y0):  # torchdiffeq's tuple states are not handled here
        raise TypeError(f"dense_odeint needs a tensor y0, not {type(y0).__name__}")
    _, _, y0, t, rtol, atol, method, options, _, backward = _check_inputs(
        field, y0, t, rtol, atol, method, None, None, SOLVERS
    )
    func = _AutonomousField(field, -1.0 if backward else 1.0)
    solver = SOLVERS[method](func=func, y0=y0, rtol=rtol, atol=atol, **options)
    t = t.to(solver.dtype)
    solver._before_integrate(t)
    pieces, i = [y0[None]], 1
    while i < len(t):
        while t[i] > solver.rk_state.t1:  # torchdiffeq's own _advance
            solver.rk_state = solver._adaptive_step(solver.rk_state)
        state = solver.rk_state
        j = int(torch.searchsorted(t, state.t1, right=True))  # every t[i:j] <= t1
        pieces.append(_interpolate(state.interp_coeff, state.t0, state.t1, t[i:j]))
        i = j
    return torch.cat(pieces)


def _integrate(system, x0, theta, grid, method, rtol, atol, adjoint):
    """States on ``grid`` (G,), starting at grid[0] = 0 → (N, G, d)."""
    field = _BatchField(system, theta, prepared=not adjoint)
    if adjoint:
        params = (theta, *system.parameters())
        path = odeint_adjoint(
            field, x0, grid, rtol=rtol, atol=atol, method=method, adjoint_params=params
        )
    elif method in ADAPTIVE_RK:
        path = dense_odeint(field, x0, grid, rtol=rtol, atol=atol, method=method)
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
