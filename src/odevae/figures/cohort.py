"""The cohort's measurements over time (rule ``plot_cohort``): per measurement, the
median and interquartile band of the values per visit-time bin with a few patients'
trajectories, or for a 0/1 measurement the share of 1s per bin.

Values are shown on the model's scale (after ``table.transforms``), as the model
sees them.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

#: axis label of a measurement on the model's scale, per transform
LABELS = {
    "none": "{}",
    "log": "log {}",
    "log1p": "log(1 + {})",
    "logit": "logit {}",
    "item_0_2": "{} (item recoding, logit)",
    "item_0_4": "{} (item recoding, logit)",
    "item_0_6": "{} (item recoding, logit)",
}
BAND = "tab:blue"


def is_binary(values: pd.Series) -> bool:
    """True for a measurement whose observed values are 0 and 1, both present (the
    rule of ``model.binary_measurements: auto``)."""
    return set(values.dropna().unique().tolist()) == {0.0, 1.0}


def time_bins(times: pd.Series, n_bins: int | None = None) -> np.ndarray:
    """Edges of visit-time bins: quantiles of ``times``, so each bin holds about as
    many visits (tied times can merge bins). Without ``n_bins``, one bin per 30
    visits, 3 to 10 bins."""
    if n_bins is None:
        n_bins = int(np.clip(len(times) // 30, 3, 10))
    edges = np.unique(np.quantile(times, np.linspace(0, 1, n_bins + 1)))
    return edges if len(edges) > 1 else np.array([edges[0], edges[0] + 1.0])


def binned(long: pd.DataFrame, name: str, edges: np.ndarray) -> pd.DataFrame:
    """Per time bin of one measurement's observed values: median time, the values'
    quartiles and mean, and the number of values."""
    obs = long[["time", name]].dropna()
    bins = pd.cut(obs["time"], edges, include_lowest=True)
    stats = obs.groupby(bins, observed=True)[name].agg(
        q25=lambda v: v.quantile(0.25),
        median="median",
        q75=lambda v: v.quantile(0.75),
        mean="mean",
        n="size",
    )
    stats["time"] = obs.groupby(bins, observed=True)["time"].median()
    return stats.reset_index(drop=True)


def pick_highlighted(long: pd.DataFrame, n: int, seed: int) -> list:
    """``n`` patients with two visits or more, drawn with ``seed``."""
    visits = long.groupby("patient_id")["time"].size()
    candidates = np.sort(visits.index[visits >= 2].to_numpy())
    rng = np.random.default_rng(seed)
    return list(rng.choice(candidates, min(n, len(candidates)), replace=False))


def _continuous(ax, long, name, stats, highlighted, colors):
    ax.fill_between(stats["time"], stats["q25"], stats["q75"], color=BAND, alpha=0.25)
    ax.plot(stats["time"], stats["median"], color=BAND, lw=2)
    for patient, color in zip(highlighted, colors, strict=True):
        own = long.loc[long["patient_id"] == patient, ["time", name]].dropna()
        ax.plot(own["time"], own[name], color=color, lw=0.8, marker="o", ms=2)


def _binary(ax, stats):
    ax.plot(stats["time"], stats["mean"], color=BAND, lw=2, marker="o", ms=3)
    ax.set_ylim(0, 1)
    low, high = stats["n"].min(), stats["n"].max()
    ax.text(  # visits per bin, small and grey
        0.98,
        0.97,
        f"{low} visits per bin" if low == high else f"{low}–{high} visits per bin",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=6,
        color="0.45",
    )


def plot_measurements(
    long: pd.DataFrame,
    names: list[str],
    transforms: dict[str, str],
    unit: str,
    n_highlighted: int = 5,
    seed: int = 0,
) -> plt.Figure:
    """One panel per measurement on the model's scale, over visit-time bins (see
    :func:`time_bins`): a continuous measurement as the median (line) and 25–75 %
    band per bin, with ``n_highlighted`` patients' trajectories (the same patients
    in every panel, drawn with ``seed``); a 0/1 measurement as the share of 1s per
    bin, the range of its number of visits per bin in the corner."""
    edges = time_bins(long["time"])
    highlighted = pick_highlighted(long, n_highlighted, seed)
    colors = [f"C{k + 1}" for k in range(len(highlighted))]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    ncol = min(2 + len(highlighted), 2 * cols)  # legend columns that fit the width
    legend = 0.2 * -(-(2 + len(highlighted)) // ncol) + 0.1  # its height, inches
    height = 2.3 * rows + legend
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.9 * cols, height), sharex=True, squeeze=False
    )
    for ax, name in zip(axes.flat, names, strict=False):
        stats = binned(long, name, edges)
        ax.set_title(name)
        if is_binary(long[name]):
            _binary(ax, stats)
            ax.set_ylabel(f"share of {name} = 1")
        else:
            _continuous(ax, long, name, stats, highlighted, colors)
            label = LABELS.get(transforms.get(name, "none"), "{}")
            ax.set_ylabel(label.format(name))
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for k, ax in enumerate(axes.flat[: len(names)]):  # the lowest panel per column
        if k + cols >= len(names):
            ax.set_xlabel(f"time since time 0 ({unit})")
            ax.xaxis.set_tick_params(labelbottom=True)
    handles = [
        Line2D([], [], color=BAND, lw=2, label="median (share of 1s)"),
        Patch(color=BAND, alpha=0.25, label="25–75 %"),
    ] + [
        Line2D([], [], color=c, lw=0.8, marker="o", ms=2, label=f"patient {p}")
        for p, c in zip(highlighted, colors, strict=True)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=7)
    fig.tight_layout(rect=(0, legend / height, 1, 1))
    return fig
