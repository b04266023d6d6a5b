"""The ODE-VAE's networks and latent dynamics as a plain ``nn.Module``.

Per patient: the encoder maps every visit to a latent mean μ_j and log-variance;
the parameter net maps baseline covariates to individual ODE parameters (and, with
a history encoder, :mod:`~odevae.model.history` moves them given the visits seen
so far); the decoder maps latent states back to measurements. The losses
(:mod:`~odevae.model.objectives`) and the predictors
(:mod:`~odevae.evaluate.prediction.model`) use the core through its methods.
"""

from __future__ import annotations

import torch
from torch import nn

from odevae.model.dynamics import make_system
from odevae.model.history import HistoryEncoder, posterior, state_correction
from odevae.model.loss import observation_nll
from odevae.model.networks import (
    Decoder,
    Encoder,
    IdentityDecoder,
    IdentityEncoder,
    ParamNet,
)
from odevae.model.solving import solve, solve_from_every_visit
from odevae.model.systems import resolve_solver


def visit_offsets(batch: dict) -> torch.Tensor:
    """Times (B, T) since each patient's first visit (0 at empty slots): the IVP
    starts there (time 0 unless preprocessing counted time from an earlier row
    without measurements)."""
    times = batch["times"] - batch["times"][:, :1]
    return torch.where(batch["visits"], times, 0.0)


def _all_or_none(flags) -> bool | None:
    """True / False where every measurement is / none is 0/1, else None."""
    flags = [bool(f) for f in flags]
    return all(flags) if all(flags) or not any(flags) else None


def _binary_loaded(core, incompatible_keys) -> None:
    """After a state dict is loaded: the likelihoods follow its ``binary`` flags."""
    core._all_binary = _all_or_none(core.binary.tolist())


def identity_autoencoder(setting: str, p: int, binary: list[bool]) -> bool:
    """``model.autoencoder``: identity, or auto for a single continuous score."""
    return setting == "identity" or (setting == "auto" and p == 1 and not any(binary))


def corrects_state(setting: bool | str, identity: bool) -> bool:
    """``model.history_state``: true, or auto where the measurements are the
    latent state (the identity autoencoder): there the last visit's state is the
    raw measurement, noise and all, while a learned encoder already maps a visit
    to a smoothed state (measured: docs/results/history.md)."""
    return identity if setting == "auto" else bool(setting)


class ODEVAECore(nn.Module):
    """Encoder, decoder, parameter net, latent system, optional history encoder
    and the scaling statistics of an ODE-VAE with ``p`` measurements and ``q``
    covariates, built from a filled-in ``model`` section
    (:func:`~odevae.model.settings.model_section`).

    A batch is a dict of tensors: ``times`` (B, T), ``values`` (B, T, p),
    ``observed`` (B, T, p) bool, ``visits`` (B, T) bool and ``baseline`` (B, q).
    Times are in the data's unit; the ODE is solved in t / ``time_scale``, which
    keeps every unit from seconds to years on the same internal scale. ``binary``
    flags the measurements with a Bernoulli likelihood (decoder mean = logit).
    ``history`` False leaves out the history encoder whatever ``model`` says (the
    VAE-only loss has no dynamics to condition).
    """

    def __init__(
        self,
        p: int,
        q: int,
        model: dict,
        binary: list[bool] | None = None,
        time_scale: float = 1.0,
        history: bool = True,
    ) -> None:
        super().__init__()
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, found {time_scale}")
        self.time_scale = float(time_scale)
        self.system_name = model["system"]
        latent_dim = model["latent_dim"]
        self.system = make_system(
            model["system"], latent_dim, model["fixed_params"], model["neural"]
        )
        self.solver = resolve_solver(model["solver"], model["system"])
        self.solver_options = {
            "method": self.solver,
            "rtol": model["rtol"],
            "atol": model["atol"],
            "adjoint": model["adjoint"],
        }
        bound = model["param_bound"]
        bound = self.system.default_bound if bound == "auto" else bound
        width = model["hidden_width"]
        flags = [False] * p if binary is None else list(binary)
        if len(flags) != p:
            raise ValueError(f"binary flags for {len(flags)} measurements, not {p}")
        identity = identity_autoencoder(model["autoencoder"], p, flags)
        if identity:
            if latent_dim != p or self.system.positive_states or any(flags):
                raise ValueError(
                    "model.autoencoder identity needs continuous measurements, "
                    f"model.latent_dim equal to their number ({p}, not "
                    f"{latent_dim}) and a system whose states may be negative"
                )
            self.encoder, self.decoder = IdentityEncoder(p), IdentityDecoder(p)
        else:
            self.encoder = Encoder(
                p, latent_dim, positive=self.system.positive_states, hidden=width
            )
            self.decoder = Decoder(latent_dim, p, hidden=width)
        self.param_net = ParamNet(
            q,
            self.system.n_params,
            bound,
            scale=model["param_scale"],
            bottleneck=model["bottleneck"],
            small_init=bound == "tanh1",
        )
        self.history_encoder = (
            HistoryEncoder(
                p,
                self.system.n_params,
                model["history_hidden"],
                latent_dim if corrects_state(model["history_state"], identity) else 0,
            )
            if model["history"] == "gru" and history
            else None
        )
        # Scaling statistics (identity unless set from the training folds).
        self.register_buffer("x_mean", torch.zeros(p))
        self.register_buffer("x_std", torch.ones(p))
        self.register_buffer("z_mean", torch.zeros(q))
        self.register_buffer("z_std", torch.ones(q))
        self.register_buffer("z_fill", torch.zeros(q))  # imputes missing covariates
        self.register_buffer("binary", torch.tensor(flags, dtype=torch.bool))
        self._all_binary = _all_or_none(flags)
        self.register_load_state_dict_post_hook(_binary_loaded)

    @property
    def likelihoods(self) -> torch.Tensor | bool:
        """The ``binary`` flags as :func:`~odevae.model.loss.observation_nll` takes
        them: False or True where every measurement has the same likelihood (so the
        other is never computed), else the (p,) flags on the model's device."""
        return self.binary if self._all_binary is None else self._all_binary

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
        values = torch.where(batch["observed"], values, 0.0)
        baseline = batch["baseline"]
        baseline = torch.where(torch.isnan(baseline), self.z_fill, baseline)
        baseline = (baseline - self.z_mean) / self.z_std
        return {**batch, "values": values, "baseline": baseline}

    def encode(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder means and log-variances (B, T, d) of every visit slot."""
        return self.encoder(batch["values"])

    def prior_params(self, batch: dict) -> torch.Tensor:
        """The parameter net's ODE parameters (B, nθ) from the baseline covariates."""
        return self.param_net(batch["baseline"])

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder mean and log-variance of latent states, in model units."""
        return self.decoder(z)

    def visit_nll(
        self, z: torch.Tensor, values: torch.Tensor, observed: torch.Tensor
    ) -> torch.Tensor:
        """NLL per visit (B, T) of the scaled ``values`` at their ``observed``
        entries (B, T, p), decoded from the latent states ``z`` (B, T, d)."""
        x_mean, x_logvar = self.decode(z)
        return observation_nll(
            values, x_mean, x_logvar, observed, self.likelihoods, per_visit=True
        )

    def predictive(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent states → decoder mean and sd in modelling (unscaled) units; for a
        Bernoulli variable the probability of a 1 and its sd √(p(1 − p))."""
        mean, logvar = self.decoder(z)
        scale = self.x_std
        gauss_mean = mean * scale + self.x_mean
        gauss_sd = torch.exp(0.5 * logvar) * scale
        prob = torch.sigmoid(mean)  # Bernoulli variables: the probability of a 1
        mean = torch.where(self.binary, prob, gauss_mean)
        sd = torch.where(self.binary, torch.sqrt(prob * (1 - prob)), gauss_sd)
        return mean, sd

    def forward(
        self, batch: dict, n_history: torch.Tensor | None = None, sample: bool = False
    ) -> dict:
        """Encoder means/log-variances, ODE parameters and ODE solutions per visit.

        With a history encoder the parameters are the posterior's given each
        patient's first ``n_history`` (B,) visits (default: all of them): its mean,
        or a draw with ``sample``; ``theta_prior`` is the parameter net's mean;
        ``state_shift`` (B, d), with ``model.history_state``, the correction of the
        forecast's latent state given those visits.
        """
        mu_enc, logvar_enc = self.encoder(batch["values"])
        prior = self.param_net(batch["baseline"])
        times = visit_offsets(batch)
        out = {"mu_enc": mu_enc, "logvar_enc": logvar_enc, "theta_prior": prior}
        theta = prior
        if self.history_encoder is not None:
            if n_history is None:
                n_history = batch["visits"].sum(1)
            mean, logvar, state = self.infer(batch, n_history, prior, times)
            theta = mean
            if state is not None:
                out["state_shift"] = state
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
        mean, logvar, _ = self.infer(batch, n_history, prior, times)
        return mean, logvar

    def infer(
        self,
        batch: dict,
        n_history: torch.Tensor,
        prior: torch.Tensor | None = None,
        times: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`posterior`'s mean and log-variance, and the correction (B, d) of
        the forecast's latent state given the same visits (None without
        ``model.history_state``; 0 with ``n_history`` 0)."""
        if prior is None:
            prior = self.param_net(batch["baseline"])
        encoder = self.history_encoder
        if encoder is None:
            return prior, torch.full_like(prior, float("-inf")), None
        if times is None:
            times = visit_offsets(batch)
        shift, logvar_shift, state = encoder(
            batch["values"], batch["observed"], times / self.time_scale, batch["visits"]
        )
        n_history = n_history.long()
        mean, logvar = posterior(
            prior, encoder.prior_logvar, shift, logvar_shift, n_history
        )
        if state is not None:
            state = state_correction(state, n_history)
        return mean, logvar, state

    def param_prior_logvar(self) -> torch.Tensor:
        """The history encoder's log-variance of the parameters' prior."""
        return self.history_encoder.prior_logvar

    def solve(self, u0: torch.Tensor, theta: torch.Tensor, t: torch.Tensor):
        """Latent trajectories from u0 (B, d) after the offsets t (B, T), in data
        time units (solved on the internal scale t / :attr:`time_scale`)."""
        t = t / self.time_scale
        return solve(self.system, u0, theta, t, **self.solver_options)

    def solve_from_every_visit(
        self, mu: torch.Tensor, theta: torch.Tensor, times: torch.Tensor
    ) -> torch.Tensor:
        """Local solutions (B, T, T, d) from every visit's state ``mu`` (B, T, d)
        at the absolute ``times`` (B, T, data units) to every visit."""
        return solve_from_every_visit(
            self.system, mu, theta, times / self.time_scale, **self.solver_options
        )

    def rates_per_data_unit(self, theta: torch.Tensor) -> torch.Tensor:
        """Learned parameters as rates per data time unit: every parameter of the
        linear and Lotka-Volterra systems is a rate (1 / time), so it is divided by
        :attr:`time_scale`; the neural system's conditioning values are no rates
        and stay as they are."""
        if self.system_name == "neural":
            return theta
        return theta / self.time_scale

    def decoder_l2(self) -> torch.Tensor:
        """Sum of squares of the decoder's parameters (none for the identity)."""
        if isinstance(self.decoder, IdentityDecoder):
            return self.x_mean.new_zeros(())
        return sum((w**2).sum() for w in self.decoder.parameters())
