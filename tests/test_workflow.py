"""The whole DAG on a tiny config, in a temporary copy of the workflow."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, TINY, merge, snakemake

pytestmark = pytest.mark.workflow


#: The tiny config, trained on the CPU (two runs of it give identical files), with
#: one measurement scored on its own as well.
TINY_CPU = merge(
    TINY,
    {"train": {"accelerator": "cpu"}, "evaluation": {"variable_sets": {"one": ["x1"]}}},
)


def copy_workflow(root, config: dict) -> None:
    """A copy of the workflow in ``root`` with ``config`` as ``tiny.yaml``."""
    root.mkdir(exist_ok=True)
    shutil.copy(ROOT / "Snakefile", root)
    shutil.copytree(ROOT / "workflow", root / "workflow")
    shutil.copytree(ROOT / "config", root / "config")
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The whole DAG of the tiny config, run once for the tests that read it."""
    root = tmp_path_factory.mktemp("tiny_run")
    copy_workflow(root, TINY_CPU)
    snakemake(root, "--configfile", "tiny.yaml")
    return root


def test_whole_dag_runs_and_second_run_has_nothing_to_do(tiny_run):
    workdir = tiny_run
    out = workdir / "results" / "tiny"
    for path in (
        "data/visits.tsv",
        "preprocessed/cohort.npz",
        "folds.tsv",
        "train/fold_0/model.ckpt",
        "train/fold_1/metrics.csv",
        "predict/fold_1/trajectories.tsv",
        "figures/data_vs_truth.png",
        "figures/latent_trajectories.png",
        "figures/individual_fits.png",
        "figures/loss_curves.png",
        "train/fold_0/hparams.yaml",
        "benchmarks/train/fold_0.tsv",
        "logs/train/fold_0.log",
    ):
        assert (out / path).is_file(), path
    # the training log: a short record, no progress bar redraws
    log = (out / "logs" / "train" / "fold_0.log").read_text()
    assert "\r" not in log and len(log.encode()) < 10_000
    assert "10 training and 10 validation (the held-out fold) patients" in log
    final = pd.read_csv(out / "train" / "fold_0" / "metrics.csv")["train/loss"]
    assert f"final train/loss {final.dropna().iloc[-1]:.6g}," in log
    recovery = pd.read_csv(out / "recovery.tsv", sep="\t", dtype={"fold": str})
    assert recovery["fold"].tolist() == ["0", "1", "mean"]
    scores = recovery[["accuracy_1nn", "accuracy_threshold", "r2_dim1", "r2_dim2"]]
    assert scores.notna().all().all()
    # 10 held-out patients per fold: accuracies are multiples of 1/10
    acc = scores.loc[scores.index[:2], ["accuracy_1nn", "accuracy_threshold"]] * 10
    assert ((acc - acc.round()).abs() < 1e-9).all().all()
    folds = pd.read_csv(out / "folds.tsv", sep="\t")
    assert folds["patient_id"].is_unique and len(folds) == 20
    summary = pd.read_csv(out / "cv" / "summary.tsv", sep="\t", dtype={"fold": str})
    methods = {
        "odevae",
        "odevae_mixed",
        "odevae_increment",
        "odevae_combined",
        "odevae_selected",
        "odevae_prior",
        "odevae_population",
        "vae_roundtrip",
        "vae_mixed",
        "ols_latent",
        "locf",
        "smoother",
        "train_mean",
        "mixed_model",
        "mixed_model_population",
    }
    # mixed_multivariate needs 5 training patients per random effect: none here;
    # comparators tried the fit and saved that there is none, predict used that
    # instead of trying again
    for fold in (0, 1):
        tried = "multivariate mixed model: 10 patients are too few"
        assert tried in (out / "logs" / "comparators" / f"fold_{fold}.log").read_text()
        predict_log = (out / "logs" / "predict" / f"fold_{fold}.log").read_text()
        assert "multivariate mixed model:" not in predict_log
        assert (
            out / "comparators" / f"fold_{fold}" / "multivariate_mixed.npz"
        ).is_file()
    for horizon in ("one_step", "from_first", "from_first_two"):
        rows = summary[summary["horizon"] == horizon]
        assert set(rows["method"]) == methods, horizon
        assert set(rows["fold"]) == {"0", "1", "mean", "sd", "pooled"}
    pooled = summary[summary["fold"] == "pooled"].set_index(["horizon", "method"])
    assert (pooled["ratio_ci_low"] <= pooled["ratio_mse"] + 1e-9).all()
    assert (pooled["ratio_mse"] <= pooled["ratio_ci_high"] + 1e-9).all()
    assert pooled.loc[("one_step", "locf"), "ratio_mse"] == 1.0
    assert not pooled.loc[("one_step", "locf"), "model_diverged"]
    training = pd.read_csv(out / "cv" / "training.tsv", sep="\t")
    assert training["fold"].tolist() == [0, 1]
    assert (training["val_loss_min"] <= training["val_loss_final"]).all()
    # every method is scored on the same targets
    assert pooled.groupby("horizon")["n_targets"].nunique().eq(1).all()
    # a set of one measurement (evaluation.variable_sets) scores as that
    # measurement's rows of cv/per_variable.tsv: the same targets and scales
    one = pd.read_csv(out / "cv" / "summary_one.tsv", sep="\t", dtype={"fold": str})
    assert list(one.columns) == list(summary.columns)
    one = one[one["fold"] == "pooled"].set_index(["horizon", "method"])
    per_variable = pd.read_csv(out / "cv" / "per_variable.tsv", sep="\t")
    x1 = per_variable[per_variable["variable"] == "x1"].set_index(["horizon", "method"])
    assert set(one.index) == set(pooled.index)
    for column in ("mse", "ratio_mse", "n_patients"):
        np.testing.assert_allclose(one[column], x1.loc[one.index, column], rtol=1e-9)
    assert not np.allclose(one["mse"], pooled.loc[one.index, "mse"])
    for figure in ("heldout_patients", "prediction_errors", "parameters"):
        assert (out / "figures" / f"{figure}.png").is_file(), figure
    predictions = pd.read_csv(out / "predict" / "fold_0" / "predictions.tsv", sep="\t")
    assert set(predictions["units"]) == {"model", "original"}
    held = set(folds.loc[folds["fold"] == 0, "patient_id"])
    assert set(predictions["patient_id"]) == held

    software = pd.read_csv(out / "software.tsv", sep="\t").set_index("package")
    assert {"python", "torch", "snakemake", "statsmodels"} <= set(software.index)
    assert yaml.safe_load((out / "config.yaml").read_text())["name"] == "tiny"

    snakemake(workdir, "--configfile", "tiny.yaml", "--report", "report.html")
    html = (workdir / "report.html").read_text()
    assert "Held-out prediction" in html and "summary.tsv" in html

    again = snakemake(workdir, "--configfile", "tiny.yaml", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_model_family_variant_runs_through_the_same_rules(workdir):
    """Similarity batches, a full system and the statistical loss, end to end."""
    config = merge(
        TINY,
        {
            "model": {"system": "linear_full"},
            "loss": {"kind": "statistical"},
            "train": {"batching": "similarity", "similarity": {"neighbours": 3}},
        },
    )
    (workdir / "similarity.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "--configfile", "similarity.yaml")
    out = workdir / "results" / "tiny"
    metrics = pd.read_csv(out / "train" / "fold_0" / "metrics.csv")
    purity = metrics["train/batch_purity"].dropna()
    assert len(purity) == TINY["train"]["epochs"] and purity.between(0, 1).all()
    assert {"train/mu_penalty", "train/var_penalty"} <= set(metrics.columns)
    params = pd.read_csv(out / "predict" / "fold_0" / "params.tsv", sep="\t")
    assert ["a11", "a21", "a12", "a22"] == list(params.columns[3:])
    table = pd.read_csv(out / "figures" / "batch_purity.tsv", sep="\t")
    assert sorted(table["fold"].unique()) == [0, 1]
    assert (out / "figures" / "batch_purity.png").is_file()
    assert (out / "recovery.tsv").is_file()


def test_dry_run_and_lint(workdir):
    dry = snakemake(workdir, "--configfile", "tiny.yaml", "-n")
    text = dry.stdout + dry.stderr
    assert "train" in text and "recovery" in text
    lint = snakemake(ROOT, "--lint", check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Congratulations" in lint.stdout + lint.stderr


def test_config_error_names_the_key(workdir):
    (workdir / "bad.yaml").write_text(
        yaml.safe_dump(merge(TINY, {"train": {"lr": "x"}}))
    )
    result = snakemake(workdir, "--configfile", "bad.yaml", "-n", check=False)
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert "odevae: config key 'train.lr': 'x' is not of type 'number'" in text
    assert len(text.strip().splitlines()) <= 2  # the line (and Snakemake's note)


def test_cross_key_config_error_names_both_keys(workdir):
    bad = merge(TINY, {"model": {"latent_dim": 3}})
    (workdir / "bad.yaml").write_text(yaml.safe_dump(bad))
    result = snakemake(workdir, "--configfile", "bad.yaml", "-n", check=False)
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert "'model.latent_dim' = 3 must equal" in text and "simulation.u0" in text


def test_invalid_loss_combination_fails_before_any_job(workdir):
    bad = merge(
        TINY, {"loss": {"kind": "statistical", "statistical": {"skip_own": False}}}
    )
    (workdir / "bad.yaml").write_text(yaml.safe_dump(bad))
    result = snakemake(workdir, "--configfile", "bad.yaml", "-n", check=False)
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert "config key 'loss.statistical.weighting'" in text
    assert "Traceback" not in text


@pytest.mark.slow
def test_default_run_recovers_the_simulated_groups():
    """The claims of docs/results/default.md for seed 42: the default config
    separates the groups (>= 0.95) and recovers the latent trajectories (R² >= 0.9
    in both dimensions; measured 0.95 and 0.97 there).

    It is the quickstart's run, where the quickstart leaves it (``results/`` of the
    checkout): after the quickstart, as in CI, Snakemake finds it complete and
    reruns nothing; otherwise (or after a change) it runs what is missing."""
    snakemake(ROOT)
    recovery = pd.read_csv(
        ROOT / "results" / "workshop" / "recovery.tsv",
        sep="\t",
        dtype={"fold": str},
    ).set_index("fold")
    assert recovery.loc["mean", "accuracy_1nn"] >= 0.95
    assert recovery.loc["mean", "accuracy_threshold"] >= 0.95
    assert recovery.loc["mean", "sign_agreement"] >= 0.95  # growth learned as growth
    assert recovery.loc["mean", ["r2_dim1", "r2_dim2"]].min() >= 0.9


def test_bad_input_fails_the_job_cleanly_and_leaves_no_output(workdir):
    bad = merge(TINY, {"simulation": {"p": 5}})
    (workdir / "bad.yaml").write_text(yaml.safe_dump(bad))
    result = snakemake(workdir, "--configfile", "bad.yaml", check=False)
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert "odevae: config key 'simulation.p': p = 5 must be a multiple" in text
    assert "Traceback" not in text
    # the simulation checks run when the workflow reads its config: no job starts
    assert not (workdir / "results" / "tiny").exists()


def test_a_diverging_training_stops_with_one_line_and_leaves_no_model(workdir):
    bad = merge(TINY, {"train": {"lr": 1.0e10}})
    (workdir / "bad.yaml").write_text(yaml.safe_dump(bad))
    result = snakemake(workdir, "--configfile", "bad.yaml", check=False)
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert "odevae: fold " in text and "the training loss is" in text
    assert "train.lr = 10000000000.0" in text
    assert "Traceback" not in text
    train = workdir / "results" / "tiny" / "train"
    assert not list(train.glob("fold_*/model.ckpt"))
    assert not list(train.glob("fold_*/metrics.csv"))


def test_a_run_killed_during_training_resumes_with_rerun_incomplete(workdir):
    """SIGKILL to the whole run mid-training leaves nothing taken as complete;
    after ``--unlock``, ``--rerun-incomplete`` trains the fold again to the end."""
    config = merge(TINY, {"train": {"epochs": 200}})
    (workdir / "long.yaml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "1",
            "--configfile",
            "long.yaml",
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    metrics = workdir / "results" / "tiny" / "train" / "fold_0" / "metrics.csv"
    deadline = time.monotonic() + 300
    while not metrics.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert metrics.exists(), "training never started"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (metrics.parent / "model.ckpt").exists()
    snakemake(workdir, "--configfile", "long.yaml", "--unlock")  # the kill's lock
    stale = snakemake(workdir, "--configfile", "long.yaml", "-n", check=False)
    assert "incomplete" in (stale.stdout + stale.stderr).lower()
    snakemake(
        workdir,
        "--configfile",
        "long.yaml",
        "--rerun-incomplete",
        "results/tiny/train/fold_0/model.ckpt",
    )
    assert (metrics.parent / "model.ckpt").is_file()
    epochs = pd.read_csv(metrics)["epoch"].max() + 1
    assert epochs == 200


REPRODUCED = [
    "data/visits.tsv",
    "data/baseline.tsv",
    "data/truth_patients.tsv",
    "data/truth_trajectories.tsv",
    "preprocessed/patients.tsv",
    "preprocessed/report.tsv",
    "folds.tsv",
    "train/fold_0/metrics.csv",
    "train/fold_1/metrics.csv",
    "cv/summary.tsv",
]


def test_two_runs_of_one_config_give_identical_files(tiny_run, tmp_path):
    """Reproducibility on the CPU: a second run of the tiny config in another
    directory (up to the held-out summary, figures left out) gives byte-identical
    simulation, preprocessing, folds, training metrics and summary; the cohort's
    arrays are equal (the .npz archive itself stamps the time it was written)."""
    copy_workflow(tmp_path / "b", TINY_CPU)
    snakemake(
        tmp_path / "b", "results/tiny/cv/summary.tsv", "--configfile", "tiny.yaml"
    )
    a, b = tiny_run / "results" / "tiny", tmp_path / "b" / "results" / "tiny"
    for path in REPRODUCED:
        assert (a / path).read_bytes() == (b / path).read_bytes(), path
    with np.load(a / "preprocessed" / "cohort.npz") as x:
        with np.load(b / "preprocessed" / "cohort.npz") as y:
            assert sorted(x.files) == sorted(y.files)
            for key in x.files:
                np.testing.assert_array_equal(x[key], y[key], err_msg=key)
    summary = pd.read_csv(a / "cv" / "summary.tsv", sep="\t")
    assert summary["ratio_mse"].notna().any()  # the summary holds scores


def reversed_keys(value):
    """``value`` with every mapping's keys in reverse order, recursively."""
    if isinstance(value, dict):
        return {k: reversed_keys(value[k]) for k in reversed(list(value))}
    return value


def test_equal_config_in_another_key_order_retrains_nothing(tiny_run):
    """Rule params are compared by their repr: a config merged by another route
    (here its keys in another order; ``snakemake paper``'s module config in
    practice) must give the same params, or every model retrains."""
    workdir, target = tiny_run, "results/tiny/train/fold_0/model.ckpt"
    (workdir / "reversed.yaml").write_text(
        yaml.safe_dump(reversed_keys(TINY_CPU), sort_keys=False)
    )
    again = snakemake(workdir, target, "--configfile", "reversed.yaml", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout
    changed = snakemake(
        workdir, "--list-params-changes", "--configfile", "reversed.yaml"
    )
    assert target not in changed.stdout
