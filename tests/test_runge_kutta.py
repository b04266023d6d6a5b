"""odevae's adaptive Runge-Kutta solver against torchdiffeq's, and its errors."""

import pytest
import torch
from torchdiffeq import odeint

from odevae.model.dynamics import make_system
from odevae.model.runge_kutta import ADAPTIVE_RK, adaptive_solve, method
from odevae.model.solving import solve

RTOL, ATOL = 1e-3, 1e-6


class Counted:
    """A field that counts its evaluations (torchdiffeq's signature or odevae's)."""

    def __init__(self, du):
        self.du, self.calls = du, 0

    def __call__(self, *args):
        self.calls += 1
        return self.du(args[-1])


def _batch(sign: float):
    torch.manual_seed(0)
    system = make_system("lotka_volterra", 2)
    theta = (0.3 * torch.randn(30, system.n_params)).requires_grad_()
    x0 = (torch.rand(30, 2) + 0.5).requires_grad_()
    # a batch's union of visit times: many, several inside one step
    grid = sign * torch.unique(torch.randint(0, 51, (100,)).float() / 10)
    grid = torch.cat([grid.new_zeros(1), grid[grid != 0]])
    return system, theta, x0, grid


#: Relative agreement with torchdiffeq (values, gradients), a few times the largest
#: difference measured on this batch. fehlberg2 takes few, long steps (about 25
#: here), in which the rounding and torchdiffeq's first-step gradient weigh more.
AGREEMENT = {"fehlberg2": (3e-4, 2e-3)}
DEFAULT_AGREEMENT = (5e-5, 3e-5)


@pytest.mark.parametrize("name", sorted(ADAPTIVE_RK))
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_the_solution_is_torchdiffeqs_with_the_same_steps(name, sign):
    """Every adaptive method, forward and backward in time: the same steps
    (as many field evaluations), and values and gradients equal to torchdiffeq's
    up to float32 rounding (the same sums in another order), far inside the
    solver's tolerance. One exception to the steps: dopri8's first error estimate
    here is rounding noise, so backward in time its steps are sized differently
    and only the values' agreement holds."""
    system, theta, x0, grid = _batch(sign)
    paths, grads, calls = [], [], []
    for solver in ("torchdiffeq", "odevae"):
        field = Counted(system.field(theta))
        if solver == "torchdiffeq":
            path = odeint(field, x0, grid, rtol=RTOL, atol=ATOL, method=name)
        else:
            path = adaptive_solve(
                field, x0, grid, rtol=RTOL, atol=ATOL, method_name=name
            )
        paths.append(path)
        calls.append(field.calls)
        grads.append(torch.autograd.grad(path.square().sum(), (theta, x0)))
    assert calls[0] > 20
    if (name, sign) == ("dopri8", -1.0):
        assert abs(calls[0] - calls[1]) <= calls[0] // 5
    else:
        assert calls[1] == calls[0]
    assert paths[1].shape == (len(grid), 30, 2)
    values, gradients = AGREEMENT.get(name, DEFAULT_AGREEMENT)
    scale = float(paths[0].detach().abs().max())
    torch.testing.assert_close(paths[1], paths[0], rtol=0, atol=values * scale)
    for reference, ours in zip(*grads, strict=True):
        big = float(reference.abs().max())
        torch.testing.assert_close(ours, reference, rtol=0, atol=gradients * big)


def test_a_solution_that_blows_up_is_one_clear_error():
    """A state that leaves the floats ends the solve with an error that says so,
    instead of torchdiffeq's step-size assertion."""
    x0 = torch.ones(3, 1)
    with pytest.raises(FloatingPointError, match="not finite"):
        adaptive_solve(
            lambda u: u.square(), x0, torch.tensor([0.0, 2.0]), rtol=RTOL, atol=ATOL
        )


def test_times_start_at_zero_and_run_one_way():
    x0, du = torch.ones(2, 1), lambda u: -u
    for times in ([0.5, 1.0], [0.0, 1.0, 0.5], [0.0, 1.0, -1.0]):
        with pytest.raises(ValueError, match="times"):
            adaptive_solve(du, x0, torch.tensor(times), rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="not one of"):
        method("rk4")


def test_a_decay_is_solved_to_the_tolerance_at_every_time():
    """du/dt = -k u, forward and backward: exp(-k t) at each requested time."""
    k = torch.tensor([[0.5], [2.0]])
    x0 = torch.ones(2, 1)
    for sign in (1.0, -1.0):
        times = sign * torch.linspace(0, 3, 31)
        path = adaptive_solve(lambda u: -k * u, x0, times, rtol=1e-6, atol=1e-8)
        exact = torch.exp(-k.T * times[:, None])[..., None]
        torch.testing.assert_close(path, exact, rtol=1e-4, atol=1e-6)


def test_solve_takes_the_adaptive_path_for_adaptive_methods_only(monkeypatch):
    """``solve`` integrates an adaptive method with :func:`adaptive_solve` (once
    forward and once backward in time); a fixed-grid method and the adjoint go
    through torchdiffeq."""
    import odevae.model.solving as solving

    calls = []
    monkeypatch.setattr(
        solving,
        "adaptive_solve",
        lambda *a, **k: calls.append(k["method_name"]) or adaptive_solve(*a, **k),
    )
    system = make_system("lotka_volterra", 2)
    theta, x0 = torch.zeros(3, 2), torch.ones(3, 2)
    t = torch.tensor([[0.0, 0.5, -1.0]]).expand(3, -1)
    for name in ("dopri5", "rk4"):
        solve(system, x0, theta, t, name)
    assert calls == ["dopri5", "dopri5"]
    solve(system, x0, theta, t, "dopri5", adjoint=True)
    assert calls == ["dopri5", "dopri5"]
