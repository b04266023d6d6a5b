"""The papers' simulation presets under config/: valid, simulated as specified and
trainable (tiny versions; full runs: `snakemake --configfile config/<name>.yaml`)."""

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.utils import validate

from odevae.config_checks import check_model_config
from odevae.data.folds import make_folds
from odevae.data.preprocess import preprocess
from odevae.data.simulate import simulate_cohort, write_cohort
from odevae.train.training import train_fold
from tests.conftest import ROOT, merge

PRESETS = ["bj_linear2", "bj_lotka_volterra", "bj_linear4", "sa_demo"]
SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")


def preset(name, default_config):
    override = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())
    config = merge(default_config, override)
    validate(config, SCHEMA)
    check_model_config(config)
    return config


@pytest.mark.parametrize("name", PRESETS)
def test_preset_is_valid_and_names_its_results(name, default_config):
    config = preset(name, default_config)
    assert config["name"] == name
    assert config["model"]["latent_dim"] == len(config["simulation"]["u0"])


def test_bj_linear2_has_exactly_two_visits_per_patient(default_config):
    cohort = simulate_cohort(preset("bj_linear2", default_config)["simulation"], 1)
    assert (cohort.visits.groupby("patient_id").size() == 2).all()


def test_lotka_volterra_preset_follows_its_rates(default_config):
    sim = preset("bj_lotka_volterra", default_config)["simulation"]
    cohort = simulate_cohort(merge(sim, {"n": 20}), 1)
    truth = cohort.truth_patients
    assert list(truth.columns[2:]) == ["alpha", "beta", "gamma", "delta"]
    assert set(map(tuple, truth.iloc[:, 2:].to_numpy())) == {
        (1.0, 1.0, 1.0, 0.5),
        (0.5, 1.0, 1.0, 2.0),
    }
    assert (cohort.visits.groupby("patient_id")["time"].min() == 0).all()
    assert cohort.visits["time"].duplicated().sum() < len(cohort.visits)
    # the true trajectories keep the first integral of their rates
    for g, part in cohort.truth_trajectories.groupby("group"):
        a, b, c, d = truth.loc[truth["group"] == g].iloc[0, 2:]
        u1, u2 = part["u1"].to_numpy(), part["u2"].to_numpy()
        V = c * u1 - d * np.log(u1) + b * u2 - a * np.log(u2)
        assert np.ptp(V) < 1e-6


def test_sa_demo_is_column_major_and_has_up_to_eight_follow_ups(default_config):
    cohort = simulate_cohort(preset("sa_demo", default_config)["simulation"], 1)
    counts = cohort.visits.groupby("patient_id").size()
    assert counts.min() >= 2 and counts.max() <= 9
    follow = cohort.visits.loc[cohort.visits["time"] > 0, "time"]
    assert follow.min() > 0 and follow.max() <= 10
    groups = cohort.truth_patients.groupby("group")[["a11", "a21", "a12", "a22"]]
    assert groups.first().to_numpy().tolist() == [
        [-0.2, 0.1, -0.1, 0.1],
        [-0.2, -0.1, 0.1, -0.2],
    ]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_trains_on_a_tiny_cohort(name, default_config, tmp_path):
    config = preset(name, default_config)
    config = merge(
        config,
        {
            "simulation": {"n": 12, "q": 8, "q_info": 4},
            "train": {
                "epochs": 1,
                "progress_bar": False,
                "similarity": {"neighbours": 3},
            },
        },
    )
    cohort_tables = simulate_cohort(config["simulation"], seed=1)
    paths = {
        k: tmp_path / f"{k}.tsv"
        for k in ("visits", "baseline", "truth_patients", "truth_trajectories")
    }
    write_cohort(cohort_tables, paths)
    cohort = preprocess(paths["visits"], paths["baseline"])
    folds = make_folds(cohort.patient_ids, 2, seed=0)
    train_fold(cohort, folds, 0, config, tmp_path / "train")
    metrics = pd.read_csv(tmp_path / "train" / "metrics.csv")
    for key in ("train/loss", "val/loss"):
        values = metrics[key].dropna()
        assert len(values) == 1 and np.isfinite(values).all(), key  # the one epoch
