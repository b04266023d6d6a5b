"""Figures in the style of the papers: local ODE solutions between visits (arXiv
2311.16286, Fig. 3), similarity batches (BJ 2022, Fig. 6) and a VAE-only model's
latent means beside the ODE-VAE's trajectories (workshop)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from odevae.data.cohort import Cohort
from odevae.evaluate.recovery import latent_columns

COLUMNS = ("patient_id", "kind", "visit", "time", "dim", "mean", "low", "high")


def local_solution_table(model, cohort: Cohort, n_grid: int = 20) -> pd.DataFrame:
    """Local ODE solutions from each visit k to visit k + 1, and the encoder means.

    Rows of ``kind == "solution"``: the solution from the encoder mean μ_k at t_k on
    ``n_grid`` times up to t_{k+1} (``mean``) and the elementwise min/max of the
    solutions from μ_k ∓ σ_k, σ_k = exp(logvar_k / 2) (``low``, ``high``). Rows of
    ``kind == "encoder"``: μ ± σ at every visit. ``visit`` is k; ``dim`` counts
    from 1. Columns :data:`COLUMNS`.
    """
    import torch  # the model's functions only: plotting jobs load no torch

    from odevae.data.batching import CohortDataset

    model.eval()
    with torch.no_grad():
        tensors = CohortDataset(cohort).tensors
        batch = model.scale({k: v.to(model.device) for k, v in tensors.items()})
        mu, logvar = model.core.encode(batch)
        theta = model.core.prior_params(batch)
        sd = torch.exp(0.5 * logvar)
        d = mu.shape[-1]
        rows, slots = np.nonzero(cohort.visits[:, 1:])  # segments k → k + 1
        start, end = cohort.times[rows, slots], cohort.times[rows, slots + 1]
        share = np.linspace(0.0, 1.0, n_grid)
        times = start[:, None] * (1 - share) + end[:, None] * share  # exact ends
        offsets = torch.as_tensor(times - start[:, None], dtype=mu.dtype)
        r, s = torch.as_tensor(rows), torch.as_tensor(slots)
        u0 = mu[r, s]
        starts = torch.cat([u0, u0 - sd[r, s], u0 + sd[r, s]])
        paths = model.solve(
            starts, theta[r].repeat(3, 1), offsets.to(mu.device).repeat(3, 1)
        )
        mean, a, b = paths.cpu().numpy().astype(float).reshape(3, len(rows), n_grid, d)
        ids = cohort.patient_ids
        low, high = np.minimum(a, b), np.maximum(a, b)
        solution = _long(ids[rows], "solution", slots, times, mean, low, high)
        vr, vs = np.nonzero(cohort.visits)
        m, half = (x[vr, vs].cpu().numpy().astype(float)[:, None] for x in (mu, sd))
        at = cohort.times[vr, vs][:, None]
        points = _long(ids[vr], "encoder", vs, at, m, m - half, m + half)
        return pd.concat([solution, points], ignore_index=True)


def _long(ids, kind, visits, times, mean, low, high) -> pd.DataFrame:
    """Rows (N, M) of times and (N, M, d) states → the long :data:`COLUMNS` table."""
    n, m, d = mean.shape
    return pd.DataFrame(
        {
            "patient_id": np.repeat(ids, m * d),
            "kind": kind,
            "visit": np.repeat(visits, m * d),
            "time": np.repeat(times.ravel(), d),
            "dim": np.tile(np.arange(1, d + 1), n * m),
            "mean": mean.ravel(),
            "low": low.ravel(),
            "high": high.ravel(),
        },
        columns=list(COLUMNS),
    )


def pick_patients(
    cohort: Cohort, candidates, n: int, seed: int, min_visits: int = 3
) -> list[str]:
    """Up to ``n`` of ``candidates`` with at least ``min_visits`` visits, drawn by a
    numpy Generator seeded with ``seed`` from the sorted ids; returned sorted."""
    counts = cohort.visits.sum(1)[cohort.index_of(candidates)]
    eligible = np.sort(np.asarray(candidates, dtype=str)[counts >= min_visits])
    rng = np.random.default_rng(seed)
    chosen = rng.choice(eligible, size=min(n, len(eligible)), replace=False)
    return sorted(chosen.tolist())


def plot_local_solutions(
    table: pd.DataFrame, unit: str, patients: Sequence[str] | None = None
) -> plt.Figure:
    """One panel per patient (default: the table's first 24, 4 per row): local
    solutions as lines with ±σ ribbons, encoder means ± σ as points, one colour per
    latent dimension."""
    if patients is None:
        patients = list(dict.fromkeys(table["patient_id"]))[:24]
    dims = sorted(table["dim"].unique())
    palette = dict(zip(dims, sns.color_palette("deep", len(dims)), strict=True))
    nrows = max(-(-len(patients) // 4), 1)
    fig, axes = plt.subplots(nrows, 4, figsize=(12, 2.2 * nrows), squeeze=False)
    for ax in axes.ravel()[len(patients) :]:
        fig.delaxes(ax)
    for ax, pid in zip(axes.ravel(), patients, strict=False):
        own = table[table["patient_id"] == pid]
        solutions = own[own["kind"] == "solution"]
        for (dim, _), part in solutions.groupby(["dim", "visit"], sort=True):
            t, colour = part["time"], palette[dim]
            ax.plot(t, part["mean"], color=colour, lw=1.2)
            ax.fill_between(t, part["low"], part["high"], color=colour, alpha=0.2)
        for dim, part in own[own["kind"] == "encoder"].groupby("dim", sort=True):
            err = [part["mean"] - part["low"], part["high"] - part["mean"]]
            ax.errorbar(
                part["time"], part["mean"], err, fmt="o", ms=3, color=palette[dim]
            )
        ax.set_title(f"patient {pid}", fontsize=8)
    handles = [Line2D([], [], color=palette[d], lw=1.2, label=f"dim {d}") for d in dims]
    handles += [
        Line2D([], [], color="0.3", lw=1.2, label="local solution (±σ start)"),
        Line2D([], [], color="0.3", marker="o", ls="", label="encoder mean ± σ"),
    ]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8)
    fig.supxlabel(f"time since time 0 ({unit})")
    fig.supylabel("latent state")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return fig


@dataclass(frozen=True)
class NeighbourBatches:
    """Training patients' latent trajectories (n, T, d), distances (n, n), batches
    (n, k + 1: the patient, then its k nearest) and batch weights (n, k + 1)."""

    patient_ids: np.ndarray
    trajectories: np.ndarray
    distances: np.ndarray
    batches: np.ndarray
    weights: np.ndarray


def neighbour_batches_of(
    model, cohort: Cohort, times: Sequence[float], neighbours: int, bandwidth: float
) -> NeighbourBatches:
    """The similarity batches of ``cohort`` under ``model``, built as
    :meth:`odevae.train.similarity.SimilarityDataModule.rebuild` builds them."""
    import torch  # the model's functions only: plotting jobs load no torch

    from odevae.data.batching import CohortDataset
    from odevae.model.neighbours import (
        batch_weights,
        latent_trajectories,
        neighbour_batches,
        trajectory_distances,
    )

    with torch.no_grad():
        trajectories = latent_trajectories(model, CohortDataset(cohort).tensors, times)
        distances = trajectory_distances(trajectories)
        batches = neighbour_batches(distances, neighbours)
        weights = batch_weights(np.take_along_axis(distances, batches, 1), bandwidth)
        return NeighbourBatches(
            cohort.patient_ids, trajectories, distances, batches, weights
        )


def reference_patients(patient_ids, groups) -> list[str]:
    """One reference per group (groups sorted): the group's smallest patient id."""
    table = pd.DataFrame({"patient_id": patient_ids, "group": groups})
    return table.groupby("group", sort=True)["patient_id"].min().tolist()


def plot_similarity_batches(
    view: NeighbourBatches,
    groups,
    times: Sequence[float],
    references: Sequence[str],
) -> plt.Figure:
    """Per reference patient (columns) and latent dimension (rows): its trajectory
    (black) and its neighbours' coloured by true group, opacity ∝ tricube weight
    (dotted where the weight is 0); titled with the batch purity."""
    groups = np.asarray(groups)
    levels = sorted(set(groups.tolist()))
    palette = dict(zip(levels, sns.color_palette("deep", len(levels)), strict=True))
    d = view.trajectories.shape[-1]
    fig, axes = plt.subplots(
        d,
        len(references),
        figsize=(4.2 * len(references), 2.8 * d),
        sharex=True,
        squeeze=False,
    )
    lookup = {pid: i for i, pid in enumerate(view.patient_ids)}
    for c, pid in enumerate(references):
        i = lookup[pid]
        others, weights = view.batches[i, 1:], view.weights[i, 1:]
        kernel = weights / view.weights[i, 0]  # tricube(distance / bandwidth)
        purity = float(np.mean(groups[others] == groups[i]))
        for dim in range(d):
            ax = axes[dim, c]
            for j, w in zip(others, kernel, strict=True):
                style = {"alpha": w} if w > 0 else {"alpha": 0.3, "ls": ":"}
                ax.plot(
                    times,
                    view.trajectories[j, :, dim],
                    color=palette[groups[j]],
                    lw=1,
                    **style,
                )
            ax.plot(times, view.trajectories[i, :, dim], color="black", lw=2.5)
            ax.set_ylabel(f"latent dim {dim + 1}")
        axes[0, c].set_title(
            f"patient {pid} (group {groups[i]}): purity {purity:.0%}", fontsize=9
        )
    for ax in axes[-1]:
        ax.set_xlabel("time")
    handles = [Line2D([], [], color="black", lw=2.5, label="reference")]
    handles += [
        Line2D([], [], color=palette[g], lw=1, label=f"neighbour, group {g}")
        for g in levels
    ]
    axes[0, -1].legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_vae_vs_odevae(
    vae_latents: pd.DataFrame,
    ode_trajectories: pd.DataFrame,
    ode_latents: pd.DataFrame,
    groups: pd.DataFrame,
) -> plt.Figure:
    """Held-out encoder means of a VAE-only model (left) beside the ODE-VAE's
    held-out trajectories up to each patient's last visit with its encoder means
    (right), one row per latent dimension, coloured by true group (``groups``:
    ``patient_id, group``)."""
    group_of = groups.set_index("patient_id")["group"]

    def held_out(table: pd.DataFrame) -> pd.DataFrame:
        table = table[table["split"] == "test"].copy()
        table["group"] = table["patient_id"].map(group_of).astype(str)
        return table

    vae, lat = held_out(vae_latents), held_out(ode_latents)
    traj = held_out(ode_trajectories)
    last = lat.groupby("patient_id")["time"].max()
    traj = traj[traj["time"] <= traj["patient_id"].map(last) + 1e-9]
    d = max(len(latent_columns(vae, "mu")), len(latent_columns(traj, "z")))
    levels = sorted(set(vae["group"]) | set(traj["group"]))
    palette = dict(zip(levels, sns.color_palette("deep", len(levels)), strict=True))
    fig, axes = plt.subplots(d, 2, figsize=(9, 2.8 * d), sharex=True, squeeze=False)
    panels = ((vae, "mu", vae), (traj, "z", lat))  # lines, their column, points
    for k in range(1, d + 1):
        for ax, (lines, line, points) in zip(axes[k - 1], panels, strict=True):
            if f"{line}{k}" not in lines:
                ax.set_axis_off()
                continue
            sns.lineplot(
                data=lines,
                x="time",
                y=f"{line}{k}",
                hue="group",
                hue_order=levels,
                palette=palette,
                units="patient_id",
                estimator=None,
                ax=ax,
                lw=0.5,
                alpha=0.5,
                legend=False,
            )
            if f"mu{k}" in points:
                sns.scatterplot(
                    data=points,
                    x="time",
                    y=f"mu{k}",
                    hue="group",
                    hue_order=levels,
                    palette=palette,
                    ax=ax,
                    s=8,
                    edgecolor=None,
                    legend=False,
                )
            ax.set_ylabel(f"latent dim {k}")
    axes[0, 0].set_title("VAE only: encoder means")
    axes[0, 1].set_title("ODE-VAE: trajectories and encoder means")
    handles = [Line2D([], [], color=palette[g], label=f"group {g}") for g in levels]
    axes[0, 0].legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    return fig
