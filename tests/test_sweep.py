"""Sweeps over seeds: each seed a full run under results/<name>/seed<k>/, its folds
independent jobs, and tables over seeds × folds."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from odevae.evaluate.sweep import recovery_over_seeds, scores_over_seeds
from tests.conftest import ROOT, snakemake


def summary(ratios: list[float], diverged: list[bool]) -> pd.DataFrame:
    rows = [
        {
            "horizon": "one_step",
            "method": "odevae",
            "fold": str(k),
            "mse": 2 * r,
            "ratio_mse": r,
            "model_diverged": d,
        }
        for k, (r, d) in enumerate(zip(ratios, diverged, strict=True))
    ]
    pooled = {**rows[0], "fold": "pooled", "ratio_mse": float(np.mean(ratios))}
    mean = {**rows[0], "fold": "mean", "ratio_mse": 99.0}  # not a run
    return pd.DataFrame([*rows, mean, pooled])


def test_scores_over_seeds_take_every_fold_of_every_seed_as_a_run():
    table = scores_over_seeds(
        {1: summary([0.8, 0.9], [False, False]), 7: summary([0.7, 1.3], [False, True])}
    )
    row = table.iloc[0]
    assert row["n_runs"] == 4
    assert row["ratio_mse_mean"] == pytest.approx(0.925)
    assert row["ratio_mse_sd"] == pytest.approx(np.std([0.8, 0.9, 0.7, 1.3], ddof=1))
    assert (row["ratio_mse_worst"], row["worst_seed"], row["worst_fold"]) == (1.3, 7, 1)
    assert row["pooled_ratio_mean"] == pytest.approx((0.85 + 1.0) / 2)
    assert row["n_diverged"] == 1


def test_recovery_over_seeds_reports_the_worst_fold():
    def recovery(r2):
        folds = pd.DataFrame(
            {"fold": ["0", "1"], "n_train": 8, "n_test": 2, "r2_dim1": r2}
        )
        return pd.concat([folds, pd.DataFrame([{"fold": "mean", "r2_dim1": 1.0}])])

    table = recovery_over_seeds({3: recovery([0.9, 0.95]), 4: recovery([0.2, 0.99])})
    row = table.set_index("metric").loc["r2_dim1"]
    assert list(table["metric"]) == ["r2_dim1"]  # counts are not metrics
    assert row["n_runs"] == 4 and row["mean"] == pytest.approx(0.76)
    assert (row["worst"], row["worst_seed"], row["worst_fold"]) == (0.2, 4, 0)


@pytest.mark.workflow
def test_a_sweep_of_3_seeds_and_5_folds_is_15_independent_training_jobs(workdir):
    (workdir / "sweep.yaml").write_text(
        yaml.safe_dump({"sweep": {"seeds": [0, 100, 200]}})
    )
    dry = snakemake(workdir, "--configfile", "sweep.yaml", "-n").stdout
    jobs = re.findall(
        r"rule train:\n(?:.*\n)*?\s+wildcards: seed=(\d+), fold=(\d+)", dry
    )
    assert sorted(set(jobs)) == [(s, f) for s in ("0", "100", "200") for f in "01234"]
    assert len(jobs) == 15
    assert re.search(r"^sweep\s+1$", dry, re.MULTILINE)


@pytest.mark.workflow
def test_the_test_config_sweeps_two_seeds_and_aggregates(workdir):
    """`snakemake --directory .test` (the catalog's test run): 2 seeds × 2 folds."""
    shutil.copytree(ROOT / ".test", workdir / ".test")
    snakemake(workdir, "--directory", ".test")
    out = workdir / ".test" / "results" / "tiny"
    visits = [
        pd.read_csv(out / f"seed{k}" / "data" / "visits.tsv", sep="\t")
        for k in (1, 100)
    ]
    assert not visits[0].equals(visits[1])  # each seed simulates its own cohort
    for k in (1, 100):
        record = yaml.safe_load((out / f"seed{k}" / "config.yaml").read_text())
        assert record["seed"] == k and record["sweep"]["seeds"] == []
        log = (out / f"seed{k}" / "logs" / "train" / "fold_1.log").read_text()
        assert f", seed {k + 1}, on " in log  # fold 1 trains with seed + 1
    scores = pd.read_csv(out / "sweep" / "summary.tsv", sep="\t")
    odevae = scores[(scores["method"] == "odevae") & (scores["horizon"] == "one_step")]
    assert odevae["n_runs"].item() == 4
    recovery = pd.read_csv(out / "sweep" / "recovery.tsv", sep="\t")
    assert {"accuracy_1nn", "sign_agreement", "r2_dim1"} <= set(recovery["metric"])
    assert (recovery["n_runs"] == 4).all()
