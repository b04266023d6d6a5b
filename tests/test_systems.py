"""The latent ODE systems: closed forms, torchdiffeq agreement, parameter layout."""

import pytest
import torch
from torchdiffeq import odeint

from odevae.config_checks import check_model_config
from odevae.errors import InputError
from odevae.model.dynamics import EXP_RATIO_SERIES, SYSTEMS, make_system
from odevae.model.module import ODEVAE
from odevae.model.settings import hyperparameters
from odevae.model.solving import _BatchField, solve, solve_from_every_visit
from odevae.model.systems import (
    LINEAR,
    SYSTEM_NAMES,
    resolve_solver,
)
from tests.conftest import merge

LINEAR_NAMES = sorted(LINEAR)
N_PARAMS = {
    "linear_diagonal": 2,
    "linear_full": 4,
    "linear_drift": 2,
    "linear_offdiagonal_inhomogeneous": 4,
    "linear_diagonal_inhomogeneous": 4,
    "linear_full_inhomogeneous": 6,
    "lotka_volterra": 2,
    "neural": 2,
}


def test_catalogue_and_solvers_agree():
    assert set(SYSTEMS) == set(SYSTEM_NAMES) == set(N_PARAMS)
    for name, n in N_PARAMS.items():
        assert make_system(name, 2).n_params == n, name


def _random_case(system, n=6, m=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    theta = torch.rand(n, system.n_params, generator=gen, dtype=torch.float64) - 0.5
    x0 = torch.randn(n, system.dim, generator=gen, dtype=torch.float64)
    t = torch.rand(n, m, generator=gen, dtype=torch.float64) * 12 - 4
    t[:, 0] = 0.0
    return x0, 0.6 * theta, t


@pytest.mark.parametrize("name", LINEAR_NAMES)
def test_closed_form_matches_dopri5_forward_and_backward(name):
    system = make_system(name, 2).double()
    x0, theta, t = _random_case(system)
    exact = solve(system, x0, theta, t, "closed_form")
    numeric = solve(system, x0, theta, t, "dopri5", rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(numeric, exact, atol=1e-5, rtol=0)
    torch.testing.assert_close(exact[:, 0], x0)  # offset 0 is the start


def test_inhomogeneous_closed_form_is_the_papers_formula():
    system = make_system("linear_full_inhomogeneous", 2).double()
    x0, theta, t = _random_case(system)
    A, b = system.matrix_and_drift(theta)
    c = torch.linalg.solve(A, b)
    expm = torch.linalg.matrix_exp(A[:, None] * t[..., None, None])
    formula = torch.einsum("nmij,nj->nmi", expm, x0 + c) - c[:, None]
    torch.testing.assert_close(solve(system, x0, theta, t), formula)


def test_singular_and_near_singular_matrices_stay_exact():
    system = make_system("linear_diagonal_inhomogeneous", 2).double()
    x0 = torch.tensor([[1.0, -2.0], [0.5, 0.5]], dtype=torch.float64)
    t = torch.tensor([[0.0, 1.0, 10.0], [0.0, -3.0, 7.0]], dtype=torch.float64)
    for a in (0.0, 1e-12, 1e-8):
        theta = torch.tensor(
            [[a, a, 0.3, -0.2], [a, 0.0, 1.0, 2.0]], dtype=torch.float64
        )
        out = solve(system, x0, theta, t)
        drift = x0[:, None] + theta[:, None, 2:] * t[..., None]  # x0 + b t as A → 0
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, drift, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["linear_diagonal_inhomogeneous", "linear_drift"])
def test_elementwise_drift_solution_equals_the_matrix_exponential(name):
    # the elementwise e^{at} x0 + b t E(at) against the augmented matrix
    # [[A, b], [0, 0]]'s exponential, values and gradients: rates at and near 0,
    # and at = z on both sides of exp_ratio's series/expm1 switch
    system = make_system(name, 3).double()
    assert system._diagonal and system.drift
    x0, theta, t = _random_case(system, n=8, m=6)
    n_a = system.n_params - 3
    theta[:2, :n_a] = torch.tensor([0.0, 1e-9, 2e-4])[:n_a]
    theta[2, :n_a] = 0.3
    z = torch.tensor(
        [0.5, -0.1001, 0.0999, -EXP_RATIO_SERIES, 1e-3], dtype=torch.float64
    )
    t[2, 1:] = z / 0.3
    theta = theta.requires_grad_()
    x0 = x0.requires_grad_()

    def augmented(x0, theta):
        A, b = system.matrix_and_drift(theta)
        n, d = b.shape
        M = torch.cat([torch.cat([A, b[:, :, None]], 2), A.new_zeros(n, 1, d + 1)], 1)
        expm = torch.linalg.matrix_exp(M[:, None] * t[..., None, None])
        start = torch.cat([x0, x0.new_ones(n, 1)], 1)
        return torch.einsum("nmij,nj->nmi", expm, start)[..., :d]

    weights = torch.randn(8, 6, 3, dtype=torch.float64)
    results = []
    for out in (system.closed_form(x0, theta, t), augmented(x0, theta)):
        grads = torch.autograd.grad((out * weights).sum(), (x0, theta))
        results.append((out, *grads))
    for elementwise, matrix in zip(*results, strict=True):
        torch.testing.assert_close(elementwise, matrix, atol=1e-9, rtol=1e-9)


def test_drift_only_is_a_straight_line():
    system = make_system("linear_drift", 2).double()
    x0, theta, t = _random_case(system)
    expected = x0[:, None] + theta[:, None] * t[..., None]
    torch.testing.assert_close(solve(system, x0, theta, t), expected)


def test_full_matrix_is_column_major():
    system = make_system("linear_full", 2)
    assert system.param_names == ["a11", "a21", "a12", "a22"]
    A, _ = system.matrix_and_drift(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    assert A[0].tolist() == [[1.0, 3.0], [2.0, 4.0]]


def test_lotka_volterra_fixes_beta_and_gamma_by_default():
    system = make_system("lotka_volterra", 2)
    assert system.param_names == ["alpha", "delta"]
    full = system.expand(torch.tensor([[0.7, 0.4]]))
    assert full.tolist() == [[pytest.approx(0.7), 1.0, 1.0, pytest.approx(0.4)]]
    custom = make_system("lotka_volterra", 2, fixed={"beta": 0.5})
    assert custom.param_names == ["alpha", "gamma", "delta"]
    u = torch.tensor([[2.0, 1.0]])
    du = custom.vector_field(u, torch.tensor([[1.0, 1.0, 0.5]]))
    # du1 = α u1 − β u1 u2 = 2 − 1, du2 = γ u1 u2 − δ u2 = 2 − 0.5
    torch.testing.assert_close(du, torch.tensor([[1.0, 1.5]]))


def test_lotka_volterra_conserves_its_first_integral():
    # V = γ u1 − δ log u1 + β u2 − α log u2 is constant along solutions.
    system = make_system("lotka_volterra", 2, fixed={}).double()
    theta = torch.tensor(
        [[1.0, 1.0, 1.0, 0.5], [0.5, 1.0, 1.0, 2.0]], dtype=torch.float64
    )
    x0 = torch.tensor([[2.0, 2.0], [2.0, 2.0]], dtype=torch.float64)
    t = torch.linspace(-2, 10, 25, dtype=torch.float64).expand(2, -1)
    u = solve(system, x0, theta, t, "dopri5", rtol=1e-10, atol=1e-10)
    a, b, g, d = theta.T
    V = g[:, None] * u[..., 0] - d[:, None] * u[..., 0].log()
    V = V + b[:, None] * u[..., 1] - a[:, None] * u[..., 1].log()
    torch.testing.assert_close(V, V[:, :1].expand_as(V), atol=1e-7, rtol=0)


def test_unknown_or_all_fixed_parameters_are_rejected():
    with pytest.raises(ValueError, match="unknown parameter"):
        make_system("linear_diagonal", 2, fixed={"a12": 0.0})
    with pytest.raises(ValueError, match="nothing is left"):
        make_system("linear_drift", 2, fixed={"b1": 0.0, "b2": 0.0})
    with pytest.raises(ValueError, match="latent_dim 2"):
        make_system("lotka_volterra", 3)


@pytest.mark.parametrize("name", ["lotka_volterra", "neural", "linear_full"])
def test_solve_from_every_visit_matches_single_solves(name):
    system = make_system(name, 2).double()
    torch.manual_seed(3)
    B, T = 3, 4
    starts = torch.rand(B, T, 2, dtype=torch.float64) + 0.5
    theta = torch.rand(B, system.n_params, dtype=torch.float64) + 0.2
    times = torch.sort(torch.rand(B, T, dtype=torch.float64) * 5, dim=1).values
    method = "closed_form" if system.has_closed_form else "dopri5"
    opts = {"method": method, "rtol": 1e-9, "atol": 1e-10}
    local = solve_from_every_visit(system, starts, theta, times, **opts)
    for b in range(B):
        for k in range(T):
            offsets = (times[b] - times[b, k])[None]
            single = solve(system, starts[b, k][None], theta[b][None], offsets, **opts)
            torch.testing.assert_close(local[b, k], single[0], atol=1e-7, rtol=0)
        torch.testing.assert_close(torch.diagonal(local[b]).T, starts[b])


def test_neural_adjoint_gradients_match_direct():
    torch.manual_seed(0)
    grads = []
    for adjoint in (False, True):
        torch.manual_seed(0)
        system = make_system("neural", 2).double()
        theta = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
        x0 = torch.randn(3, 2, dtype=torch.float64)
        t = torch.tensor([[0.0, 1.0, 2.5]] * 3, dtype=torch.float64)
        out = solve(system, x0, theta, t, "dopri5", 1e-9, 1e-10, adjoint)
        out.sum().backward()
        grads.append([theta.grad, *[p.grad for p in system.parameters()]])
    for direct, adjoint in zip(*grads, strict=True):
        torch.testing.assert_close(adjoint, direct, atol=1e-6, rtol=1e-5)


def test_parameter_net_bounds_scale_and_bottleneck(tiny_cohort):
    from odevae.model.networks import ParamNet

    z = torch.randn(50, tiny_cohort.q) * 10
    net = ParamNet(tiny_cohort.q, 3, "sigmoid", scale=2.0, bottleneck=2)
    theta = net(z)
    assert theta.shape == (50, 3) and (theta.abs() < 0.25).all()
    lv = ODEVAE(p=tiny_cohort.p, q=tiny_cohort.q, system="lotka_volterra")
    theta = lv.core.param_net(z)
    assert ((theta > 0) & (theta < 2)).all()
    # small initial weights: rates start near the bound's centre 1
    assert (theta - 1).abs().max() < 0.1


def _schema():
    import yaml

    from tests.conftest import ROOT

    path = ROOT / "workflow" / "schemas" / "config.schema.yaml"
    return yaml.safe_load(path.read_text())["properties"]


def test_the_schema_lists_the_catalogue_of_systems():
    system = _schema()["model"]["properties"]["system"]
    assert system["enum"] == list(SYSTEM_NAMES)
    assert system["default"] in SYSTEM_NAMES


def test_library_defaults_equal_the_schema_defaults():
    import inspect

    from odevae.train.data import CohortDataModule
    from odevae.train.scale import batch_plan

    train = _schema()["train"]["properties"]
    lr = inspect.signature(hyperparameters).parameters["lr"].default
    batch = inspect.signature(CohortDataModule.__init__).parameters["batch_size"]
    assert lr == train["lr"]["default"]
    # the schema's auto batch size, resolved for a small cohort, is the module's
    default = (train["batch_size"]["default"], train["batching"]["default"])
    assert batch_plan(100, *default) == (batch.default, "random")


def _schema_defaults(section: dict) -> dict:
    """The defaults of a schema section, nested objects as dicts of theirs."""
    return {
        key: _schema_defaults(sub) if "properties" in sub else sub["default"]
        for key, sub in section["properties"].items()
    }


def test_model_and_loss_defaults_are_the_schemas():
    """The library's defaults of the ``model`` and ``loss`` sections (those of an
    ODEVAE built without settings) are the schema's, and every schema setting
    of the sections is the model's or (``model``) one of the data's."""
    from odevae.model.settings import DATA_KEYS, LOSS_DEFAULTS, MODEL_DEFAULTS

    model = _schema_defaults(_schema()["model"])
    loss = _schema_defaults(_schema()["loss"])
    assert set(model) == set(MODEL_DEFAULTS) | set(DATA_KEYS)
    assert {k: model[k] for k in MODEL_DEFAULTS} == MODEL_DEFAULTS
    assert loss == LOSS_DEFAULTS
    plain = ODEVAE(p=2, q=1)
    assert plain.hparams.model == MODEL_DEFAULTS
    assert plain.hparams.loss == LOSS_DEFAULTS


@pytest.mark.parametrize("name", SYSTEM_NAMES)
def test_auto_solver_is_the_closed_form_exactly_for_linear_systems(name):
    model = ODEVAE(p=2, q=1, system=name, latent_dim=2)
    assert model.core.solver == resolve_solver("auto", name)
    assert (model.core.solver == "closed_form") == make_system(name, 2).has_closed_form


def test_fixed_rates_on_a_real_cohort_need_a_fixed_time_scale(default_config):
    config = merge(
        default_config,
        {
            "data": {"source": "table"},
            "model": {"system": "lotka_volterra", "time_scale": "auto"},
        },
    )
    with pytest.raises(InputError, match="set model.time_scale to a number"):
        check_model_config(config)
    config["model"]["time_scale"] = 365.25
    check_model_config(config)  # a fixed scale: the same rates in every fold
    config["data"]["source"] = "simulate"
    config["model"]["time_scale"] = "auto"
    check_model_config(config)  # simulated: auto is 1


@pytest.mark.parametrize("name", ["lotka_volterra", "linear_full", "neural"])
def test_a_field_prepared_once_per_solve_gives_the_same_solution_and_gradients(name):
    """The solver's field computes its parameters' part once per solve: bit for bit
    the solution and gradients of evaluating it from θ at every step."""
    results = []
    for prepared in (True, False):
        torch.manual_seed(0)
        system = make_system(name, 2)
        theta = (0.3 * torch.randn(4, system.n_params)).requires_grad_()
        x0 = (torch.rand(4, 2) + 0.5).requires_grad_()
        grid = torch.linspace(0.0, 2.0, 7)
        field = _BatchField(system, theta, prepared=prepared)
        path = odeint(field, x0, grid, rtol=1e-5, atol=1e-6, method="dopri5")
        path.square().sum().backward()
        weights = [p.grad for p in system.parameters()]
        results.append([path, theta.grad, x0.grad, *weights])
    for prepared, each_step in zip(*results, strict=True):
        assert torch.equal(prepared, each_step)
