"""The ODE-VAE as a LightningModule (initial-value loss of the workshop / BJ 2022).

Per patient: the encoder maps every visit to a latent mean and log-variance; the
parameter net maps baseline covariates to individual ODE parameters; the latent IVP
starts at the encoder mean of the first visit. Loss per patient:

    −Σ_j [log p(x_j | z_j) − kl_weight · KL_j]
        + consistency_weight · Σ_{j≥1} ‖μ̃_j − μ_j‖²

with z_j ~ N(μ̃_j, σ_j²) (μ̃_0 = μ_0), averaged over the batch's patients, plus
decoder_l2 · ‖decoder parameters‖².
"""

from __future__ import annotations

import lightning as L
import torch

from odevae.model.dynamics import make_system, solve
from odevae.model.loss import consistency_penalty, gaussian_nll, kl_standard_normal
from odevae.model.networks import Decoder, Encoder, ParamNet


class ODEVAE(L.LightningModule):
    """VAE with individual latent ODE dynamics, trained on batches of patients.

    A batch is a dict of tensors: ``times`` (B, T), ``values`` (B, T, p), ``observed``
    (B, T, p) bool, ``visits`` (B, T) bool and ``baseline`` (B, q); visit 0 of each
    patient is at time 0. Inputs are in standardised units when the module holds
    scaling statistics (see :meth:`set_scaling`).
    """

    def __init__(
        self,
        p: int,
        q: int,
        latent_dim: int = 2,
        system: str = "linear_diagonal",
        param_bound: str = "sigmoid",
        solver: str = "closed_form",
        rtol: float = 1e-6,
        atol: float = 1e-7,
        adjoint: bool = False,
        kl_weight: float = 0.5,
        decoder_l2: float = 0.01,
        consistency_weight: float = 1.0,
        lr: float = 5e-4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.system = make_system(system, latent_dim)
        self.encoder = Encoder(p, latent_dim)
        self.decoder = Decoder(latent_dim, p)
        self.param_net = ParamNet(q, self.system.n_params, param_bound)
        # Scaling statistics (identity unless set from the training folds).
        self.register_buffer("x_mean", torch.zeros(p))
        self.register_buffer("x_std", torch.ones(p))
        self.register_buffer("z_mean", torch.zeros(q))
        self.register_buffer("z_std", torch.ones(q))
        self.register_buffer("z_fill", torch.zeros(q))  # imputes missing covariates

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

    def forward(self, batch: dict) -> dict:
        """Encoder means/log-variances, ODE parameters and ODE solutions per visit."""
        mu_enc, logvar_enc = self.encoder(batch["values"])
        theta = self.param_net(batch["baseline"])
        mu_ode = self.solve(mu_enc[:, 0], theta, batch["times"])
        return {
            "mu_enc": mu_enc,
            "logvar_enc": logvar_enc,
            "theta": theta,
            "mu_ode": mu_ode,
        }

    def solve(self, u0: torch.Tensor, theta: torch.Tensor, t: torch.Tensor):
        """Latent trajectories from u0 (B, d) at the times t (B, T)."""
        hp = self.hparams
        return solve(self.system, u0, theta, t, hp.solver, hp.rtol, hp.atol, hp.adjoint)

    def loss_terms(self, batch: dict, sample: bool) -> dict:
        """Per-patient loss terms and the batch loss (``loss``)."""
        hp = self.hparams
        out = self(batch)
        visits = batch["visits"]
        first = torch.zeros_like(visits)
        first[:, 0] = True
        mu = torch.where(first[..., None], out["mu_enc"], out["mu_ode"])
        logvar = out["logvar_enc"]
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        x_mean, x_logvar = self.decoder(z)
        observed = batch["observed"] & visits[..., None]
        nll = gaussian_nll(batch["values"], x_mean, x_logvar, observed)
        kl = kl_standard_normal(mu, logvar, visits)
        consistency = consistency_penalty(out["mu_ode"], out["mu_enc"], visits)
        l2 = sum((w**2).sum() for w in self.decoder.parameters())
        per_patient = nll + hp.kl_weight * kl + hp.consistency_weight * consistency
        loss = per_patient.mean() + hp.decoder_l2 * l2
        return {
            "loss": loss,
            "nll": nll.mean(),
            "kl": kl.mean(),
            "consistency": consistency.mean(),
        }

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        terms = self.loss_terms(self.scale(batch), sample=stage == "train")
        size = batch["visits"].shape[0]
        for key, value in terms.items():
            self.log(
                f"{stage}/{key}",
                value,
                on_step=False,
                on_epoch=True,
                prog_bar=key == "loss",
                batch_size=size,
            )
        return terms["loss"]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
