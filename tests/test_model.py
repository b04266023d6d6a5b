import pytest
import torch

from odevae.data import CohortDataset, collate
from odevae.model import ODEVAE, make_system, solve
from odevae.model.loss import gaussian_nll


def batch_of(cohort, index):
    dataset = CohortDataset(cohort)
    return collate([dataset[i] for i in index])


@pytest.fixture
def model(tiny_cohort):
    torch.manual_seed(0)
    return ODEVAE(p=tiny_cohort.p, q=tiny_cohort.q)


def test_forward_shapes(model, tiny_cohort):
    batch = batch_of(tiny_cohort, range(5))
    B, T = batch["visits"].shape
    assert T == int(batch["visits"].sum(1).max())  # padding trimmed to the batch
    out = model(batch)
    assert out["mu_enc"].shape == (B, T, 2) and out["logvar_enc"].shape == (B, T, 2)
    assert out["theta"].shape == (B, 2) and out["mu_ode"].shape == (B, T, 2)
    assert (out["theta"].abs() < 0.5).all()  # sigmoid - 0.5 bound at identity scale
    torch.testing.assert_close(out["mu_ode"][:, 0], out["mu_enc"][:, 0])


def test_loss_finite_and_gradients_reach_every_part(model, tiny_cohort):
    terms = model.loss_terms(batch_of(tiny_cohort, range(8)), sample=True)
    assert torch.isfinite(terms["loss"])
    terms["loss"].backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    for part in (model.encoder, model.decoder, model.param_net):
        assert any(p.grad.abs().sum() > 0 for p in part.parameters())


def test_closed_form_matches_dopri5_on_a_padded_batch():
    torch.manual_seed(1)
    system = make_system("linear_diagonal", 2)
    u0 = torch.randn(4, 2, dtype=torch.float64)
    theta = torch.rand(4, 2, dtype=torch.float64) - 0.5
    t = torch.tensor(
        [[0, 1.5, 2.3, 9.9], [0, 0.7, 0, 0], [0, 4.1, 5.0, 0], [0, 2.3, 3.3, 10.0]],
        dtype=torch.float64,
    )
    exact = solve(system, u0, theta, t, "closed_form")
    numeric = solve(system, u0, theta, t, "dopri5", rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(numeric, exact, atol=1e-5, rtol=0)
    # the closed form is the elementwise exponential for a diagonal system
    torch.testing.assert_close(
        exact, u0[:, None] * torch.exp(theta[:, None] * t[..., None])
    )


def test_closed_form_matches_dopri5_inside_the_model(tiny_cohort):
    torch.manual_seed(0)
    closed = ODEVAE(p=tiny_cohort.p, q=tiny_cohort.q).double()
    numeric = ODEVAE(
        p=tiny_cohort.p, q=tiny_cohort.q, solver="dopri5", rtol=1e-9, atol=1e-10
    ).double()
    numeric.load_state_dict(closed.state_dict())
    batch = batch_of(tiny_cohort, range(10))
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    torch.testing.assert_close(
        numeric(batch)["mu_ode"], closed(batch)["mu_ode"], atol=1e-5, rtol=0
    )


def test_dopri5_gradients_with_and_without_adjoint(tiny_cohort):
    batch = batch_of(tiny_cohort, range(4))
    for adjoint in (False, True):
        torch.manual_seed(0)
        model = ODEVAE(
            p=tiny_cohort.p, q=tiny_cohort.q, solver="dopri5", adjoint=adjoint
        )
        model.loss_terms(batch, sample=False)["loss"].backward()
        grad = model.param_net.out.weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_masked_likelihood_ignores_missing_entries(model, tiny_cohort):
    batch = batch_of(tiny_cohort, range(6))
    batch["observed"][0, 1, :2] = False
    batch["observed"][3, 0, 1] = False
    changed = {**batch, "values": batch["values"].clone()}
    changed["values"][0, 1, :2] = 1e6
    changed["values"][3, 0, 1] = -1e6
    # whatever an unobserved cell holds, the loss (model units) is the same
    torch.testing.assert_close(
        model.loss_terms(model.scale(changed), sample=False)["loss"],
        model.loss_terms(model.scale(batch), sample=False)["loss"],
    )
    # and the likelihood term alone ignores them
    mean = torch.zeros_like(batch["values"])
    logvar = torch.zeros_like(mean)
    torch.testing.assert_close(
        gaussian_nll(changed["values"], mean, logvar, batch["observed"]),
        gaussian_nll(batch["values"], mean, logvar, batch["observed"]),
    )
    flipped = batch["observed"].clone()
    flipped[0, 1, 0] = True
    assert not torch.allclose(
        gaussian_nll(changed["values"], mean, logvar, flipped),
        gaussian_nll(batch["values"], mean, logvar, flipped),
    )


def test_padded_visits_do_not_change_the_loss(model, tiny_cohort):
    batch = batch_of(tiny_cohort, [0])
    padded = {
        key: torch.cat([value, torch.zeros_like(value[:, :2])], dim=1)
        if key in ("times", "values", "observed", "visits")
        else value
        for key, value in batch.items()
    }
    padded["values"][:, -2:] = 123.0  # garbage in padding
    padded["observed"][:, -2:] = True  # even if flagged observed, not a visit
    torch.testing.assert_close(
        model.loss_terms(padded, sample=False)["loss"],
        model.loss_terms(batch, sample=False)["loss"],
    )


def test_loss_is_mean_over_patients(model, tiny_cohort):
    one = model.loss_terms(batch_of(tiny_cohort, [2]), sample=False)
    two = model.loss_terms(batch_of(tiny_cohort, [2, 2]), sample=False)
    torch.testing.assert_close(one["loss"], two["loss"])
