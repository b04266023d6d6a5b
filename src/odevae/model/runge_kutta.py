"""Adaptive Runge-Kutta solutions of an autonomous field on a grid of times.

torchdiffeq's adaptive solvers (``dopri5`` and its kin) keep the step's time and
size as float64 tensors, build every stage from a scratch tensor written through a
custom autograd function, fit the interpolating polynomial from five separate
tensors and evaluate it at one requested time after another: a few hundred small
operators per step, forward and backward, which is what a training step of a
latent ODE pays on a CPU (or launches on a GPU). :func:`adaptive_solve` takes the
same method (torchdiffeq's Butcher tableau, interpolation weights, error norm and
step-size control) with

* the times and step sizes as Python floats (no tensor operators, no graph);
* each stage one ``add`` per non-zero tableau entry;
* the polynomial folded into one matrix of weights per step: every requested
  time inside the step is one product of the stacked stages with it;
* the error estimate and the first step's size under ``no_grad``: they only
  choose the steps.

The steps and values are torchdiffeq's up to float32 rounding (the same sums in
another order); gradients leave out the one path torchdiffeq keeps from the
states into the first step's size (a dependence of the discretisation, not of the
solution).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torchdiffeq._impl.odeint import SOLVERS
from torchdiffeq._impl.rk_common import RKAdaptiveStepsizeODESolver

#: torchdiffeq's solvers that step adaptively and interpolate inside a step.
ADAPTIVE_RK = frozenset(
    name
    for name, solver in SOLVERS.items()
    if issubclass(solver, RKAdaptiveStepsizeODESolver)
)

#: torchdiffeq's step-size control (``RKAdaptiveStepsizeODESolver``'s defaults).
SAFETY, IFACTOR, DFACTOR = 0.9, 10.0, 0.2


@dataclass(frozen=True)
class Method:
    """An adaptive Runge-Kutta method as plain numbers.

    ``stages[i]`` are the (index, weight) pairs of stage i + 1's state,
    ``fsal``: the last stage's state is the step's solution, else ``solution``
    gives it the same way; ``error`` weights the stacked stages (S,);
    ``polynomial`` (S, 4) gives the
    interpolating polynomial's coefficients of x, x², x³, x⁴ (times the step)."""

    order: int
    stages: tuple[tuple[tuple[int, float], ...], ...]
    fsal: bool
    solution: tuple[tuple[int, float], ...]
    error: np.ndarray
    polynomial: np.ndarray


@cache
def method(name: str) -> Method:
    """torchdiffeq's tableau and interpolation of the adaptive method ``name``."""
    if name not in ADAPTIVE_RK:
        raise ValueError(f"{name!r} is not one of {sorted(ADAPTIVE_RK)}")
    solver = SOLVERS[name]
    tableau = solver.tableau
    beta = [b.double().numpy() for b in tableau.beta]
    c_sol = tableau.c_sol.double().numpy()
    n = len(c_sol)
    stages = tuple(
        tuple((j, float(w)) for j, w in enumerate(row) if w != 0) for row in beta
    )
    fsal = bool(c_sol[-1] == 0 and np.array_equal(c_sol[:-1], beta[-1]))
    first, last = np.eye(n)[0], np.eye(n)[-1]
    mid = solver.mid.double().numpy()
    # torchdiffeq's _interp_fit with y1 = y0 + h K c_sol and y_mid = y0 + h K mid:
    # every coefficient but the constant y0 is h K w for one weight vector w.
    polynomial = np.stack(
        [
            first,
            last - 4 * first - 5 * c_sol + 16 * mid,
            5 * first - 3 * last + 14 * c_sol - 32 * mid,
            2 * (last - first) - 8 * c_sol + 16 * mid,
        ],
        axis=1,
    )
    return Method(
        order=solver.order,
        stages=stages,
        fsal=fsal,
        solution=tuple((j, float(w)) for j, w in enumerate(c_sol) if w != 0),
        error=tableau.c_error.double().numpy(),
        polynomial=polynomial,
    )


def _combine(y0: torch.Tensor, ks: list[torch.Tensor], weights, h: float):
    """y0 + h Σ w_j k_j, one ``add`` per term."""
    y = y0
    for j, w in weights:
        y = torch.add(y, ks[j], alpha=h * w)
    return y


def _rms(x: torch.Tensor) -> float:
    return float(x.square().mean().sqrt())


def _first_step(field, y0, f0, sign, order, rtol, atol) -> float:
    """torchdiffeq's ``_select_initial_step`` (Hairer, Nørsett and Wanner II.4)
    for a method of ``order``."""
    with torch.no_grad():
        scale = atol + y0.abs() * rtol
        d0, d1 = _rms(y0 / scale), _rms(f0 / scale)
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        f1 = field(torch.add(y0, f0, alpha=sign * h0))
        d2 = _rms((f1 - f0) / scale) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / order)
    return min(100 * h0, h1)


def _next_step(h: float, ratio: float, order: int) -> float:
    """torchdiffeq's ``_optimal_step_size``."""
    if ratio == 0:
        return h * IFACTOR
    dfactor = 1.0 if ratio < 1 else DFACTOR
    return h * min(IFACTOR, max(SAFETY / ratio ** (1.0 / order), dfactor))


def adaptive_solve(
    field: Callable[[torch.Tensor], torch.Tensor],
    y0: torch.Tensor,
    times: torch.Tensor,
    *,
    rtol: float,
    atol: float,
    method_name: str = "dopri5",
) -> torch.Tensor:
    """States at ``times`` (G,) of du/dt = field(u) from u(times[0]) = y0 → (G, *y0).

    ``times`` start at 0 and run strictly away from it, forward (increasing) or
    backward (decreasing) in time; ``field`` maps a state to its derivative and
    does not depend on t. Steps are taken with error control on the whole state
    (its root mean square, as torchdiffeq), and each time inside an accepted step is
    read off the step's interpolating polynomial."""
    m = method(method_name)
    taus = times.tolist()
    if taus[0] != 0:
        raise ValueError(f"times must start at 0, not {taus[0]}")
    sign = 1.0 if len(taus) < 2 or taus[1] > 0 else -1.0
    taus = [sign * t for t in taus]
    if any(b <= a for a, b in zip(taus, taus[1:], strict=False)):
        raise ValueError("times must run strictly away from 0 in one direction")
    shape, like = y0.shape, {"dtype": y0.dtype, "device": y0.device}
    f0 = field(y0)
    h = _first_step(field, y0, f0, sign, m.order, rtol, atol)
    pieces, i, t0 = [y0.unsqueeze(0)], 1, 0.0
    while i < len(taus):
        t1 = t0 + h
        if not t1 > t0:
            raise FloatingPointError(
                f"the ODE solver's step size underflowed at t = {sign * t0:g} "
                f"(step {h:g}): the solution is not finite or the system too stiff"
            )
        step = sign * h
        ks = [f0]
        for row in m.stages:
            y1 = _combine(y0, ks, row, step)
            ks.append(field(y1))
        if not m.fsal:
            y1 = _combine(y0, ks, m.solution, step)
        stacked = torch.stack(ks).reshape(len(ks), -1)
        with torch.no_grad():
            error = torch.as_tensor(m.error * step, **like) @ stacked
            tol = atol + rtol * torch.maximum(y0.abs(), y1.abs()).reshape(-1)
            ratio = _rms(error / tol)
        if math.isnan(ratio):  # an infinite ratio is a rejected step, as in torchdiffeq
            raise FloatingPointError(
                f"the ODE solver's state is not finite after t = {sign * t0:g}"
            )
        if ratio <= 1:  # accepted: read off the times up to t1
            j = bisect.bisect_right(taus, t1, lo=i)
            if j > i:
                x = (np.asarray(taus[i:j]) - t0) / (t1 - t0)
                powers = x[None, :] ** np.arange(1, 5)[:, None]  # (4, K)
                mix = torch.as_tensor((m.polynomial @ powers).T * step, **like)
                values = torch.addmm(y0.reshape(1, -1), mix, stacked)
                pieces.append(values.reshape(j - i, *shape))
                i = j
            t0, y0, f0 = t1, y1, ks[-1]
        h = _next_step(h, ratio, m.order)
    return torch.cat(pieces)
