"""Each patient's ODE parameters inferred from the visits seen so far.

The parameter net maps baseline covariates to the *prior* of a patient's ODE
parameters, θ ~ N(m(z), diag(exp(prior_logvar))) (``prior_logvar`` trainable). The
history encoder, a GRU run over the patient's visits in time order (input per
visit: scaled measurements with missing entries 0, the observation mask, the time
since the first visit and the gap to the previous visit, on the model's internal
time scale), gives after every visit k the amortised *posterior* given visits
0..k,

    q(θ | z, x_0..x_k) = N(m(z) + Δ_k, diag(exp(prior_logvar + δ_k))),

and the loss adds KL(q ‖ prior). With ``model.history_state`` it also gives a
correction Δu_k (B, d) of the forecast's latent state: a prediction from visits
0..k is the model's forecast plus Δu_k, a random intercept in the latent space
inferred from the visits (a visit's encoding alone carries its noise; the
visits before it tell the patient's level). The GRU is causal, so the posterior
after visit k never reads a later visit; with an empty history the posterior is
the prior, and its mean is the papers' parameter net. The output layers start
at zero, so an untrained encoder is the papers' model too (Rubanova et al. 2019
and GRU-ODE-Bayes infer latent dynamics from the observed history the same way;
mixed models do it with their random slopes and intercepts).

Training conditions on a random cut per patient and step (:func:`random_cuts`):
the posterior from the visits before the cut drives the ODE through all visits,
and the visits after the cut are also predicted from the last history visit
(:func:`forecast_nll`), as the held-out predictor does.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Initial prior sd of each ODE parameter (internal time units): about half the
#: spread of the papers' rates (0.2), trained from there.
PRIOR_SD = 0.1


class HistoryEncoder(nn.Module):
    """GRU over visits → per visit, the posterior's shift of the mean (B, T, nθ) and
    of the log-variance (B, T, nθ) relative to the prior, given visits up to it,
    and with ``state_dim`` > 0 the latent state's correction (B, T, state_dim)."""

    def __init__(
        self, p: int, n_params: int, hidden: int = 16, state_dim: int = 0
    ) -> None:
        super().__init__()
        self.n_params = n_params
        self.gru = nn.GRU(2 * p + 2, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 2 * n_params)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.prior_logvar = nn.Parameter(
            torch.full((n_params,), 2.0 * math.log(PRIOR_SD))
        )
        self.state_head = None
        if state_dim:
            # zero at the start, so an untrained correction is no correction
            self.state_head = nn.Linear(hidden, state_dim)
            nn.init.zeros_(self.state_head.weight)
            nn.init.zeros_(self.state_head.bias)

    def forward(
        self,
        values: torch.Tensor,
        observed: torch.Tensor,
        times: torch.Tensor,
        visits: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``values`` (B, T, p) scaled with 0 where missing, ``observed`` (B, T, p),
        ``times`` (B, T) on the internal scale from the first visit, ``visits``
        (B, T). Padded slots follow a patient's visits, so they never reach a real
        visit's output. The state correction is None without a state head."""
        gap = torch.diff(times, dim=1, prepend=times[:, :1])
        mask = observed & visits[..., None]
        inputs = torch.cat(
            [
                torch.where(mask, values, 0.0),
                mask.to(values.dtype),
                times[..., None],
                gap[..., None],
            ],
            dim=-1,
        )
        inputs = torch.where(visits[..., None], inputs, 0.0)
        hidden, _ = self.gru(inputs)
        shift, logvar_shift = self.head(hidden).split(self.n_params, dim=-1)
        state = None if self.state_head is None else self.state_head(hidden)
        return shift, logvar_shift, state


def posterior(
    prior_mean: torch.Tensor,
    prior_logvar: torch.Tensor,
    shift: torch.Tensor,
    logvar_shift: torch.Tensor,
    n_history: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and log-variance (B, nθ) given each patient's first
    ``n_history`` (B,) visits; 0 visits gives the prior itself."""
    idx = torch.arange(len(n_history), device=n_history.device)
    last = (n_history - 1).clamp(min=0)
    seen = (n_history > 0)[:, None]
    mean = prior_mean + torch.where(seen, shift[idx, last], 0.0)
    logvar = prior_logvar + torch.where(seen, logvar_shift[idx, last], 0.0)
    return mean, logvar


def state_correction(state: torch.Tensor, n_history: torch.Tensor) -> torch.Tensor:
    """The latent state's correction (B, d) given each patient's first
    ``n_history`` (B,) visits, from the per-visit corrections ``state`` (B, T, d);
    0 visits gives none."""
    idx = torch.arange(len(n_history), device=n_history.device)
    last = (n_history - 1).clamp(min=0)
    return torch.where((n_history > 0)[:, None], state[idx, last], 0.0)


def kl_diagonal(
    mean: torch.Tensor,
    logvar: torch.Tensor,
    prior_mean: torch.Tensor,
    prior_logvar: torch.Tensor,
) -> torch.Tensor:
    """KL(N(mean, e^logvar) ‖ N(prior_mean, e^prior_logvar)) per patient (B,)."""
    diff = logvar - prior_logvar
    kl = torch.exp(diff) + (mean - prior_mean) ** 2 * torch.exp(-prior_logvar)
    return 0.5 * (kl - 1.0 - diff).sum(-1)


def random_cuts(visits: torch.Tensor, generator=None) -> torch.Tensor:
    """Per patient, a number of history visits drawn uniformly from 1..n (n its
    visits); n means the whole record is history (nothing left to forecast)."""
    n = visits.sum(1)
    u = torch.rand(n.shape, generator=generator).to(visits.device)
    drawn = torch.floor(u * n.to(u.dtype)).long()
    return 1 + torch.minimum(drawn, (n - 1).clamp(min=0))


def after_cut(visits: torch.Tensor, n_history: torch.Tensor) -> torch.Tensor:
    """(B, T) mask of the real visits at or after each patient's cut."""
    slots = torch.arange(visits.shape[1], device=visits.device)
    return visits & (slots[None, :] >= n_history[:, None])


def before_cut(visits: torch.Tensor, n_history: torch.Tensor) -> torch.Tensor:
    """(B, T) mask of the history visits (before each patient's cut)."""
    slots = torch.arange(visits.shape[1], device=visits.device)
    return visits & (slots[None, :] < n_history[:, None])
