"""Terms of the ODE-VAE loss, masked for missing values and padded visits.

All functions return one value per patient (shape (B,)): sums over that patient's
observed visits and measurements, so the batch loss is their mean.
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_nll(
    x: torch.Tensor,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    observed: torch.Tensor,
    per_visit: bool = False,
) -> torch.Tensor:
    """−log N(x | mean, exp(logvar)) summed over observed entries (B, T, p) → (B,).

    ``per_visit`` keeps the visit axis: (B, T).
    """
    nll = 0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar))
    nll = torch.where(observed, nll, 0.0).sum(-1)
    return nll if per_visit else nll.sum(1)


def observation_nll(
    x: torch.Tensor,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    observed: torch.Tensor,
    binary: torch.Tensor | bool,
    per_visit: bool = False,
) -> torch.Tensor:
    """Per-variable likelihoods: Gaussian −log N(x | mean, exp(logvar)), and for the
    0/1 variables flagged in ``binary`` (p,) Bernoulli with logit ``mean``
    (``logvar`` unused there). Summed over observed entries like
    :func:`gaussian_nll`. ``binary`` as the Python bool False (no 0/1 variable) or
    True (all of them) computes only the one likelihood: the same values as the
    all-False or all-True flags, without the other likelihood's work on every
    entry (and where all are 0/1, no gradient at all for ``logvar``)."""
    if isinstance(binary, bool) and not binary:
        return gaussian_nll(x, mean, logvar, observed, per_visit)
    bern = torch.nn.functional.binary_cross_entropy_with_logits(
        mean, x.clamp(0.0, 1.0), reduction="none"
    )
    if isinstance(binary, bool):
        nll = bern
    else:
        gauss = 0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar))
        nll = torch.where(binary, bern, gauss)
    nll = torch.where(observed, nll, 0.0).sum(-1)
    return nll if per_visit else nll.sum(1)


def kl_standard_normal(
    mean: torch.Tensor,
    logvar: torch.Tensor,
    visits: torch.Tensor,
    per_visit: bool = False,
    free_bits: float = 0.0,
) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) ‖ N(0, I)) summed over real visits (B, T, d) → (B,).

    ``per_visit`` keeps the visit axis: (B, T). ``free_bits`` > 0 floors each latent
    dimension's KL at that many nats per visit (Kingma et al. 2016): below the
    floor the term has no gradient, so a dimension is not pushed onto the prior
    (posterior collapse) for the sake of a smaller KL.
    """
    kl = 0.5 * (torch.exp(logvar) + mean**2 - 1.0 - logvar)
    if free_bits > 0:
        kl = kl.clamp(min=free_bits)
    kl = kl.sum(-1)
    kl = torch.where(visits, kl, 0.0)
    return kl if per_visit else kl.sum(1)


def consistency_penalty(
    mu_ode: torch.Tensor, mu_enc: torch.Tensor, visits: torch.Tensor
) -> torch.Tensor:
    """Σ over later visits j ≥ 1 of ‖ODE solution − encoder mean‖² → (B,)."""
    sq = ((mu_ode - mu_enc) ** 2).sum(-1)
    later = visits.clone()
    later[:, 0] = False
    return torch.where(later, sq, 0.0).sum(1)


# --- The follow-up paper's statistical (multi-start) loss ---------------------------

#: Sample variances are clamped to this range before they are inverted or logged.
VAR_CLAMP = (1e-6, 1e3)


def _masked_var(x: torch.Tensor, mask: torch.Tensor, dim: int):
    """Sample variance (n − 1) of x over ``dim`` where ``mask``; and the count.

    ``mask`` broadcasts against x without its last (latent) dimension. Entries with
    fewer than two values get variance 0 (callers mask them out).
    """
    m = mask[..., None].to(x.dtype)
    count = m.sum(dim)
    mean = (x * m).sum(dim) / count.clamp(min=1.0)
    sq = ((x - mean.unsqueeze(dim)) ** 2 * m).sum(dim)
    return sq / (count - 1.0).clamp(min=1.0), count[..., 0]


def _reverse_cumsum(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Σ over indices ≥ i along ``dim`` at every i."""
    return torch.flip(torch.cumsum(torch.flip(x, (dim,)), dim), (dim,))


def _anchored_var(s0: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """Sample variance (n − 1) from a set's count ``s0``, Σ y and Σ y² of its values
    y = x − a, where the anchor a is a member of the set: then Σ y² exceeds the
    centred sum of squares by n·(mean − a)², which is at most n times that sum, so
    the difference loses at most a factor of about n of float32's precision (sums
    from a fixed origin can lose all of it).
    Sets of fewer than two get 0."""
    return (s2 - s1**2 / s0.clamp(min=1.0)) / (s0 - 1.0).clamp(min=1.0)


def start_sets(visits: torch.Tensor, skip_own: bool) -> torch.Tensor:
    """K[b, k, j]: start k is used for target j (both real; k ≠ j if ``skip_own``)."""
    K = visits[:, :, None] & visits[:, None, :]
    if skip_own:
        K = K & ~torch.eye(visits.shape[1], dtype=torch.bool, device=visits.device)
    return K


def combine_local_solutions(
    local: torch.Tensor, visits: torch.Tensor, weighting: bool, skip_own: bool
) -> torch.Tensor:
    """Combined means μ̄_j from local solutions ``local`` (B, T_k, T_j, d) → (B, T, d).

    Weighted: w_kj = 1 / Var̂{μ̃_{l→j} : l between k and j}, per latent dimension,
    over starts k ∈ K_j; unweighted: the mean over K_j. A target without starts (a
    one-visit patient) keeps its own state μ_j = local[j, j].
    """
    if weighting and not skip_own:
        raise ValueError("inverse-variance weighting requires skip_own (skip t0)")
    K = start_sets(visits, skip_own)  # (B, k, j)
    if weighting:
        # The set of start k for target j is the real visits l from k to j, one
        # contiguous range that always holds j: sums over it are cumulative sums
        # anchored at j, taken outward over l (O(T²) per patient, not O(T³)).
        own = torch.diagonal(local, dim1=1, dim2=2).permute(0, 2, 1)  # local[b, j, j]
        y = local - own[:, None]  # y[b, l, j] = local[b, l, j] − local[b, j, j]
        slots = torch.arange(local.shape[1], device=local.device)
        up_to_j = slots[:, None] <= slots[None, :]  # (l, j): l ≤ j
        sums = []
        for side, cumsum in (
            (up_to_j, _reverse_cumsum),  # k ≤ j: Σ over l = k..j
            (up_to_j.T, torch.cumsum),  # k ≥ j: Σ over l = j..k
        ):
            m = (visits[:, :, None] & side)[..., None].to(local.dtype)
            sums.append([cumsum(v, 1) for v in (m, m * y, m * y * y)])
        below = up_to_j[None, :, :, None]  # indexed (k, j) now
        var = _anchored_var(
            *(torch.where(below, lo, hi) for lo, hi in zip(*sums, strict=True))
        )
        w = 1.0 / var.clamp(*VAR_CLAMP)
    else:
        w = torch.ones_like(local)
    w = torch.where(K[..., None], w, 0.0)
    total = w.sum(1)
    combined = (w * local).sum(1) / total.clamp(min=1e-12)
    own = torch.diagonal(local, dim1=1, dim2=2).permute(0, 2, 1)  # local[b, j, j]
    return torch.where(total > 0, combined, own)


def multistart_mu_penalty(
    local: torch.Tensor, mu_enc: torch.Tensor, visits: torch.Tensor
) -> torch.Tensor:
    """(1/T²) Σ_k Σ_{j≠k} ‖μ̃_{k→j} − μ_j‖₂ per patient (T its number of visits)."""
    dist = torch.linalg.vector_norm(local - mu_enc[:, None], dim=-1)  # (B, k, j)
    pairs = start_sets(visits, skip_own=True)
    T = visits.sum(1).to(local.dtype)
    return torch.where(pairs, dist, 0.0).sum((1, 2)) / T**2


def variance_penalty(
    local: torch.Tensor,
    mu_enc: torch.Tensor,
    visits: torch.Tensor,
    kind: str = "log_diff",
    offset: float = 0.1,
    skip_own: bool = True,
) -> torch.Tensor:
    """Spread of the local solutions relative to the spread of the encoder means.

    Per patient, with V_jd = Var̂_{k∈K_j} μ̃_{k→j,d} (targets with ≥ 2 starts) and
    E_d = Var̂_j μ_{j,d} (patients with ≥ 2 visits), both clamped:

    * ``log_diff``: Σ_d [mean_j log(V_jd + off) − log(E_d + off)]
    * ``ratio_sum``: Σ_d mean_j (V_jd + off) / (E_d + off)
    * ``sum_ratio``: Σ_d (mean_j V_jd + off) / Σ_d (E_d + off)

    Patients without any term get 0.
    """
    K = start_sets(visits, skip_own)
    V, n_starts = _masked_var(local, K, dim=1)  # (B, j, d), (B, j)
    V = V.clamp(*VAR_CLAMP)
    E, n_visits = _masked_var(mu_enc, visits, dim=1)  # (B, d), (B,)
    E = E.clamp(*VAR_CLAMP)
    targets = (n_starts >= 2) & visits
    n_t = targets.sum(1, keepdim=True).clamp(min=1).to(local.dtype)

    def mean_j(x):  # (B, j, d) → (B, d)
        return torch.where(targets[..., None], x, 0.0).sum(1) / n_t

    if kind == "log_diff":
        pen = (mean_j(torch.log(V + offset)) - torch.log(E + offset)).sum(-1)
    elif kind == "ratio_sum":
        pen = mean_j((V + offset) / (E[:, None] + offset)).sum(-1)
    elif kind == "sum_ratio":
        pen = (mean_j(V) + offset).sum(-1) / (E + offset).sum(-1)
    else:
        raise ValueError(
            f"unknown variance penalty {kind!r}, expected log_diff, ratio_sum or "
            "sum_ratio"
        )
    valid = targets.any(1) & (n_visits >= 2)
    return torch.where(valid, pen, 0.0)


def combine_history(
    local: torch.Tensor, history: torch.Tensor, weighting: bool
) -> torch.Tensor:
    """Combine local solutions (N, T, d) from the history starts (N, T) → (N, d).

    Weighted: w_k = 1 / Var̂{μ̃_{l→j} : l a history visit between k and the last
    one}, per latent dimension, as in the follow-up paper but without the target's
    own encoding (which a prediction may not read); the last start, alone in its
    set, shares the variance of the last two. Unweighted, or with one start: the
    mean over starts.
    """
    h = history.sum(1, keepdim=True)  # (N, 1)
    rank = torch.cumsum(history.to(torch.int64), 1) - 1  # index among history
    weights = history[..., None].to(local.dtype).expand_as(local).clone()
    if weighting:
        # start k's set is the history visits from k to the last one (a suffix):
        # suffix sums anchored at the last history visit, which every set holds
        last = history & (rank == h - 1)  # (N, T)
        anchor = (local * last[..., None].to(local.dtype)).sum(1, keepdim=True)
        m = history[..., None].to(local.dtype)
        y = m * (local - anchor)
        var = _anchored_var(*(_reverse_cumsum(v, 1) for v in (m, y, y * y)))
        # the last start's set is that of the one before it: the last two visits
        second = (history & (rank == h - 2))[..., None].to(local.dtype)
        var = torch.where(last[..., None], (var * second).sum(1, keepdim=True), var)
        w = 1.0 / var.clamp(*VAR_CLAMP)
        several = (h >= 2)[..., None]
        weights = torch.where(several & history[..., None], w, weights)
    total = weights.sum(1)
    return (weights * local).sum(1) / total.clamp(min=1e-12)
