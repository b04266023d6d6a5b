"""Seaborn figures of held-out prediction: chosen patients, errors by method and
horizon, and the learned ODE parameters per patient."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

#: Methods drawn in the patient figure, with their colours.
SHOWN = {
    "odevae": "tab:orange",
    "odevae_mixed": "tab:red",
    "locf": "tab:blue",
    "mixed_model": "tab:green",
}
HORIZON_STYLE = {"one_step": "o", "from_first": "-"}


@contextlib.contextmanager
def seeded_jitter(seed: int):
    """seaborn's strip plots jitter their points with numpy's global random state
    and take no seed: seeded with ``seed`` here, and the caller's state restored
    after, so that a figure is the same on every run."""
    state = np.random.get_state()  # noqa: NPY002 (seaborn's own state)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (its seeds are 32-bit)
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def pick_heldout_patients(pred: pd.DataFrame, count: int, seed: int) -> list[str]:
    """``count`` held-out patients with at least three visits (fewer if the cohort
    has fewer), drawn by a numpy Generator seeded with ``seed`` from the sorted ids."""
    visits = pred.groupby("patient_id")["visit"].max() + 1
    ids = sorted(visits.index[visits >= 3]) or sorted(visits.index)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(ids), size=min(count, len(ids)), replace=False)
    return [ids[i] for i in sorted(chosen)]


def is_binary(values: pd.Series) -> bool:
    """A variable whose observed values are all 0 or 1."""
    seen = values.dropna().unique()
    return len(seen) > 0 and set(np.round(seen, 9)) <= {0.0, 1.0}


def plot_heldout_patients(
    pred: pd.DataFrame, patients: list[str], unit: str
) -> plt.Figure:
    """Observed values and one-step and from-first-visit predictions of the model
    and its main comparators, one column per patient, one row per variable, in the
    user's original units (``pred``: prediction rows with ``units == 'original'``).
    """
    pred = pred[pred["patient_id"].isin(patients)]
    variables = list(dict.fromkeys(pred["variable"]))
    width, height = 2.2 * len(patients) + 1, 1.6 * len(variables) + 0.8
    fig, axes = plt.subplots(
        len(variables),
        len(patients),
        figsize=(width, height),
        sharex="col",
        squeeze=False,
    )
    # fixed margins in inches (labels, titles, the legend below): tight_layout
    # measured every panel's text, a third of the figure's time at 88 panels
    fig.subplots_adjust(
        left=0.75 / width,
        right=1 - 0.15 / width,
        bottom=1.0 / height,
        top=1 - 0.35 / height,
        wspace=0.3,
        hspace=0.25,
    )
    # markers by plot(), not scatter(), and at most 4 ticks per axis: with 88
    # panels, scatter's collections and matplotlib's tick objects were most of
    # the figure's time
    panels = dict(tuple(pred.groupby(["variable", "patient_id"], sort=False)))
    for r, variable in enumerate(variables):
        binary = is_binary(pred.loc[pred["variable"] == variable, "observed"])
        for c, pid in enumerate(patients):
            ax = axes[r, c]
            mine = panels.get((variable, pid), pred.iloc[:0])
            obs = mine[mine["horizon"] == "one_step"].drop_duplicates("visit")
            ax.plot(obs["time"], obs["observed"], "o", color="black", ms=3.5, zorder=3)
            lines = dict(tuple(mine.groupby(["method", "horizon"], sort=False)))
            for method, colour in SHOWN.items():
                for horizon, style in HORIZON_STYLE.items():
                    rows = lines.get((method, horizon))
                    if rows is None:
                        continue
                    if style == "o" or binary:
                        marker = "o" if style == "o" else "x"
                        ax.plot(
                            rows["time"], rows["predicted"], marker, color=colour, ms=3
                        )
                    else:
                        ax.plot(rows["time"], rows["predicted"], color=colour, lw=1)
            if r == 0:
                ax.set_title(f"patient {pid}", fontsize=8)
            if c == 0:
                ax.set_ylabel(variable, fontsize=8)
            ax.tick_params(labelsize=6)
            ax.locator_params(nbins=4)
    for ax in axes[-1]:
        ax.set_xlabel(f"time ({unit})", fontsize=7)
    handles = [plt.Line2D([], [], color="black", marker="o", ls="", label="observed")]
    for method, colour in SHOWN.items():
        handles += [
            plt.Line2D(
                [], [], color=colour, marker="o", ls="", label=f"{method}, one step"
            ),
            plt.Line2D(
                [], [], color=colour, ls="-", label=f"{method}, from first visit"
            ),
        ]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=min(4, 2 * len(patients)),  # as wide as the panels
        fontsize=7,
        frameon=False,
    )
    return fig


def plot_errors(summary: pd.DataFrame, seed: int = 0) -> plt.Figure:
    """Standardised MSE by method and horizon: one point per fold (jittered as
    ``seed`` draws), and the mean."""
    folds = summary[summary["fold"].astype(str).str.isdigit()].copy()
    horizons = list(dict.fromkeys(folds["horizon"]))
    methods = list(dict.fromkeys(folds["method"]))
    fig, axes = plt.subplots(
        1,
        len(horizons),
        figsize=(3.2 * len(horizons), 0.35 * len(methods) + 1.5),
        sharey=True,
        squeeze=False,
    )
    for ax, horizon in zip(axes[0], horizons, strict=True):
        where = {
            "data": folds[folds["horizon"] == horizon],
            "y": "method",
            "x": "mse",
            "order": methods,
            "ax": ax,
        }
        with seeded_jitter(seed):
            sns.stripplot(**where, color="0.4", size=4)
        sns.pointplot(
            **where,
            color="tab:red",
            errorbar=None,
            markers="|",
            markersize=12,
            linestyle="none",
        )
        ax.set_title(horizon.replace("_", " "))
        ax.set_xlabel("standardised MSE (held out)")
        ax.set_ylabel("")
    fig.tight_layout()
    return fig


def _natural(label: str) -> list:
    """Sort key of a label with numbers: ``fold 2`` before ``fold 10``."""
    return [
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in label.split()
    ]


#: Parameters up to which the figure is a pairwise scatter; beyond, its panels
#: (n(n − 1)/2 + n) would be unreadable and slow to draw (16 parameters: 136).
MAX_PAIRWISE_PARAMETERS = 4


def plot_parameters(
    params: pd.DataFrame, groups: pd.Series | None, seed: int = 0
) -> plt.Figure:
    """The learned ODE parameters of every held-out patient (each fold's model on
    its own held-out patients), coloured by the true group where one exists, else
    by fold: a pairwise scatter for up to :data:`MAX_PAIRWISE_PARAMETERS`
    parameters, else one strip of points per parameter."""
    held = params[params["split"] == "test"].copy()
    names = [c for c in held.columns if c not in ("patient_id", "fold", "split")]
    if groups is not None:
        group = held["patient_id"].map(groups)
        held["colour"] = ("group " + group.astype(str)).where(group.notna())
    else:
        held["colour"] = "fold " + held["fold"].astype(str)
    held = held.dropna(subset=["colour"])  # a patient without a known group
    order = sorted(held["colour"].unique(), key=_natural)
    if len(names) == 1:
        fig, ax = plt.subplots(figsize=(5, 3))
        with seeded_jitter(seed):
            sns.stripplot(data=held, x=names[0], y="colour", order=order, ax=ax)
        return fig
    if len(names) > MAX_PAIRWISE_PARAMETERS:
        long = held.melt(
            id_vars="colour", value_vars=names, var_name="parameter"
        ).dropna(subset=["value"])
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(names) + 1.2))
        with seeded_jitter(seed):
            sns.stripplot(
                data=long,
                x="value",
                y="parameter",
                order=names,
                hue="colour",
                hue_order=order,
                dodge=True,
                s=3,
                ax=ax,
            )
        ax.set(xlabel="learned value", ylabel="")
        ax.get_legend().set_title(None)
        return fig
    grid = sns.pairplot(
        held[[*names, "colour"]],
        hue="colour",
        hue_order=order,
        corner=True,
        height=1.8,
        plot_kws={"s": 12},
    )
    return grid.figure
