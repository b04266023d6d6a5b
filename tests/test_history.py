"""The history encoder (model.history gru): the posterior of each patient's ODE
parameters given the visits seen so far, its KL, the training cut-offs and the
forecast term."""

import dataclasses
import logging

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from odevae.model.history import (
    after_cut,
    before_cut,
    kl_diagonal,
    posterior,
    random_cuts,
)
from odevae.model.loss import observation_nll
from odevae.model.objectives import loss_terms
from odevae.train.model_setup import (
    MIN_HIDDEN_WIDTH,
    build_model,
    hidden_width,
    latent_dim,
)
from tests.conftest import batch_of


def gru_model(cohort, config, kind="initial_value", **loss):
    torch.manual_seed(0)
    model = build_model(
        cohort,
        {**config["model"], "history": "gru"},
        {**config["loss"], "kind": kind, **loss},
        lr=1e-3,
    )
    # a trained-looking encoder: the posterior moves with the history
    torch.nn.init.normal_(model.core.history_encoder.head.weight, std=0.5)
    torch.nn.init.normal_(model.core.history_encoder.head.bias, std=0.5)
    return model.eval()


def test_empty_history_is_the_papers_prior_path(tiny_cohort, tiny_config):
    """With no visits seen, the parameters are the parameter net's and the ODE
    solutions equal those of the same model without a history encoder."""
    model = gru_model(tiny_cohort, tiny_config)
    plain = build_model(tiny_cohort, tiny_config["model"], tiny_config["loss"], 1e-3)
    state = {k: v for k, v in model.state_dict().items() if "history" not in k}
    plain.load_state_dict(state)
    batch = model.scale(batch_of(tiny_cohort, range(tiny_cohort.n)))
    empty = torch.zeros(tiny_cohort.n, dtype=torch.long)
    with torch.no_grad():
        out = model(batch, empty)
        ref = plain.eval()(batch)
        seen = model(batch)  # default: the whole history
    torch.testing.assert_close(out["theta"], ref["theta"])
    torch.testing.assert_close(out["mu_ode"], ref["mu_ode"])
    prior_logvar = model.core.history_encoder.prior_logvar.expand_as(out["theta"])
    torch.testing.assert_close(out["theta_logvar"], prior_logvar)
    assert not torch.allclose(seen["theta"], ref["theta"])


def test_posterior_reads_only_the_visits_before_the_cut(tiny_cohort, tiny_config):
    model = gru_model(tiny_cohort, tiny_config)
    batch = model.scale(batch_of(tiny_cohort, range(tiny_cohort.n)))
    cuts = random_cuts(batch["visits"], torch.Generator().manual_seed(3))
    changed = dict(batch)
    later = after_cut(batch["visits"], cuts)
    changed["values"] = torch.where(
        later[..., None], batch["values"] + 3.0, batch["values"]
    )
    changed["times"] = torch.where(later, batch["times"] * 1.5, batch["times"])
    with torch.no_grad():
        before = model.posterior(batch, cuts)
        after = model.posterior(changed, cuts)
        moved = model.posterior(changed, batch["visits"].sum(1))
        full = model.posterior(batch, batch["visits"].sum(1))
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(moved[0], full[0])


def state_model(cohort, config, kind="initial_value"):
    torch.manual_seed(0)
    model = build_model(
        cohort,
        {**config["model"], "history": "gru", "history_state": True},
        {**config["loss"], "kind": kind},
        lr=1e-3,
    )
    torch.nn.init.normal_(model.core.history_encoder.state_head.weight, std=0.5)
    torch.nn.init.normal_(model.core.history_encoder.state_head.bias, std=0.5)
    return model.eval()


def test_state_correction_reads_only_the_visits_before_the_cut(
    tiny_cohort, tiny_config
):
    """model.history_state: no correction from an empty history, a correction
    from the visits seen, and none of it from a visit at or after the cut."""
    model = state_model(tiny_cohort, tiny_config)
    batch = model.scale(batch_of(tiny_cohort, range(tiny_cohort.n)))
    n = tiny_cohort.n
    cuts = random_cuts(batch["visits"], torch.Generator().manual_seed(3))
    changed = dict(batch)
    later = after_cut(batch["visits"], cuts)
    changed["values"] = torch.where(
        later[..., None], batch["values"] + 3.0, batch["values"]
    )
    # ... while a change of the last visit before the cut moves it
    last = before_cut(batch["visits"], cuts) & ~before_cut(batch["visits"], cuts - 1)
    seen = dict(batch)
    seen["values"] = torch.where(
        last[..., None], batch["values"] + 3.0, batch["values"]
    )
    with torch.no_grad():
        empty = model.infer(batch, torch.zeros(n, dtype=torch.long))[2]
        before = model.infer(batch, cuts)[2]
        after = model.infer(changed, cuts)[2]
        moved = model.infer(seen, cuts)[2]
        out = model(batch, cuts)
    assert empty.shape == (n, model.hparams.model["latent_dim"])
    assert torch.equal(empty, torch.zeros_like(empty))
    assert before.abs().min() > 0
    torch.testing.assert_close(before, after)
    assert (moved - before).abs().amax(1).min() > 0  # every patient's correction
    torch.testing.assert_close(out["state_shift"], before)


@pytest.mark.parametrize("kind", ["initial_value", "statistical"])
def test_the_forecast_term_adds_the_state_correction(tiny_cohort, tiny_config, kind):
    """The forecast NLL of the visits after each cut is that of the model's own
    forecast shifted by the correction: zeroing the state head gives the model
    without it, and the head's gradient comes from the forecast term alone."""
    model = state_model(tiny_cohort, tiny_config, kind)
    batch = model.scale(batch_of(tiny_cohort, range(tiny_cohort.n)))
    shifted = loss_terms(model.core, model.objective, batch, sample=False)
    shifted["loss"].backward()
    grad = model.core.history_encoder.state_head.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    with torch.no_grad():
        model.core.history_encoder.state_head.weight.zero_()
        model.core.history_encoder.state_head.bias.zero_()
        plain = loss_terms(model.core, model.objective, batch, sample=False)
    assert not torch.allclose(shifted["forecast"], plain["forecast"])
    for key in ("nll", "param_kl"):  # the other terms do not see the correction
        torch.testing.assert_close(shifted[key], plain[key])


def test_kl_is_the_diagonal_gaussians_kl():
    g = torch.Generator().manual_seed(0)
    mean, prior_mean = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    logvar, prior_logvar = torch.randn(5, 3, generator=g), torch.randn(3, generator=g)
    expected = kl_divergence(
        Normal(mean, torch.exp(0.5 * logvar)),
        Normal(prior_mean, torch.exp(0.5 * prior_logvar)),
    ).sum(-1)
    torch.testing.assert_close(
        kl_diagonal(mean, logvar, prior_mean, prior_logvar), expected
    )
    same = kl_diagonal(prior_mean, prior_logvar.expand(5, 3), prior_mean, prior_logvar)
    torch.testing.assert_close(same, torch.zeros(5))


def test_posterior_uses_the_last_history_visits_output():
    prior = torch.zeros(2, 1)
    shift = torch.arange(6.0).reshape(2, 3, 1)
    mean, logvar = posterior(
        prior, torch.tensor([-1.0]), shift, -shift, torch.tensor([2, 0])
    )
    torch.testing.assert_close(mean, torch.tensor([[1.0], [0.0]]))
    torch.testing.assert_close(logvar, torch.tensor([[-2.0], [-1.0]]))


def test_cuts_keep_at_least_one_history_visit_and_cover_every_length():
    visits = torch.zeros(400, 6, dtype=torch.bool)
    n = torch.arange(400) % 6 + 1
    for i, k in enumerate(n):
        visits[i, :k] = True
    cuts = random_cuts(visits, torch.Generator().manual_seed(0))
    assert ((cuts >= 1) & (cuts <= n)).all()
    six = cuts[n == 6]
    assert set(six.tolist()) == {1, 2, 3, 4, 5, 6}


def test_forecast_term_predicts_the_visits_after_the_cut_from_the_last_history_visit(
    tiny_cohort, tiny_config
):
    """initial_value: the NLL of visits j >= cut decoded from the last history
    visit's encoding solved to t_j with the posterior given the history, the
    held-out predictor ``odevae``."""
    model = gru_model(tiny_cohort, tiny_config)
    batch = model.scale(batch_of(tiny_cohort, range(tiny_cohort.n)))
    cuts = torch.full((tiny_cohort.n,), 2)
    cuts = torch.minimum(cuts, batch["visits"].sum(1))
    with torch.no_grad():
        out = model(batch, cuts)
        got = model.objective.forecast_nll(model.core, batch, out, cuts)
    row = int(np.argmax(tiny_cohort.visits.sum(1)))
    t = batch["times"][row]
    start = out["mu_enc"][row, 1][None]
    z = model.solve(start, out["theta"][row][None], (t[2:] - t[1])[None])[0]
    mean, logvar = model.core.decoder(z)
    obs = batch["observed"][row, 2:] & batch["visits"][row, 2:, None]
    expected = observation_nll(
        batch["values"][row, 2:][None],
        mean[None],
        logvar[None],
        obs[None],
        model.core.binary,
    )[0]
    torch.testing.assert_close(got[row], expected)


@pytest.mark.parametrize("kind", ["initial_value", "statistical"])
def test_history_loss_adds_forecast_and_kl_terms(tiny_cohort, tiny_config, kind):
    model = gru_model(tiny_cohort, tiny_config, kind, forecast_weight=0.5)
    batch = batch_of(tiny_cohort, range(tiny_cohort.n))
    terms = model.loss_terms(model.scale(batch), sample=False)
    assert {"forecast", "param_kl"} <= set(terms)
    assert terms["forecast"] > 0 and terms["param_kl"] > 0
    again = model.loss_terms(model.scale(batch), sample=False)
    torch.testing.assert_close(terms["loss"], again["loss"])  # same cuts when eval
    terms["loss"].backward()
    grad = model.core.history_encoder.gru.weight_ih_l0.grad
    assert grad is not None and grad.abs().sum() > 0


def test_single_score_cohort_gets_one_latent_dimension_per_measurement(
    tiny_cohort, tiny_config, caplog
):
    one = dataclasses.replace(
        tiny_cohort,
        values=tiny_cohort.values[..., :1],
        observed=tiny_cohort.observed[..., :1],
        measurement_names=tiny_cohort.measurement_names[:1],
    )
    learned = {**tiny_config["model"], "autoencoder": "learned"}  # auto: identity
    with caplog.at_level(logging.INFO, logger="odevae.train.model_setup"):
        model = build_model(one, learned, tiny_config["loss"], 1e-3)
    assert model.hparams.model["latent_dim"] == 1
    assert "latent space has 1 dimension" in caplog.text
    assert model.hparams.model["hidden_width"] == MIN_HIDDEN_WIDTH  # not one unit
    assert hidden_width(0, 10) == 0 and hidden_width(32, 1) == 32
    assert latent_dim(4, 10) == 4
    assert latent_dim(2, 1, "lotka_volterra") == 2


@pytest.mark.parametrize(
    ("measurements", "corrects"), [(["x1"], True), (["x1", "x2"], False)]
)
def test_history_state_auto_corrects_where_the_measurements_are_the_state(
    tiny_cohort, tiny_config, caplog, measurements, corrects
):
    """model.history_state auto: a state correction for a single continuous score
    (the identity autoencoder), none with a learned encoder; logged either way."""
    names = list(tiny_cohort.measurement_names)
    keep = [names.index(m) for m in measurements]
    cohort = dataclasses.replace(
        tiny_cohort,
        values=tiny_cohort.values[..., keep],
        observed=tiny_cohort.observed[..., keep],
        measurement_names=np.asarray(measurements),
    )
    model_cfg = {
        **tiny_config["model"],
        "autoencoder": "auto",
        "history": "gru",
        "history_state": "auto",
    }
    with caplog.at_level(logging.INFO, logger="odevae.train.model_setup"):
        model = build_model(cohort, model_cfg, tiny_config["loss"], lr=1e-3)
    has_state = model.core.history_encoder.state_head is not None
    assert has_state is corrects
    assert model.hparams.model["history_state"] is corrects  # stored resolved
    assert "model.history_state auto" in caplog.text
    # without a history encoder there is nothing to correct, whatever the cohort
    plain = build_model(
        cohort, {**model_cfg, "history": "none"}, tiny_config["loss"], lr=1e-3
    )
    assert plain.core.history_encoder is None
    assert plain.hparams.model["history_state"] is False


@pytest.mark.parametrize("kind", ["initial_value", "statistical"])
def test_odevae_adds_the_correction_and_odevae_prior_does_not(
    tiny_cohort, tiny_config, kind
):
    """With the posterior's parameter shift zeroed, ``odevae`` is ``odevae_prior``
    plus the correction given each target's history visits; with the correction
    zeroed too, the two are equal."""
    from odevae.evaluate.prediction.latent import _tensors, latent_predictions

    model = state_model(tiny_cohort, tiny_config, kind)
    encoder = model.core.history_encoder
    with torch.no_grad():
        encoder.head.weight.zero_()
        encoder.head.bias.zero_()
    train = tiny_cohort.subset(np.arange(10))
    test = tiny_cohort.subset(np.arange(10, tiny_cohort.n))
    targets, latent, _ = latent_predictions(model, train, test)
    rows = torch.as_tensor(targets["row"].to_numpy())
    n_history = torch.as_tensor(targets["n_history"].to_numpy())
    scaled = {key: value[rows] for key, value in _tensors(model, test).items()}
    with torch.no_grad():
        state = model.infer(scaled, n_history)[2]
    assert state.abs().min() > 0
    torch.testing.assert_close(latent["odevae"] - latent["odevae_prior"], state)
    with torch.no_grad():
        encoder.state_head.weight.zero_()
        encoder.state_head.bias.zero_()
    _, plain, _ = latent_predictions(model, train, test)
    torch.testing.assert_close(plain["odevae"], plain["odevae_prior"])
