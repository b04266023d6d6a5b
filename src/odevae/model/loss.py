"""Terms of the ODE-VAE loss, masked for missing values and padded visits.

All functions return one value per patient (shape (B,)): sums over that patient's
observed visits and measurements, so the batch loss is their mean.
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_nll(
    x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, observed: torch.Tensor
) -> torch.Tensor:
    """−log N(x | mean, exp(logvar)) summed over observed entries (B, T, p) → (B,)."""
    nll = 0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar))
    return torch.where(observed, nll, torch.zeros_like(nll)).sum(dim=(1, 2))


def kl_standard_normal(
    mean: torch.Tensor, logvar: torch.Tensor, visits: torch.Tensor
) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) ‖ N(0, I)) summed over real visits (B, T, d) → (B,)."""
    kl = 0.5 * (torch.exp(logvar) + mean**2 - 1.0 - logvar).sum(-1)
    return torch.where(visits, kl, torch.zeros_like(kl)).sum(1)


def consistency_penalty(
    mu_ode: torch.Tensor, mu_enc: torch.Tensor, visits: torch.Tensor
) -> torch.Tensor:
    """Σ over later visits j ≥ 1 of ‖ODE solution − encoder mean‖² → (B,)."""
    sq = ((mu_ode - mu_enc) ** 2).sum(-1)
    later = visits.clone()
    later[:, 0] = False
    return torch.where(later, sq, torch.zeros_like(sq)).sum(1)
