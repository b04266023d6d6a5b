"""The cohort's measurement figure (rule ``plot_cohort``): binned summaries per
measurement on the model's scale, not one line per patient."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection

from odevae.data.preprocess import preprocess
from odevae.data.simulate import simulate_cohort, write_cohort
from odevae.figures.cohort import plot_measurements, time_bins
from tests.conftest import TABLES, merge

matplotlib.use("Agg")


def small_cohort(n=30, seed=0) -> pd.DataFrame:
    """A long table on the model's scale: log crp (continuous) and a 0/1 flag."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        for k in range(2 + i % 4):
            rows.append(
                {
                    "patient_id": f"P{i:02d}",
                    "time": k + rng.uniform(0, 0.5),
                    "crp": rng.normal(1 + 0.2 * k, 0.5),
                    "flag": float(rng.random() < 0.2 + 0.15 * k),
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture
def panels(tmp_path):
    long = small_cohort()
    fig = plot_measurements(long, ["crp", "flag"], {"crp": "log"}, "years")
    path = tmp_path / "measurements.png"
    fig.savefig(path, dpi=40)
    assert path.stat().st_size > 0
    return dict(zip(["crp", "flag"], fig.axes[:2], strict=True)), long


def test_a_zero_one_item_is_drawn_as_its_share_of_ones_per_time_bin(panels):
    axes, long = panels
    ax = axes["flag"]
    assert ax.get_ylim() == (0, 1)
    assert ax.get_ylabel() == "share of flag = 1"
    (line,) = ax.get_lines()  # one share line, not a line per patient (30)
    n_bins = len(time_bins(long["time"])) - 1
    shares = line.get_ydata()
    assert len(shares) == n_bins
    assert ((shares > 0) & (shares < 1)).all()  # shares, not the 0/1 values
    assert not ax.collections


def test_a_continuous_measurement_shows_median_band_and_five_patients(panels):
    axes, _ = panels
    ax = axes["crp"]
    assert ax.get_ylabel() == "log crp"  # the model's scale, the transform named
    assert len(ax.get_lines()) == 1 + 5  # the median and five patients
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 1


def test_a_simulated_cohort_of_ten_continuous_variables(tiny_config, tmp_path):
    simulated = simulate_cohort(merge(tiny_config["simulation"], {"p": 10}), seed=1)
    paths = {key: tmp_path / f"{key}.tsv" for key in TABLES}
    write_cohort(simulated, paths)
    cohort = preprocess(paths["visits"], paths["baseline"])
    names = [str(name) for name in cohort.measurement_names]
    assert len(names) == 10
    long = cohort.to_long()
    fig = plot_measurements(long, names, {}, "a.u.")
    fig.savefig(tmp_path / "measurements.png", dpi=40)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == names
    assert all(
        sum(isinstance(c, PolyCollection) for c in ax.collections) == 1 for ax in shown
    )
