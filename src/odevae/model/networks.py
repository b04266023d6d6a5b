"""Plain ``nn.Module`` building blocks of the ODE-VAE (the workshop's architecture).

Layers use Glorot-uniform weights and zero biases, as Flux's ``Dense`` does in the
original code; "scale/shift" layers are trainable elementwise affine maps
(Flux's ``Diagonal``) initialised to the identity.
"""

from __future__ import annotations

import torch
from torch import nn


def dense(n_in: int, n_out: int) -> nn.Linear:
    """A linear layer with Glorot-uniform weights and zero bias."""
    layer = nn.Linear(n_in, n_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class ScaleShift(nn.Module):
    """Trainable elementwise ``x * scale + shift``, initialised to the identity."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(n))
        self.shift = nn.Parameter(torch.zeros(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class Encoder(nn.Module):
    """Per-visit encoder: ``Dense(p,h, tanh+1)`` → mean and log-variance heads.

    The log-variance head is ``Dense(h,d, -relu)`` followed by a trainable scale/shift.
    With ``positive`` the mean head ends in a softplus, for latent systems whose
    states live in the positive orthant (Lotka-Volterra populations). The hidden
    width ``h`` is ``p`` (the papers) unless ``hidden`` is given.
    """

    def __init__(
        self, p: int, latent_dim: int, positive: bool = False, hidden: int = 0
    ) -> None:
        super().__init__()
        width = hidden or p
        self.positive = positive
        self.hidden = dense(p, width)
        self.mean = dense(width, latent_dim)
        self.logvar = dense(width, latent_dim)
        self.logvar_affine = ScaleShift(latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(self.hidden(x)) + 1.0
        logvar = self.logvar_affine(-torch.relu(self.logvar(h)))
        mean = self.mean(h)
        return (nn.functional.softplus(mean) if self.positive else mean), logvar


class Decoder(nn.Module):
    """Decoder ``Dense(d,h, tanh)`` → mean and log-variance heads ``Dense(h,p)``;
    the hidden width ``h`` is ``p`` (the papers) unless ``hidden`` is given."""

    def __init__(self, latent_dim: int, p: int, hidden: int = 0) -> None:
        super().__init__()
        width = hidden or p
        self.hidden = dense(latent_dim, width)
        self.mean = dense(width, p)
        self.logvar = dense(width, p)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(self.hidden(z))
        return self.mean(h), self.logvar(h)


class IdentityEncoder(nn.Module):
    """The measurements themselves as the latent state (latent dimension p): the
    mean is the (scaled) visit, the log-variance a trainable constant per
    dimension. For single-score cohorts, where a learned autoencoder has nothing
    to compress and its roundtrip only adds error."""

    def __init__(self, p: int) -> None:
        super().__init__()
        self.logvar = nn.Parameter(torch.zeros(p))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, self.logvar.expand_as(x)


class IdentityDecoder(nn.Module):
    """Latent state → measurements unchanged, with a trainable log-variance per
    measurement (the measurement noise)."""

    def __init__(self, p: int) -> None:
        super().__init__()
        self.logvar = nn.Parameter(torch.zeros(p))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z, self.logvar.expand_as(z)


BOUNDS = {
    # sigmoid(x) - 0.5 ∈ (-0.5, 0.5): linear systems in the workshop and BJ 2022
    # (divided by ``param_scale``: the follow-up paper's registry run uses 2).
    "sigmoid": lambda x: torch.sigmoid(x) - 0.5,
    # tanh(x) + 1 ∈ (0, 2): Lotka-Volterra rates in BJ 2022.
    "tanh1": lambda x: torch.tanh(x) + 1.0,
    # tanh(x) ∈ (-1, 1).
    "tanh": torch.tanh,
}


class ParamNet(nn.Module):
    """Baseline covariates → individual ODE parameters.

    ``Dense(q,q, tanh)`` → ``Dense(q,nθ)`` → bounded activation / ``scale`` →
    trainable scale/shift. With ``bottleneck`` > 0 the output layer is replaced by
    ``Dense(q,nθ, tanh)`` → ``Dense(nθ,bottleneck, tanh)`` → ``Dense(bottleneck,nθ)``
    (the follow-up paper's option). ``small_init`` draws the output layer's weights
    from (U − 0.5)·sqrt(0.01 / (fan_in + fan_out)), as BJ 2022 does for
    Lotka-Volterra, so the rates start near the bound's centre.
    """

    def __init__(
        self,
        q: int,
        n_params: int,
        bound: str = "sigmoid",
        scale: float = 1.0,
        bottleneck: int = 0,
        small_init: bool = False,
    ) -> None:
        super().__init__()
        if bound not in BOUNDS:
            raise ValueError(f"unknown bound {bound!r}, expected one of {list(BOUNDS)}")
        self.hidden = dense(q, q)
        if bottleneck:
            self.out = nn.Sequential(
                dense(q, n_params),
                nn.Tanh(),
                dense(n_params, bottleneck),
                nn.Tanh(),
                dense(bottleneck, n_params),
            )
        else:
            self.out = dense(q, n_params)
        if small_init:
            last = self.out[-1] if bottleneck else self.out
            with torch.no_grad():
                fan = last.weight.shape[0] + last.weight.shape[1]
                last.weight.copy_(
                    (torch.rand_like(last.weight) - 0.5) * (0.01 / fan) ** 0.5
                )
        self.bound = BOUNDS[bound]
        self.scale = scale
        self.affine = ScaleShift(n_params)

    def forward(self, baseline: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.hidden(baseline))
        return self.affine(self.bound(self.out(h)) / self.scale)

    def weight_l2(self) -> torch.Tensor:
        """Squared L2 norm of the dense layers' weight matrices (no biases, no
        output scale/shift): zero when the parameters ignore the covariates."""
        return sum(
            (m.weight**2).sum() for m in self.modules() if isinstance(m, nn.Linear)
        )

    def covariate_group_norm(self) -> torch.Tensor:
        """Group lasso over the covariates: the sum, over baseline covariates, of the
        L2 norm of each covariate's weights into the first layer. Zero for a
        covariate the parameters ignore; penalising it selects covariates. Only the
        first layer is penalised: combine with ``loss.param_l2`` if the next layer's
        growth must be bounded too (measured without, in the README)."""
        return self.hidden.weight.norm(dim=0).sum()
