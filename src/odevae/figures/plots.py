"""Seaborn figures of data, fitted latent trajectories and training curves.

Importing this module changes no matplotlib or seaborn setting; the workflow's
figure scripts call :func:`use_figure_style` first.
"""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from odevae.evaluate.recovery import latent_columns


def use_figure_style() -> None:
    """The workflow's figure settings, for this process: drawing off-screen (the
    Agg backend, whatever the display) and seaborn's whitegrid "paper" theme."""
    matplotlib.use("Agg")
    sns.set_theme(style="whitegrid", context="paper")


def _group_by_dimension_grid(n_groups: int, n_dims: int):
    """A figure with one panel per group (rows) and latent dimension (columns)."""
    return plt.subplots(
        n_groups,
        n_dims,
        figsize=(4 * n_dims, 3 * n_groups),
        sharex=True,
        sharey=True,
        squeeze=False,
    )


def _true_line(ax, truth: pd.DataFrame, column: str, label: str | None = None):
    """The true latent trajectory ``column`` as a bold black line."""
    sns.lineplot(
        data=truth, x="time", y=column, ax=ax, color="black", lw=2, label=label
    )


def plot_data_vs_truth(
    visits: pd.DataFrame, truth_patients: pd.DataFrame, truth_traj: pd.DataFrame
) -> plt.Figure:
    """Simulated measurements over the true latent trajectories, group × dimension.

    Measurements are assigned to latent dimensions in consecutive blocks, as
    simulated; each panel shows every variable of that block for the group's patients.
    """
    ucols = latent_columns(truth_traj, "u")
    xcols = [c for c in visits.columns if c not in ("patient_id", "time")]
    block = len(xcols) // len(ucols)
    long = visits.merge(truth_patients[["patient_id", "group"]], on="patient_id")
    long = long.melt(
        id_vars=["patient_id", "time", "group"], value_vars=xcols, var_name="variable"
    )
    long["dimension"] = long["variable"].map(
        {c: f"u{j // block + 1}" for j, c in enumerate(xcols)}
    )
    groups = sorted(truth_traj["group"].unique())
    fig, axes = _group_by_dimension_grid(len(groups), len(ucols))
    for r, g in enumerate(groups):
        for c, u in enumerate(ucols):
            ax = axes[r, c]
            part = long[(long["group"] == g) & (long["dimension"] == u)]
            sns.scatterplot(
                data=part,
                x="time",
                y="value",
                ax=ax,
                s=8,
                alpha=0.35,
                color="tab:blue",
                edgecolor=None,
                label="measurements",
            )
            _true_line(ax, truth_traj[truth_traj["group"] == g], u, "true trajectory")
            ax.set_title(f"group {g}, latent {u}")
            ax.set_ylabel("value")
            if (r, c) != (0, 0):
                ax.get_legend().remove()
    fig.tight_layout()
    return fig


def plot_latent_trajectories(
    aligned: pd.DataFrame, truth_traj: pd.DataFrame
) -> plt.Figure:
    """Learned held-out trajectories (aligned) over the true ones, group × dimension."""
    zcols = latent_columns(aligned, "z")
    groups = sorted(aligned["group"].unique())
    fig, axes = _group_by_dimension_grid(len(groups), len(zcols))
    for r, g in enumerate(groups):
        part = aligned[aligned["group"] == g]
        truth = truth_traj[truth_traj["group"] == g]
        for c, z in enumerate(zcols):
            ax = axes[r, c]
            sns.lineplot(
                data=part,
                x="time",
                y=z,
                units="patient_id",
                estimator=None,
                ax=ax,
                lw=0.6,
                alpha=0.4,
                color="tab:orange",
            )
            _true_line(ax, truth, f"u{c + 1}")
            ax.set_title(f"group {g}, latent dimension {c + 1}")
            ax.set_ylabel("latent state")
    handles = [
        Line2D([], [], color="tab:orange", lw=0.8, label="held-out patient (aligned)"),
        Line2D([], [], color="black", lw=2, label="true trajectory"),
    ]
    axes[0, 0].legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def pick_patients(aligned_latents: pd.DataFrame) -> list[str]:
    """One held-out patient per group: the one with the most visits (then id)."""
    counts = aligned_latents.groupby(["group", "patient_id"]).size().rename("n")
    counts = counts.reset_index().sort_values(
        ["group", "n", "patient_id"], ascending=[True, False, True]
    )
    return counts.groupby("group").head(1)["patient_id"].tolist()


def plot_individual_fits(
    aligned_traj: pd.DataFrame, aligned_latents: pd.DataFrame, patients: list[str]
) -> plt.Figure:
    """Individual ODE fits (lines), encoder means at visits (points), truth (dashed)."""
    zcols = latent_columns(aligned_traj, "z")
    fig, axes = plt.subplots(
        1, len(patients), figsize=(4.5 * len(patients), 3.2), squeeze=False
    )
    palette = sns.color_palette("deep", len(zcols))
    for ax, pid in zip(axes[0], patients, strict=True):
        traj = aligned_traj[aligned_traj["patient_id"] == pid]
        lat = aligned_latents[aligned_latents["patient_id"] == pid]
        for k, z in enumerate(zcols):
            ax.plot(
                traj["time"],
                traj[z],
                color=palette[k],
                lw=2,
                label=f"ODE fit, dim {k + 1}",
            )
            ax.plot(
                traj["time"],
                traj[f"u{k + 1}"],
                color=palette[k],
                ls="--",
                lw=1,
                label=f"truth, dim {k + 1}",
            )
            ax.scatter(
                lat["time"],
                lat[f"mu{k + 1}"],
                color=palette[k],
                s=25,
                zorder=3,
                label=f"encoder mean, dim {k + 1}",
            )
        group = lat["group"].iloc[0]
        ax.set_title(f"patient {pid} (group {group}, fold {lat['fold'].iloc[0]})")
        ax.set_xlabel("time (a.u.)")
        ax.set_ylabel("latent state")
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def loss_table(metrics: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Per-epoch train and validation loss of each fold, long format."""
    rows = []
    for fold, table in metrics.items():
        for split, col in (("train", "train/loss"), ("validation", "val/loss")):
            part = table.dropna(subset=[col])[["epoch", col]]
            rows.append(
                part.rename(columns={col: "loss"}).assign(fold=str(fold), split=split)
            )
    return pd.concat(rows, ignore_index=True)


def plot_loss_curves(losses: pd.DataFrame) -> plt.Figure:
    """Training and validation (held-out fold) loss per epoch, one line per fold."""
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=losses, x="epoch", y="loss", hue="fold", style="split", ax=ax)
    ax.set_ylabel("loss per patient")
    # The y range covers the epochs after the first tenth, so that one early spike
    # does not flatten the rest; a clipped curve is said in the title.
    late = losses[losses["epoch"] >= losses["epoch"].max() / 10]["loss"]
    low, high = float(late.min()), float(late.max())
    pad = 0.05 * (high - low or abs(high) or 1.0)
    if losses["loss"].max() > high + pad or losses["loss"].min() < low - pad:
        ax.set_ylim(low - pad, high + pad)
        ax.set_title("y axis clipped to the epochs after the first tenth")
    fig.tight_layout()
    return fig


def purity_table(metrics: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Per-epoch similarity-batch purity of each fold, long format."""
    rows = [
        table.dropna(subset=["train/batch_purity"])[["epoch", "train/batch_purity"]]
        .rename(columns={"train/batch_purity": "purity"})
        .assign(fold=str(fold))
        for fold, table in metrics.items()
    ]
    return pd.concat(rows, ignore_index=True)


def plot_batch_purity(purity: pd.DataFrame) -> plt.Figure:
    """Share of same-group neighbours in the similarity batches, per epoch and fold."""
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=purity, x="epoch", y="purity", hue="fold", marker="o", ax=ax)
    ax.set_ylabel("batch purity (same-group neighbours)")
    ax.set_ylim(0, 1.02)
    fig.tight_layout()
    return fig


def plot_visit_times(long: pd.DataFrame, unit: str) -> plt.Figure:
    """One line per patient from the first to the last visit, a dot per visit.

    Patients are sorted by follow-up length.
    """
    last = long.groupby("patient_id")["time"].max().sort_values(kind="stable")
    rank = pd.Series(range(len(last)), index=last.index)
    fig, ax = plt.subplots(figsize=(6, 1.5 + 0.012 * len(last)))
    ax.hlines(rank.to_numpy(), 0, last.to_numpy(), color="0.7", lw=0.6)
    sns.scatterplot(
        x=long["time"],
        y=long["patient_id"].map(rank),
        ax=ax,
        s=6,
        color="tab:blue",
        edgecolor=None,
    )
    ax.set_xlabel(f"time since time 0 ({unit})")
    ax.set_ylabel("patient (sorted by follow-up)")
    ax.set_yticks([])
    fig.tight_layout()
    return fig
