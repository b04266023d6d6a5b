import pytest
import torch

from odevae.model.dynamics import make_system
from odevae.model.loss import gaussian_nll
from odevae.model.module import ODEVAE
from odevae.model.networks import ParamNet
from odevae.model.solving import solve
from tests.conftest import batch_of


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
    for part in (model.core.encoder, model.core.decoder, model.core.param_net):
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


def test_diagonal_shortcut_matches_the_matrix_exponential():
    system = make_system("linear_diagonal", 2)
    u0 = torch.randn(3, 2, dtype=torch.float64)
    theta = torch.rand(3, 2, dtype=torch.float64) - 0.5
    t = torch.tensor([[0, 1.5, 9.9], [0, 0.7, 0], [0, -2.0, 4.1]], dtype=torch.float64)
    A, _ = system.matrix_and_drift(theta)
    expm = torch.linalg.matrix_exp(A[:, None] * t[..., None, None])
    expected = torch.einsum("nmij,nj->nmi", expm, u0)
    torch.testing.assert_close(system.closed_form(u0, theta, t), expected)


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


def test_adjoint_gradients_match_direct_backpropagation(tiny_cohort):
    batch = batch_of(tiny_cohort, range(4))
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    grads = []
    for adjoint in (False, True):
        torch.manual_seed(0)
        model = ODEVAE(
            p=tiny_cohort.p,
            q=tiny_cohort.q,
            solver="dopri5",
            adjoint=adjoint,
            rtol=1e-9,
            atol=1e-10,
        ).double()
        model.loss_terms(batch, sample=False)["loss"].backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert grads[0][0].abs().sum() > 0
    for direct, adjoint in zip(*grads, strict=True):
        torch.testing.assert_close(adjoint, direct, rtol=1e-5, atol=1e-7)


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


def test_loss_matches_a_per_patient_reference(tiny_cohort):
    """The batched loss equals the workshop's formula, patient by patient."""
    import numpy as np

    torch.manual_seed(3)
    model = ODEVAE(
        p=tiny_cohort.p,
        q=tiny_cohort.q,
        kl_weight=0.3,
        consistency_weight=2.0,
        decoder_l2=0.05,
    ).double()
    batch = batch_of(tiny_cohort, range(7))
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    batch["observed"][1, 1, 0] = False
    with torch.no_grad():
        loss = model.loss_terms(batch, sample=False)["loss"].item()
        out = model(batch)
        l2 = sum(float((w**2).sum()) for w in model.core.decoder.parameters())
        per_patient = []
        for b in range(7):
            n_visits = int(batch["visits"][b].sum())
            total = 0.0
            for j in range(n_visits):
                mu_enc = out["mu_enc"][b, j]
                mu = mu_enc if j == 0 else out["mu_ode"][b, j]
                logvar = out["logvar_enc"][b, j]
                x_mean, x_logvar = model.core.decoder(mu)
                x, obs = batch["values"][b, j].numpy(), batch["observed"][b, j].numpy()
                m, lv = x_mean.numpy(), x_logvar.numpy()
                loglik = -0.5 * np.sum(
                    (np.log(2 * np.pi) + lv + (x - m) ** 2 / np.exp(lv))[obs]
                )
                mu_np, lv_enc = mu.numpy(), logvar.numpy()
                kl = 0.5 * np.sum(np.exp(lv_enc) + mu_np**2 - 1 - lv_enc)
                total += -(loglik - 0.3 * kl)
                if j > 0:
                    total += 2.0 * float(((out["mu_ode"][b, j] - mu_enc) ** 2).sum())
            per_patient.append(total)
    assert loss == pytest.approx(np.mean(per_patient) + 0.05 * l2, rel=1e-10)


def test_activation_ranges_at_init(tiny_cohort):
    torch.manual_seed(0)
    model = ODEVAE(p=tiny_cohort.p, q=tiny_cohort.q, param_bound="tanh1")
    batch = batch_of(tiny_cohort, range(10))
    out = model(batch)
    assert (out["logvar_enc"] <= 0).all()  # -relu head at identity scale/shift
    assert ((out["theta"] > 0) & (out["theta"] < 2)).all()  # tanh + 1


def test_vae_loss_reconstructs_from_the_encoder_and_ignores_the_dynamics(tiny_cohort):
    torch.manual_seed(0)
    model = ODEVAE(p=tiny_cohort.p, q=tiny_cohort.q, loss="vae")
    batch = batch_of(tiny_cohort, range(8))
    terms = model.loss_terms(batch, sample=False)
    out = model(batch)
    x_mean, x_logvar = model.core.decoder(out["mu_enc"])
    observed = batch["observed"] & batch["visits"][..., None]
    nll = gaussian_nll(batch["values"], x_mean, x_logvar, observed)
    torch.testing.assert_close(terms["nll"], nll.mean())
    terms["loss"].backward()
    assert all(p.grad is None for p in model.core.param_net.parameters())


def test_param_l2_adds_the_weight_penalty_and_shrinks_parameters_to_shared(
    tiny_cohort,
):
    """loss.param_l2 adds param_l2 · ‖parameter-net weights‖² (biases and the
    output scale/shift free), and its gradient pulls every weight towards 0, i.e.
    the individual ODE parameters towards one value shared by all patients."""
    batch = batch_of(tiny_cohort, range(8))
    torch.manual_seed(5)
    plain = ODEVAE(p=tiny_cohort.p, q=tiny_cohort.q)
    torch.manual_seed(5)
    shrunk = ODEVAE(p=tiny_cohort.p, q=tiny_cohort.q, param_l2=0.3)
    net = shrunk.core.param_net
    expected = sum(float((m.weight.detach() ** 2).sum()) for m in (net.hidden, net.out))
    with torch.no_grad():
        a = plain.loss_terms(batch, sample=False)["loss"].item()
        b = shrunk.loss_terms(batch, sample=False)["loss"].item()
    assert b - a == pytest.approx(0.3 * expected, rel=1e-5)

    shrunk.loss_terms(batch, sample=False)["loss"].backward()
    plain.loss_terms(batch, sample=False)["loss"].backward()
    extra = net.out.weight.grad - plain.core.param_net.out.weight.grad
    assert torch.allclose(extra, 0.6 * net.out.weight, atol=1e-6)
    assert torch.equal(net.affine.shift.grad, plain.core.param_net.affine.shift.grad)


def test_param_group_lasso_adds_the_covariate_norms(tiny_cohort):
    """loss.param_group_lasso adds weight · Σ_k ‖first-layer weights of covariate
    k‖ and leaves the rest of the loss as it was."""
    batch = batch_of(tiny_cohort, range(8))
    torch.manual_seed(5)
    plain = ODEVAE(p=tiny_cohort.p, q=tiny_cohort.q)
    torch.manual_seed(5)
    sparse = ODEVAE(p=tiny_cohort.p, q=tiny_cohort.q, param_group_lasso=0.2)
    weight = sparse.core.param_net.hidden.weight.detach()
    expected = sum(float(weight[:, k].norm()) for k in range(tiny_cohort.q))
    with torch.no_grad():
        a = plain.loss_terms(batch, sample=False)["loss"].item()
        b = sparse.loss_terms(batch, sample=False)["loss"].item()
    assert b - a == pytest.approx(0.2 * expected, rel=1e-5)


def _fit_param_net(penalty: float) -> torch.Tensor:
    """Fit a parameter net to a rate carried by covariate 0 of 6 (5 are noise);
    return each covariate's first-layer weight norm."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(64, 6, generator=gen)
    target = torch.stack([-0.2 + 0.2 * torch.tanh(z[:, 0]), torch.zeros(64)], 1)
    torch.manual_seed(0)
    net = ParamNet(6, 2, bound="tanh")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(400):
        opt.zero_grad()
        loss = ((net(z) - target) ** 2).sum(1).mean()
        (loss + penalty * net.covariate_group_norm()).backward()
        opt.step()
    return net.hidden.weight.detach().norm(dim=0)


def test_param_group_lasso_selects_the_informative_covariate():
    """With the penalty the noise covariates' weights shrink far below the
    informative one's; without it they stay comparable."""
    plain = _fit_param_net(0.0)
    sparse = _fit_param_net(0.03)
    assert plain[1:].max() > 0.3 * plain[0]
    assert sparse[1:].max() < 0.1 * sparse[0]


def test_hidden_width_sets_the_autoencoders_hidden_layers(tiny_cohort):
    """model.hidden_width widens the encoder's and decoder's hidden layers (0 keeps
    the papers' width p) and the model still encodes, solves and decodes a batch."""
    p, q = tiny_cohort.p, tiny_cohort.q
    papers = ODEVAE(p=p, q=q)
    assert papers.core.encoder.hidden.out_features == p
    assert papers.core.decoder.hidden.out_features == p
    wide = ODEVAE(p=p, q=q, latent_dim=3, hidden_width=24)
    encoder, decoder = wide.core.encoder, wide.core.decoder
    assert (encoder.hidden.in_features, encoder.hidden.out_features) == (p, 24)
    assert encoder.mean.in_features == encoder.logvar.in_features == 24
    assert (decoder.hidden.in_features, decoder.hidden.out_features) == (3, 24)
    assert decoder.mean.out_features == decoder.logvar.out_features == p
    terms = wide.loss_terms(batch_of(tiny_cohort, range(4)), sample=False)
    assert torch.isfinite(terms["loss"])


@pytest.mark.parametrize("loss", ["initial_value", "statistical"])
def test_own_reconstruction_adds_each_visits_nll_from_its_own_encoding(
    tiny_cohort, loss
):
    """loss.own_reconstruction_weight adds weight · the NLL of every visit decoded
    from its own encoder mean (summed per patient, or averaged over its visits
    for the statistical loss, as that loss's own NLL is)."""
    batch = batch_of(tiny_cohort, range(8))
    torch.manual_seed(3)
    plain = ODEVAE(p=tiny_cohort.p, q=tiny_cohort.q, loss=loss)
    torch.manual_seed(3)
    own = ODEVAE(
        p=tiny_cohort.p, q=tiny_cohort.q, loss=loss, own_reconstruction_weight=0.7
    )
    with torch.no_grad():
        a = plain.loss_terms(batch, sample=False)
        b = own.loss_terms(batch, sample=False)
        out = own(batch)
        x_mean, x_logvar = own.core.decoder(out["mu_enc"])
    observed = batch["observed"] & batch["visits"][..., None]
    nll = gaussian_nll(batch["values"], x_mean, x_logvar, observed)
    if loss == "statistical":
        nll = nll / batch["visits"].sum(1)
    torch.testing.assert_close(b["own_reconstruction"], nll.mean())
    torch.testing.assert_close(b["loss"] - a["loss"], 0.7 * nll.mean())
    assert "own_reconstruction" not in a
