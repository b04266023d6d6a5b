"""Neighbourhoods of latent trajectories (BJ 2022's similarity batches).

A patient's latent trajectory is solved from its first-visit encoder mean with its
ODE parameters at fixed times; its batch is itself and its k nearest neighbours by
trajectory distance, weighted by a normalised tricube kernel. The functions work on
numpy arrays but :func:`latent_trajectories`, which runs the model. Training
(:mod:`odevae.train.similarity`) and the paper's figures build batches with them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch


def trajectory_distances(trajectories: np.ndarray) -> np.ndarray:
    """Distances (n, n) between trajectories (n, T, d) sampled at T common times.

    Values are centred per time and dimension across patients (as BJ 2022 do; a
    common shift, so distances are unchanged); the distance is
    (1/√T)·Σ_t ‖x_i(t) − x_j(t)‖₂.
    """
    x = np.asarray(trajectories, dtype=float)
    x = x - x.mean(0, keepdims=True)
    total = np.zeros((len(x), len(x)))
    for t in range(x.shape[1]):  # one time at a time: memory n² · d
        total += np.linalg.norm(x[:, None, t] - x[None, :, t], axis=-1)
    return total / np.sqrt(x.shape[1])


def neighbour_batches(distances: np.ndarray, k: int) -> np.ndarray:
    """Per patient its batch (n, k + 1): itself, then its k nearest by ``distances``."""
    n = len(distances)
    if not 1 <= k < n:
        raise ValueError(f"need 1 <= k < n = {n} neighbours, found k = {k}")
    # imported here: training imports this module, most runs never batch by similarity
    from sklearn.neighbors import NearestNeighbors

    search = NearestNeighbors(n_neighbors=k, metric="precomputed").fit(distances)
    nearest = search.kneighbors(return_distance=False)  # excludes the query itself
    return np.column_stack([np.arange(n), nearest])


def tricube(u: np.ndarray) -> np.ndarray:
    """(1 − u³)³ for 0 ≤ u < 1, else 0."""
    u = np.asarray(u, dtype=float)
    return np.where(u < 1, (1 - np.clip(u, 0, 1) ** 3) ** 3, 0.0)


def batch_weights(batch_distances: np.ndarray, bandwidth: float) -> np.ndarray:
    """Normalised tricube weights per row of distances to the batch's own patient.

    Column 0 is the patient itself (distance 0, kernel 1), so every row sums to 1.
    """
    kernel = tricube(np.asarray(batch_distances) / bandwidth)
    return kernel / kernel.sum(1, keepdims=True)


def batch_purity(batches: np.ndarray, groups: np.ndarray) -> float:
    """Share of neighbours in their batch's own group, averaged over batches.

    ``batches`` (n, k + 1) hold the batch's patient first; it is left out.
    """
    groups = np.asarray(groups)
    same = groups[batches[:, 1:]] == groups[batches[:, :1]]
    return float(same.mean(1).mean())


@torch.no_grad()
def latent_trajectories(model, tensors: Mapping, times: Sequence[float]) -> np.ndarray:
    """Latent trajectories (n, T, d) of all patients from μ0 at ``times``.

    ``tensors`` are the padded raw-unit tensors of
    :class:`~odevae.data.batching.CohortDataset`; the ODE starts at the encoder mean
    of visit 0 with the parameter net's parameters.
    """
    first = {
        key: tensors[key][:, :1].to(model.device) for key in ("values", "observed")
    }
    batch = model.scale({**first, "baseline": tensors["baseline"].to(model.device)})
    mu, _ = model.core.encode(batch)
    theta = model.core.prior_params(batch)
    t = torch.as_tensor(times, dtype=mu.dtype, device=mu.device)
    return model.solve(mu[:, 0], theta, t.expand(len(mu), -1)).cpu().numpy()
