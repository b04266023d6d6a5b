"""The losses of both papers, one object per ``loss.kind``, and the terms they
share.

``initial_value`` (workshop / BJ 2022): the latent IVP starts at μ_0. Per patient

    −Σ_j [log p(x_j | z_j) − kl_weight · KL_j]
        + consistency_weight · Σ_{j≥1} ‖μ̃_j − μ_j‖²

with z_j ~ N(μ̃_j, σ_j²) (μ̃_0 = μ_0).

``statistical`` (arXiv 2311.16286): the ODE is solved from every visit k to every
other visit j; the local solutions μ̃_{k→j} are combined per target into μ̄_j (with
inverse-variance weights, see :func:`~odevae.model.loss.combine_local_solutions`).
Per patient

    mean_j [−log p(x_j | z_j) + kl_weight · KL_j] + mu_weight · P_μ + var_weight · P_var

with z_j ~ N(μ̄_j, σ_j²). ``vae`` (the workshop's VAE-only baseline): the first
loss with z_j ~ N(μ_j, σ_j²) at every visit and no ODE term, so the latent
means show what the autoencoder alone finds.

Shared (:func:`loss_terms`): with a history encoder, the forecast NLL of the visits
after a random cut per patient and the parameter posterior's KL from the prior;
with own_reconstruction_weight > 0 the ODE losses also decode every visit from its
own encoding (the VAE term, normalised per patient as the loss's own NLL), so that
a prediction started from a visit's encoding starts from a faithful state. The
batch loss is the mean over patients (or the weighted sum when the batch carries
``weight``, as similarity batches do), plus decoder_l2 · ‖decoder parameters‖²,
param_l2 · ‖parameter net weights‖² (which shrinks the individual ODE parameters
towards a shared value) and param_group_lasso · Σ_k ‖first-layer weights of
covariate k‖ (which drives the weights of uninformative covariates towards zero).
"""

from __future__ import annotations

import torch

from odevae.model.core import ODEVAECore
from odevae.model.history import after_cut, before_cut, kl_diagonal, random_cuts
from odevae.model.loss import (
    combine_history,
    combine_local_solutions,
    consistency_penalty,
    kl_standard_normal,
    multistart_mu_penalty,
    variance_penalty,
)


class Objective:
    """One loss kind over a filled-in ``loss`` section (``settings``).

    :meth:`data_terms` gives the per-patient NLL and KL, the kind's penalties
    (B,), its per-patient loss and, for the statistical loss, the local solutions.
    """

    kind = ""
    #: whether the loss fits dynamics (the VAE-only baseline does not)
    dynamics = True

    def __init__(self, settings: dict) -> None:
        self.settings = settings

    def reduce(self, per_visit: torch.Tensor, visits: torch.Tensor) -> torch.Tensor:
        """Per-visit terms (B, T) → per patient (B,): their sum."""
        return per_visit.sum(1)

    def reconstruction(self, core: ODEVAECore, batch, mu, logvar, sample):
        """Per-visit NLL and KL (B, T) of z ~ N(mu, exp(logvar)) (or z = mu)."""
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        observed = batch["observed"] & batch["visits"][..., None]
        nll = core.visit_nll(z, batch["values"], observed)
        kl = kl_standard_normal(
            mu, logvar, batch["visits"], True, self.settings["free_bits"]
        )
        return nll, kl

    def data_terms(self, core: ODEVAECore, batch: dict, out: dict, sample: bool):
        raise NotImplementedError

    def forecast_states(self, core, batch, out, cuts, target, local):
        """Latent states (B, T, d) of the visits after each cut (``target``),
        predicted as the held-out predictor ``odevae`` does."""
        raise NotImplementedError

    def forecast_nll(self, core, batch, out, cuts, local=None) -> torch.Tensor:
        """NLL (B,) of the visits after each patient's cut, decoded from
        :meth:`forecast_states` and reduced per patient as the loss's own NLL."""
        visits = batch["visits"]
        target = after_cut(visits, cuts)
        z = self.forecast_states(core, batch, out, cuts, target, local)
        if "state_shift" in out:  # model.history_state: the history's correction
            z = z + out["state_shift"][:, None, :]
        nll = core.visit_nll(z, batch["values"], batch["observed"] & target[..., None])
        return self.reduce(nll, visits)


class VAEOnly(Objective):
    """The workshop's VAE-only baseline: every visit decoded from its encoding."""

    kind = "vae"
    dynamics = False

    def data_terms(self, core, batch, out, sample):
        nll, kl = self.reconstruction(
            core, batch, out["mu_enc"], out["logvar_enc"], sample
        )
        nll, kl = nll.sum(1), kl.sum(1)
        per_patient = nll + self.settings["kl_weight"] * kl
        return nll, kl, {}, per_patient, None


class InitialValue(Objective):
    """The workshop's loss: one IVP per patient from its first visit's encoding."""

    kind = "initial_value"

    def data_terms(self, core, batch, out, sample):
        s, visits = self.settings, batch["visits"]
        first = torch.zeros_like(visits)
        first[:, 0] = True
        mu = torch.where(first[..., None], out["mu_enc"], out["mu_ode"])
        nll, kl = self.reconstruction(core, batch, mu, out["logvar_enc"], sample)
        nll, kl = nll.sum(1), kl.sum(1)
        consistency = consistency_penalty(out["mu_ode"], out["mu_enc"], visits)
        per_patient = nll + s["kl_weight"] * kl + s["consistency_weight"] * consistency
        return nll, kl, {"consistency": consistency}, per_patient, None

    def forecast_states(self, core, batch, out, cuts, target, local):
        """The last history visit's encoding solved on."""
        idx = torch.arange(len(cuts), device=cuts.device)
        last = cuts - 1
        dt = batch["times"] - batch["times"][idx, last][:, None]
        dt = torch.where(target, dt, 0.0)
        return core.solve(out["mu_enc"][idx, last], out["theta"], dt)


class Statistical(Objective):
    """The follow-up paper's loss: local solutions from every visit, combined."""

    kind = "statistical"

    def reduce(self, per_visit, visits):
        """Per-visit terms (B, T) → per patient (B,): their sum / visit count."""
        return per_visit.sum(1) / visits.sum(1).to(per_visit.dtype)

    def data_terms(self, core, batch, out, sample):
        s, st, visits = self.settings, self.settings["statistical"], batch["visits"]
        local = core.solve_from_every_visit(out["mu_enc"], out["theta"], batch["times"])
        mu = combine_local_solutions(local, visits, st["weighting"], st["skip_own"])
        nll, kl = self.reconstruction(core, batch, mu, out["logvar_enc"], sample)
        n_visits = visits.sum(1).to(nll.dtype)
        nll, kl = nll.sum(1) / n_visits, kl.sum(1) / n_visits
        mu_pen = multistart_mu_penalty(local, out["mu_enc"], visits)
        var_pen = variance_penalty(
            local,
            out["mu_enc"],
            visits,
            st["var_penalty"],
            st["var_offset"],
            st["skip_own"],
        )
        penalties = {"mu_penalty": mu_pen, "var_penalty": var_pen}
        per_patient = (
            nll
            + s["kl_weight"] * kl
            + st["mu_weight"] * mu_pen
            + st["var_weight"] * var_pen
        )
        return nll, kl, penalties, per_patient, local

    def forecast_states(self, core, batch, out, cuts, target, local):
        """The combination of the local solutions from every history visit."""
        B, T, _, d = local.shape
        history = before_cut(batch["visits"], cuts)
        per_target = local.permute(0, 2, 1, 3).reshape(B * T, T, d)
        return combine_history(
            per_target,
            history.repeat_interleave(T, 0),
            self.settings["statistical"]["weighting"],
        ).reshape(B, T, d)


OBJECTIVES = {cls.kind: cls for cls in (InitialValue, Statistical, VAEOnly)}


def make_objective(loss: dict) -> Objective:
    """The objective of a filled-in ``loss`` section."""
    st = loss["statistical"]
    if loss["kind"] == "statistical" and st["weighting"] and not st["skip_own"]:
        raise ValueError("inverse-variance weighting requires skip_own")
    return OBJECTIVES[loss["kind"]](loss)


def loss_terms(
    core: ODEVAECore, objective: Objective, batch: dict, sample: bool
) -> dict:
    """Per-patient loss terms (``per_patient``) and the batch loss (``loss``) of a
    scaled ``batch``; ``sample`` draws z (and θ) as in training."""
    s, visits = objective.settings, batch["visits"]
    cuts = None
    if core.history_encoder is not None:
        # training: a fresh cut per patient and step; otherwise the same cuts
        # at every evaluation, so that validation losses compare across epochs
        generator = None if sample else torch.Generator().manual_seed(0)
        cuts = random_cuts(visits, generator)
    out = core(batch, cuts, sample=sample)
    nll, kl, penalties, per_patient, local = objective.data_terms(
        core, batch, out, sample
    )
    if cuts is not None:
        # the visits after each cut predicted as the held-out predictor does,
        # and the posterior's KL from the parameter net's prior
        forecast = objective.forecast_nll(core, batch, out, cuts, local)
        param_kl = kl_diagonal(
            out["theta_mean"],
            out["theta_logvar"],
            out["theta_prior"],
            core.param_prior_logvar(),
        )
        penalties.update(forecast=forecast, param_kl=param_kl)
        per_patient = (
            per_patient
            + s["forecast_weight"] * forecast
            + s["history_kl_weight"] * param_kl
        )
    own_weight = s["own_reconstruction_weight"]
    if own_weight and objective.dynamics:
        # each visit decoded from its own encoding, as the VAE-only loss does:
        # the ODE losses above decode visits from solutions only
        own, _ = objective.reconstruction(
            core, batch, out["mu_enc"], out["logvar_enc"], sample
        )
        own = objective.reduce(own, visits)
        penalties["own_reconstruction"] = own
        per_patient = per_patient + own_weight * own
    l2 = core.decoder_l2()
    if "weight" in batch:
        data_term = (batch["weight"] * per_patient).sum()
    else:
        data_term = per_patient.mean()
    loss = data_term + s["decoder_l2"] * l2
    if s["param_l2"]:
        loss = loss + s["param_l2"] * core.param_net.weight_l2()
    if s["param_group_lasso"]:
        loss = loss + s["param_group_lasso"] * core.param_net.covariate_group_norm()
    terms = {"loss": loss, "nll": nll.mean()}
    terms["kl"] = kl.mean()
    terms.update({key: value.mean() for key, value in penalties.items()})
    terms["per_patient"] = per_patient
    return terms
