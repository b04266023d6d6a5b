"""The ODE-VAE as a LightningModule, with the losses of both papers.

Per patient: the encoder maps every visit to a latent mean μ_j and log-variance; the
parameter net maps baseline covariates to individual ODE parameters.

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
means show what the autoencoder alone finds. Either way the batch loss is the mean
over patients (or the weighted sum when the batch carries ``weight``, as similarity
batches do), plus decoder_l2 · ‖decoder parameters‖², param_l2 · ‖parameter
net weights‖² (which shrinks the individual ODE parameters towards a shared value)
and param_group_lasso · Σ_k ‖first-layer weights of covariate k‖ (which drives the
weights of uninformative covariates towards zero). With own_reconstruction_weight
> 0 the ODE losses also decode every visit from its own encoding (the VAE term,
normalised per patient as the loss's own NLL), so that a prediction started from a
visit's encoding starts from a faithful state.
"""

from __future__ import annotations

import lightning as L
import torch

from odevae.model.dynamics import make_system, solve, solve_from_every_visit
from odevae.model.history import (
    HistoryEncoder,
    after_cut,
    before_cut,
    kl_diagonal,
    posterior,
    random_cuts,
)
from odevae.model.loss import (
    combine_history,
    combine_local_solutions,
    consistency_penalty,
    kl_standard_normal,
    multistart_mu_penalty,
    observation_nll,
    variance_penalty,
)
from odevae.model.networks import Decoder, Encoder, ParamNet
from odevae.model.systems import resolve_solver

LOSSES = ("initial_value", "statistical", "vae")
#: ``history``: none (the papers: parameters from baseline covariates alone) or gru
#: (:mod:`~odevae.model.history`: a posterior given the visits seen so far).
HISTORIES = ("none", "gru")


class ODEVAE(L.LightningModule):
    """VAE with individual latent ODE dynamics, trained on batches of patients.

    A batch is a dict of tensors: ``times`` (B, T), ``values`` (B, T, p), ``observed``
    (B, T, p) bool, ``visits`` (B, T) bool and ``baseline`` (B, q); the latent IVP
    starts at visit 0 of each patient. Times are in the data's unit; the ODE is
    solved in t / ``time_scale`` (an hparam, so stored in the checkpoint), which
    keeps every unit from seconds to years on the same internal scale. Inputs are in
    standardised units when the module holds scaling statistics (see
    :meth:`set_scaling`).
    """

    def __init__(
        self,
        p: int,
        q: int,
        latent_dim: int = 2,
        system: str = "linear_diagonal",
        fixed_params: dict | None = None,
        neural: dict | None = None,
        param_bound: str = "auto",
        param_scale: float = 1.0,
        bottleneck: int = 0,
        hidden_width: int = 0,
        solver: str = "auto",
        rtol: float = 1e-6,
        atol: float = 1e-7,
        adjoint: bool = False,
        loss: str = "initial_value",
        kl_weight: float = 0.5,
        free_bits: float = 0.0,
        decoder_l2: float = 0.01,
        param_l2: float = 0.0,
        param_group_lasso: float = 0.0,
        consistency_weight: float = 1.0,
        own_reconstruction_weight: float = 0.0,
        weighting: bool = True,
        skip_own: bool = True,
        mu_weight: float = 1.0,
        var_weight: float = 2.0,
        var_penalty: str = "log_diff",
        var_offset: float = 0.1,
        lr: float = 5e-3,
        binary: list[bool] | None = None,
        time_scale: float = 1.0,
        history: str = "none",
        history_hidden: int = 16,
        history_kl_weight: float = 1.0,
        forecast_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}, expected one of {list(LOSSES)}")
        if loss == "statistical" and weighting and not skip_own:
            raise ValueError("inverse-variance weighting requires skip_own")
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, found {time_scale}")
        if history not in HISTORIES:
            raise ValueError(f"unknown history {history!r}, expected {HISTORIES}")
        self.system = make_system(system, latent_dim, fixed_params, neural)
        self.solver = resolve_solver(solver, system)
        bound = self.system.default_bound if param_bound == "auto" else param_bound
        self.encoder = Encoder(
            p, latent_dim, positive=self.system.positive_states, hidden=hidden_width
        )
        self.decoder = Decoder(latent_dim, p, hidden=hidden_width)
        self.param_net = ParamNet(
            q,
            self.system.n_params,
            bound,
            scale=param_scale,
            bottleneck=bottleneck,
            small_init=bound == "tanh1",
        )
        self.history_encoder = (
            HistoryEncoder(p, self.system.n_params, history_hidden)
            if history == "gru" and loss != "vae"
            else None
        )
        # Scaling statistics (identity unless set from the training folds).
        self._sums: dict = {}  # per stage: running sums of the epoch's loss terms
        self.register_buffer("x_mean", torch.zeros(p))
        self.register_buffer("x_std", torch.ones(p))
        self.register_buffer("z_mean", torch.zeros(q))
        self.register_buffer("z_std", torch.ones(q))
        self.register_buffer("z_fill", torch.zeros(q))  # imputes missing covariates
        # 0/1 measurements with a Bernoulli likelihood (decoder mean = logit)
        flags = [False] * p if binary is None else list(binary)
        if len(flags) != p:
            raise ValueError(f"binary flags for {len(flags)} measurements, not {p}")
        self.register_buffer("binary", torch.tensor(flags, dtype=torch.bool))

    @property
    def param_names(self) -> list[str]:
        return self.system.param_names

    def set_scaling(self, x_mean, x_std, z_mean, z_std, z_fill=None) -> None:
        """Store scaling statistics so :meth:`scale` maps raw data to model units.

        ``z_fill`` (default 0) replaces missing (NaN) baseline covariates.
        """
        z_fill = torch.zeros_like(self.z_fill) if z_fill is None else z_fill
        for name, value in zip(
            ("x_mean", "x_std", "z_mean", "z_std", "z_fill"),
            (x_mean, x_std, z_mean, z_std, z_fill),
            strict=True,
        ):
            getattr(self, name).copy_(torch.as_tensor(value, dtype=torch.float32))

    def scale(self, batch: dict) -> dict:
        """Raw-unit batch → model units (missing entries stay 0, covariates imputed)."""
        values = (batch["values"] - self.x_mean) / self.x_std
        values = torch.where(batch["observed"], values, torch.zeros_like(values))
        baseline = batch["baseline"]
        baseline = torch.where(torch.isnan(baseline), self.z_fill, baseline)
        baseline = (baseline - self.z_mean) / self.z_std
        return {**batch, "values": values, "baseline": baseline}

    def forward(
        self, batch: dict, n_history: torch.Tensor | None = None, sample: bool = False
    ) -> dict:
        """Encoder means/log-variances, ODE parameters and ODE solutions per visit.

        With a history encoder the parameters are the posterior's given each
        patient's first ``n_history`` (B,) visits (default: all of them): its mean,
        or a draw with ``sample``; ``theta_prior`` is the parameter net's mean.
        """
        mu_enc, logvar_enc = self.encoder(batch["values"])
        prior = self.param_net(batch["baseline"])
        # the IVP starts at each patient's first visit (time 0 unless preprocessing
        # counted time from an earlier row without measurements)
        times = batch["times"] - batch["times"][:, :1]
        times = torch.where(batch["visits"], times, torch.zeros_like(times))
        out = {"mu_enc": mu_enc, "logvar_enc": logvar_enc, "theta_prior": prior}
        theta = prior
        if self.history_encoder is not None:
            if n_history is None:
                n_history = batch["visits"].sum(1)
            mean, logvar = self.posterior(batch, n_history, prior, times)
            theta = mean
            if sample:
                theta = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
            out.update(theta_mean=mean, theta_logvar=logvar, n_history=n_history)
        out["theta"] = theta
        out["mu_ode"] = self.solve(mu_enc[:, 0], theta, times)
        return out

    def posterior(
        self,
        batch: dict,
        n_history: torch.Tensor,
        prior: torch.Tensor | None = None,
        times: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance (B, nθ) of the ODE parameters given each patient's
        first ``n_history`` visits of the scaled ``batch`` (the prior's without a
        history encoder, or with ``n_history`` 0)."""
        if prior is None:
            prior = self.param_net(batch["baseline"])
        encoder = self.history_encoder
        if encoder is None:
            return prior, torch.full_like(prior, float("-inf"))
        if times is None:
            times = batch["times"] - batch["times"][:, :1]
            times = torch.where(batch["visits"], times, torch.zeros_like(times))
        shift, logvar_shift = encoder(
            batch["values"], batch["observed"], times / self.time_scale, batch["visits"]
        )
        return posterior(
            prior, encoder.prior_logvar, shift, logvar_shift, n_history.long()
        )

    @property
    def time_scale(self) -> float:
        """Data time units per internal time unit: the ODE runs in t / time_scale."""
        return float(self.hparams.get("time_scale", 1.0))

    def solve(self, u0: torch.Tensor, theta: torch.Tensor, t: torch.Tensor):
        """Latent trajectories from u0 (B, d) after the offsets t (B, T), in data
        time units (solved on the internal scale t / :attr:`time_scale`)."""
        t = t / self.time_scale
        return solve(self.system, u0, theta, t, **self._solver_options())

    def rates_per_data_unit(self, theta: torch.Tensor) -> torch.Tensor:
        """Learned parameters as rates per data time unit: every parameter of the
        linear and Lotka-Volterra systems is a rate (1 / time), so it is divided by
        :attr:`time_scale`; the neural system's conditioning values are no rates
        and stay as they are."""
        if self.hparams.system == "neural":
            return theta
        return theta / self.time_scale

    def _solver_options(self) -> dict:
        hp = self.hparams
        return {
            "method": self.solver,
            "rtol": hp.rtol,
            "atol": hp.atol,
            "adjoint": hp.adjoint,
        }

    def _reconstruction(self, batch, mu, logvar, sample):
        """Per-visit NLL and KL (B, T) of z ~ N(mu, exp(logvar)) (or z = mu)."""
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        x_mean, x_logvar = self.decoder(z)
        observed = batch["observed"] & batch["visits"][..., None]
        nll = observation_nll(
            batch["values"], x_mean, x_logvar, observed, self.binary, per_visit=True
        )
        kl = kl_standard_normal(
            mu, logvar, batch["visits"], True, self.hparams.get("free_bits", 0.0)
        )
        return nll, kl

    def loss_terms(self, batch: dict, sample: bool) -> dict:
        """Per-patient loss terms (``per_patient``) and the batch loss (``loss``)."""
        hp = self.hparams
        visits = batch["visits"]
        cuts = None
        if self.history_encoder is not None:
            # training: a fresh cut per patient and step; otherwise the same cuts
            # at every evaluation, so that validation losses compare across epochs
            generator = None if sample else torch.Generator().manual_seed(0)
            cuts = random_cuts(visits, generator)
        out = self(batch, cuts, sample=sample)
        local = None  # the statistical loss's local solutions
        if hp.loss == "vae":  # the workshop's VAE-only baseline: no dynamics
            nll, kl = self._reconstruction(
                batch, out["mu_enc"], out["logvar_enc"], sample
            )
            nll, kl = nll.sum(1), kl.sum(1)
            penalties = {}
            per_patient = nll + hp.kl_weight * kl
        elif hp.loss == "initial_value":
            first = torch.zeros_like(visits)
            first[:, 0] = True
            mu = torch.where(first[..., None], out["mu_enc"], out["mu_ode"])
            nll, kl = self._reconstruction(batch, mu, out["logvar_enc"], sample)
            nll, kl = nll.sum(1), kl.sum(1)
            consistency = consistency_penalty(out["mu_ode"], out["mu_enc"], visits)
            penalties = {"consistency": consistency}
            per_patient = nll + hp.kl_weight * kl + hp.consistency_weight * consistency
        else:
            local = solve_from_every_visit(
                self.system,
                out["mu_enc"],
                out["theta"],
                batch["times"] / self.time_scale,
                **self._solver_options(),
            )
            mu = combine_local_solutions(local, visits, hp.weighting, hp.skip_own)
            nll, kl = self._reconstruction(batch, mu, out["logvar_enc"], sample)
            n_visits = visits.sum(1).to(nll.dtype)
            nll, kl = nll.sum(1) / n_visits, kl.sum(1) / n_visits
            mu_pen = multistart_mu_penalty(local, out["mu_enc"], visits)
            var_pen = variance_penalty(
                local, out["mu_enc"], visits, hp.var_penalty, hp.var_offset, hp.skip_own
            )
            penalties = {"mu_penalty": mu_pen, "var_penalty": var_pen}
            per_patient = (
                nll
                + hp.kl_weight * kl
                + hp.mu_weight * mu_pen
                + hp.var_weight * var_pen
            )
        if cuts is not None:
            # the visits after each cut predicted as the held-out predictor does,
            # and the posterior's KL from the parameter net's prior
            forecast = self._forecast_nll(batch, out, cuts, local)
            param_kl = kl_diagonal(
                out["theta_mean"],
                out["theta_logvar"],
                out["theta_prior"],
                self.history_encoder.prior_logvar,
            )
            penalties.update(forecast=forecast, param_kl=param_kl)
            per_patient = (
                per_patient
                + hp.forecast_weight * forecast
                + hp.history_kl_weight * param_kl
            )
        own_weight = hp.get("own_reconstruction_weight", 0.0)
        if own_weight and hp.loss != "vae":
            # each visit decoded from its own encoding, as the VAE-only loss does:
            # the ODE losses above decode visits from solutions only
            own, _ = self._reconstruction(
                batch, out["mu_enc"], out["logvar_enc"], sample
            )
            own = own.sum(1)
            if hp.loss == "statistical":
                own = own / visits.sum(1).to(own.dtype)
            penalties["own_reconstruction"] = own
            per_patient = per_patient + own_weight * own
        l2 = sum((w**2).sum() for w in self.decoder.parameters())
        if "weight" in batch:
            data_term = (batch["weight"] * per_patient).sum()
        else:
            data_term = per_patient.mean()
        loss = data_term + hp.decoder_l2 * l2
        param_l2 = hp.get("param_l2", 0.0)  # absent from older checkpoints
        if param_l2:
            loss = loss + param_l2 * self.param_net.weight_l2()
        group_lasso = hp.get("param_group_lasso", 0.0)
        if group_lasso:
            loss = loss + group_lasso * self.param_net.covariate_group_norm()
        terms = {"loss": loss, "nll": nll.mean()}
        terms["kl"] = kl.mean()
        terms.update({key: value.mean() for key, value in penalties.items()})
        terms["per_patient"] = per_patient
        return terms

    def _forecast_nll(self, batch, out, cuts, local=None) -> torch.Tensor:
        """NLL (B,) of the visits after each patient's cut, decoded from the
        prediction of the held-out predictor ``odevae``: the last history visit's
        encoding solved on (initial-value loss), or the combination of the local
        solutions from every history visit (``local``, statistical loss; then
        divided by the patient's visit count, as that loss is)."""
        visits = batch["visits"]
        target = after_cut(visits, cuts)
        if local is None:
            idx = torch.arange(len(cuts), device=cuts.device)
            last = cuts - 1
            dt = batch["times"] - batch["times"][idx, last][:, None]
            dt = torch.where(target, dt, torch.zeros_like(dt))
            z = self.solve(out["mu_enc"][idx, last], out["theta"], dt)
        else:
            B, T, _, d = local.shape
            history = before_cut(visits, cuts)
            per_target = local.permute(0, 2, 1, 3).reshape(B * T, T, d)
            z = combine_history(
                per_target,
                history.repeat_interleave(T, 0),
                self.hparams.weighting,
            ).reshape(B, T, d)
        x_mean, x_logvar = self.decoder(z)
        observed = batch["observed"] & target[..., None]
        nll = observation_nll(
            batch["values"], x_mean, x_logvar, observed, self.binary, per_visit=True
        ).sum(1)
        if local is not None:
            nll = nll / visits.sum(1).to(nll.dtype)
        return nll

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        """Loss of one batch; its terms are summed for the epoch's ``stage/*`` means.

        Metrics are logged once per epoch (:meth:`_log_epoch`) rather than with one
        ``self.log`` per term and step, whose per-call cost dominates small batches.
        The epoch value is the batch-size-weighted mean over the epoch's batches.
        """
        terms = self.loss_terms(self.scale(batch), sample=stage == "train")
        size = batch["visits"].shape[0]
        sums = self._sums.setdefault(stage, {"_n": 0})
        sums["_n"] += size
        for key, value in terms.items():
            if key != "per_patient":
                sums[key] = sums.get(key, 0.0) + value.detach() * size
        return terms["loss"]

    def _log_epoch(self, stage: str) -> None:
        sums = self._sums.pop(stage, None)
        if not sums or not sums["_n"]:
            return
        n = sums.pop("_n")
        for key, total in sums.items():
            self.log(f"{stage}/{key}", total / n, prog_bar=key == "loss")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self):
        # foreach: one kernel per op over all parameters (fewer, larger CPU calls)
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, foreach=True)
