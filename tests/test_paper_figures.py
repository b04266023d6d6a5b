"""Paper figures: local solutions, similarity batches, VAE vs ODE-VAE."""

import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from odevae.data.folds import fold_members, make_folds
from odevae.data.tables import read_tsv
from odevae.evaluate.predict import predict
from odevae.evaluate.prediction.latent import encode
from odevae.figures.paper_figures import (
    local_solution_table,
    neighbour_batches_of,
    pick_patients,
    plot_local_solutions,
    plot_similarity_batches,
    plot_vae_vs_odevae,
    reference_patients,
)
from odevae.train.model_setup import build_model
from odevae.train.similarity import SimilarityDataModule
from tests.conftest import ROOT

TIMES = [1.0, 2.0, 3.0, 4.0]


@pytest.fixture
def model(tiny_cohort, tiny_config):
    torch.manual_seed(0)
    cfg = tiny_config
    return build_model(tiny_cohort, cfg["model"], cfg["loss"], cfg["train"]["lr"])


@pytest.fixture
def table(model, tiny_cohort):
    return local_solution_table(model, tiny_cohort, n_grid=7)


@pytest.fixture
def groups(tiny_tables):
    return read_tsv(tiny_tables["truth_patients"]).set_index("patient_id")["group"]


def segments(table):
    return table[table["kind"] == "solution"].groupby(["patient_id", "visit", "dim"])


def test_local_solutions_run_from_each_visit_mean_to_the_next_visit(
    model, tiny_cohort, table
):
    mu, _ = encode(model, tiny_cohort)
    n_segments = int((tiny_cohort.visits.sum(1) - 1).sum())
    assert segments(table).ngroups == n_segments * mu.shape[-1]
    for (pid, k, dim), part in segments(table):
        i = tiny_cohort.index_of([pid])[0]
        assert len(part) == 7
        assert part["time"].iloc[0] == tiny_cohort.times[i, k]
        assert part["time"].iloc[-1] == tiny_cohort.times[i, k + 1]
        assert part["mean"].iloc[0] == pytest.approx(float(mu[i, k, dim - 1]), 1e-6)


def test_ribbon_contains_the_mean_and_starts_at_one_sd(model, tiny_cohort, table):
    sol = table[table["kind"] == "solution"]
    assert (sol["low"] <= sol["mean"]).all() and (sol["mean"] <= sol["high"]).all()
    assert (sol["high"] - sol["low"] > 0).all()
    latents = predict(model, tiny_cohort, np.array([0.0]))[1]
    enc = table[table["kind"] == "encoder"]
    assert len(enc) == 2 * len(latents)
    for (pid, k, dim), part in segments(table):
        row = latents[(latents["patient_id"] == pid) & (latents["visit"] == k)]
        sd = np.exp(0.5 * row[f"logvar{dim}"].item())
        mu = row[f"mu{dim}"].item()
        first = part.iloc[0]
        expected = [mu - sd, mu + sd]
        np.testing.assert_allclose([first["low"], first["high"]], expected, 1e-6)
        own = enc[(enc["patient_id"] == pid) & (enc["visit"] == k)]
        own = own[own["dim"] == dim]
        np.testing.assert_allclose(own[["low", "high"]], [expected], 1e-6)


def test_linear_diagonal_local_solution_is_an_exponential(model, tiny_cohort, table):
    assert model.hparams.model["system"] == "linear_diagonal"
    mu, theta = encode(model, tiny_cohort)
    A, _ = model.core.system.matrix_and_drift(theta)
    rates = torch.diagonal(A, dim1=1, dim2=2).numpy().astype(float)
    assert np.abs(rates).max() > 1e-3  # the check would be trivial otherwise
    for (pid, k, dim), part in segments(table):
        i = tiny_cohort.index_of([pid])[0]
        dt = part["time"].to_numpy() - tiny_cohort.times[i, k]
        expected = float(mu[i, k, dim - 1]) * np.exp(rates[i, dim - 1] * dt)
        np.testing.assert_allclose(part["mean"], expected, rtol=1e-5, atol=1e-6)


def test_local_solution_panels(table):
    assert len(plot_local_solutions(table, "years").axes) == 20
    ids = sorted(set(table["patient_id"]))[:3]
    fig = plot_local_solutions(table, "years", ids)
    assert [ax.get_title() for ax in fig.axes] == [f"patient {i}" for i in ids]
    more = pd.concat([table, table.assign(patient_id=table["patient_id"] + "b")])
    assert len(plot_local_solutions(more, "years").axes) == 24


def test_pick_patients_is_seeded_and_needs_three_visits(tiny_cohort):
    ids = tiny_cohort.patient_ids
    chosen = pick_patients(tiny_cohort, ids, 5, seed=3)
    assert chosen == pick_patients(tiny_cohort, ids[::-1], 5, seed=3)
    assert chosen == sorted(chosen) and len(set(chosen)) == 5
    counts = tiny_cohort.visits.sum(1)[tiny_cohort.index_of(chosen)]
    assert (counts >= 3).all()
    eligible = ids[tiny_cohort.visits.sum(1) >= 3]
    assert sorted(pick_patients(tiny_cohort, ids, 100, seed=3)) == sorted(eligible)


def test_similarity_batches_are_the_ones_training_builds(model, tiny_cohort, groups):
    folds = make_folds(tiny_cohort.patient_ids, 2, seed=0)
    train_ids, held_ids = fold_members(folds, 0)
    train = tiny_cohort.subset(tiny_cohort.index_of(train_ids))
    view = neighbour_batches_of(model, train, TIMES, 3, 1.0)
    data = SimilarityDataModule(tiny_cohort, train_ids, held_ids, 0, 3, 1.0, TIMES)
    data.rebuild(model)
    np.testing.assert_array_equal(view.batches, data.batches.batches)
    np.testing.assert_allclose(view.weights, data.batches.weights)
    for i, batch in enumerate(view.batches):  # self, then the 3 nearest others
        others = np.delete(view.distances[i], i)
        assert view.distances[i, batch[1:]].max() <= np.sort(others)[2] + 1e-12
        assert batch[0] == i and i not in batch[1:]
    labels = groups.loc[train.patient_ids].to_numpy()
    refs = reference_patients(train.patient_ids, labels)
    assert refs == [min(train.patient_ids[labels == g]) for g in sorted(set(labels))]
    fig = plot_similarity_batches(view, labels, TIMES, refs)
    assert len(fig.axes) == 2 * len(refs)
    i = list(train.patient_ids).index(refs[0])
    purity = np.mean(labels[view.batches[i, 1:]] == labels[i])
    assert fig.axes[0].get_title().endswith(f"purity {purity:.0%}")
    assert len(fig.axes[0].lines) == 4  # three neighbours and the reference


def test_vae_vs_odevae_shows_held_out_patients_up_to_their_last_visit(
    model, tiny_cohort, tiny_tables
):
    _, latents, traj = predict(model, tiny_cohort, np.linspace(0, 12, 25))
    held = set(tiny_cohort.patient_ids[::3])
    for frame in (latents, traj):
        frame.insert(1, "fold", 0)
        split = np.where(frame["patient_id"].isin(held), "test", "train")
        frame.insert(2, "split", split)
    truth = read_tsv(tiny_tables["truth_patients"])
    fig = plot_vae_vs_odevae(latents, traj, latents, truth)
    assert len(fig.axes) == 4
    left, right = fig.axes[0], fig.axes[1]
    assert len(left.lines) == len(right.lines) == len(held)
    last = latents[latents["split"] == "test"]["time"].max()
    assert max(line.get_xdata().max() for line in right.lines) <= last + 1e-9


def save_checkpoint(model, path):
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": L.__version__,
        },
        path,
    )


def run(script, tmp_path, **kwargs):
    fake = SimpleNamespace(
        log=[str(tmp_path / f"{script}.log")],
        threads=1,
        **{k: SimpleNamespace(**v) for k, v in kwargs.items()},
    )
    with matplotlib.rc_context():  # the script's figure style stays in the script
        runpy.run_path(
            str(ROOT / "workflow" / "scripts" / f"{script}.py"),
            init_globals={"snakemake": fake},
        )


CHANGED_SETTINGS = """
import matplotlib

def settings():
    return {key: matplotlib.rcParams._get(key) for key in matplotlib.rcParams}

before = settings()
import odevae.figures.plots, odevae.figures.paper_figures, odevae.figures.prediction
print(sorted(k for k, v in settings().items() if v != before[k]))
odevae.figures.plots.use_figure_style()
print(sorted(k for k, v in settings().items() if v != before[k]))
"""


def test_importing_the_figure_modules_changes_no_matplotlib_setting():
    result = subprocess.run(
        [sys.executable, "-c", CHANGED_SETTINGS],
        capture_output=True,
        text=True,
        check=True,
    )
    on_import, on_use = result.stdout.splitlines()
    assert on_import == "[]"
    # the figure scripts' call does change them (so the check above can fail)
    assert "'axes.grid'" in on_use and "'backend'" in on_use


def test_scripts_write_their_outputs(model, tiny_cohort, tiny_tables, tmp_path):
    cohort_path, folds_path = tmp_path / "cohort.npz", tmp_path / "folds.tsv"
    tiny_cohort.save(cohort_path)
    make_folds(tiny_cohort.patient_ids, 2, seed=0).to_csv(
        folds_path, sep="\t", index=False
    )
    checkpoints = [tmp_path / f"fold_{k}.ckpt" for k in range(2)]
    for path in checkpoints:
        save_checkpoint(model, path)
    out = {k: tmp_path / f"{k}.png" for k in ("local", "similarity")}
    common = {"cohort": cohort_path, "folds": folds_path}
    run(
        "plot_local_solutions",
        tmp_path,
        input={**common, "checkpoints": checkpoints},
        params={"patients": 24, "seed": 1, "time_unit": "years", "dpi": 30},
        output={"figure": out["local"], "table": tmp_path / "local.tsv"},
    )
    local = read_tsv(tmp_path / "local.tsv")
    assert set(local["fold"]) == {0, 1}
    assert set(local["patient_id"]) == set(tiny_cohort.patient_ids)
    run(
        "plot_similarity_batches",
        tmp_path,
        input={
            **common,
            "checkpoint": checkpoints[0],
            "truth_patients": tiny_tables["truth_patients"],
        },
        params={"times": TIMES, "neighbours": 3, "bandwidth": 1.0, "dpi": 30},
        output={"figure": out["similarity"]},
    )
    assert all(Path(path).stat().st_size > 0 for path in out.values())
