"""Training at a registry's size: the log says how much work a fold is and how long
it has left, and restart probes and early-stopping patience are capped in
optimiser steps, leaving every shipped preset as it was."""

import logging
import re

import numpy as np
import pytest
import yaml

from odevae.data.folds import fitted_and_validation, make_folds
from odevae.errors import InputError
from odevae.evaluate.prediction.comparators import comparator_predictions
from odevae.evaluate.prediction.mixed import fit_mixed_models, mixed_model
from odevae.evaluate.prediction.targets import prediction_targets
from odevae.resources import (
    CohortSize,
    evaluation_resources,
    saved_size,
    training_resources,
    training_size,
)
from odevae.train.scale import (
    PATIENCE_MAX_STEPS,
    PROBE_MAX_STEPS,
    batch_plan,
    patience_epochs,
    probe_epochs,
    steps_per_epoch,
)
from odevae.train.training import train_fold
from tests.conftest import ROOT, merge
from tests.test_comparators import linear_cohort

PROGRESS = r"(\d+:\d\d:\d\d) elapsed, (about|at most) (\d+:\d\d:\d\d) left"


@pytest.fixture
def folds(tiny_cohort):
    return make_folds(tiny_cohort.patient_ids, 2, seed=0)


def train_config(tiny_config, **train):
    return merge(tiny_config, {"train": train})


def test_the_log_states_the_workload_and_the_time_left_of_probes_and_training(
    tiny_cohort, folds, tiny_config, tmp_path, caplog
):
    config = train_config(
        tiny_config, epochs=4, restarts={"n": 2, "probe_epochs": 3}, batch_size=4
    )
    with caplog.at_level(logging.INFO, logger="odevae.train.training"):
        train_fold(tiny_cohort, folds, 1, config, tmp_path / "train")
    text = caplog.text
    train_ids, _ = fitted_and_validation(folds, 1)
    visits = tiny_cohort.visits[tiny_cohort.index_of(train_ids)].sum(1)
    assert (
        f"fold 1: {len(visits)} training patients with {visits.sum()} visits "
        f"({visits.min()}-{visits.max()} per patient, median {np.median(visits):g}"
        in text
    )
    steps = -(-len(visits) // 4)
    assert f"{steps} optimiser steps per epoch" in text
    assert (
        f"restart probes: 3 epochs ({3 * steps} optimiser steps, within "
        "train.restarts.probe_max_steps 2000)" in text
    )
    for k, seed in enumerate((tiny_config["seed"] + 1, tiny_config["seed"] + 1001)):
        line = re.search(
            rf"fold 1: restart probe {k + 1}/2 \(seed {seed}\): epoch 3/3: "
            rf"train/loss \S+; {PROGRESS}",
            text,
        )
        assert line, text
        assert line.group(2) == "about"
    # the second probe ends the series of probes: nothing left
    assert line.group(3) == "0:00:00"
    final = re.search(
        rf"fold 1: epoch 4/4: train/loss \S+, val/loss \S+; {PROGRESS}", text
    )
    assert final and final.group(3) == "0:00:00"


def test_probes_and_patience_are_capped_in_optimiser_steps(
    tiny_cohort, folds, tiny_config, tmp_path, caplog
):
    config = train_config(
        tiny_config,
        epochs=6,
        batch_size=2,
        restarts={"n": 2, "probe_epochs": 5, "probe_max_steps": 8},
        early_stopping={"inner_fraction": 0.3, "patience": 20, "patience_max_steps": 9},
    )
    folds = make_folds(tiny_cohort.patient_ids, 2, seed=0, inner_fraction=0.3)
    train_ids, _ = fitted_and_validation(folds, 0)
    steps = -(-len(train_ids) // 2)
    assert steps == 4  # 7 inner-training patients in batches of 2
    with caplog.at_level(logging.INFO, logger="odevae.train.training"):
        train_fold(tiny_cohort, folds, 0, config, tmp_path / "train")
    text = caplog.text
    assert (
        "restart probes: 2 epochs, not 5: train.restarts.probe_max_steps 8 caps it "
        "in optimiser steps and an epoch is 4 steps" in text
    )
    assert "2 initialisations probed for 2 epochs" in text
    assert "restart probe 2/2 (seed 1042): epoch 2/2" in text
    assert (
        "early stopping: patience 3 epochs, not 20: "
        "train.early_stopping.patience_max_steps 9 caps it" in text
    )
    assert re.search(rf"fold 0: epoch \d+/6: .*; {PROGRESS}", text).group(2) == (
        "at most"
    )


@pytest.mark.parametrize(
    ("steps", "probes", "patience"),
    [
        (10, 20, 20),
        (40, 20, 20),
        (100, 20, 20),
        (500, 4, 20),
        (909, 2, 12),
        (910, 2, 11),
        (5000, 1, 2),
    ],
)
def test_the_caps_leave_small_cohorts_alone(steps, probes, patience):
    assert probe_epochs(20, 2000, steps) == probes
    assert patience_epochs(20, 10000, steps) == patience


def shipped_configs():
    default = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    yield "config", default
    for path in sorted((ROOT / "config").glob("*.yaml")):
        if path.name != "config.yaml":
            yield path.stem, merge(default, yaml.safe_load(path.read_text()))


@pytest.mark.parametrize(("name", "config"), list(shipped_configs()))
def test_every_shipped_run_probes_and_waits_as_configured(name, config):
    # the largest shipped cohort (pbcseq, 312 patients): all of them in one fold
    train = config["train"]
    batch, batching = batch_plan(400, train["batch_size"], train["batching"])
    assert batching in ("random", "similarity"), name
    assert batch == (8 if train["batch_size"] == "auto" else train["batch_size"])
    steps = steps_per_epoch(400, batching, batch)
    restarts, stopping = train["restarts"], train["early_stopping"]
    probes = probe_epochs(restarts["probe_epochs"], restarts["probe_max_steps"], steps)
    patience = patience_epochs(
        stopping["patience"], stopping["patience_max_steps"], steps
    )
    assert probes == restarts["probe_epochs"] or restarts["n"] == 1, name
    assert patience == stopping["patience"], name


def test_an_epoch_is_one_step_per_batch_or_per_patient_with_similarity_batches():
    assert steps_per_epoch(9086, "random", 8) == 1136
    assert steps_per_epoch(80, "random", 8) == 10
    assert steps_per_epoch(80, "similarity", 8) == 80


@pytest.mark.parametrize(
    ("patients", "batch", "batching"),
    [
        (80, 8, "random"),
        (1024, 8, "random"),
        (1025, 16, "bucketed"),
        (2048, 16, "bucketed"),
        (2049, 32, "bucketed"),
        (9600, 128, "bucketed"),
        (100_000, 1024, "bucketed"),
    ],
)
def test_auto_batches_grow_with_the_cohort_to_an_epoch_of_at_most_128_steps(
    patients, batch, batching
):
    assert batch_plan(patients, "auto", "auto") == (batch, batching)
    assert steps_per_epoch(patients, batching, batch) <= 128
    # a setting given is kept
    assert batch_plan(patients, 4, "random") == (4, "random")
    assert batch_plan(patients, "auto", "similarity")[1] == "similarity"


def test_the_caps_default_to_the_schema_defaults():
    schema = yaml.safe_load(
        (ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text()
    )
    train = schema["properties"]["train"]["properties"]
    restarts = train["restarts"]["properties"]
    stopping = train["early_stopping"]["properties"]
    assert restarts["probe_max_steps"]["default"] == PROBE_MAX_STEPS
    assert stopping["patience_max_steps"]["default"] == PATIENCE_MAX_STEPS


def test_mixed_models_above_the_cap_fit_a_seeded_subset_and_predict_for_all(caplog):
    train = linear_cohort(60, seed=3, p=2)
    test = linear_cohort(5, seed=4, prefix="q", p=2)
    full = fit_mixed_models(train)
    assert [f.patients for f in full] == [60, 60]
    with caplog.at_level(logging.INFO, logger="odevae.evaluate.prediction.mixed"):
        capped = fit_mixed_models(train, max_patients=25, seed=7)
    assert [f.patients for f in capped] == [25, 25]
    assert (
        "mixed models fitted on a random 25 of the 60 training patients "
        "(evaluation.mixed_model_max_patients 25, seed 7)" in caplog.text
    )
    again = fit_mixed_models(train, max_patients=25, seed=7)
    other = fit_mixed_models(train, max_patients=25, seed=8)
    np.testing.assert_array_equal(capped[0].beta, again[0].beta)
    assert not np.array_equal(capped[0].beta, other[0].beta)
    assert not np.array_equal(capped[0].beta, full[0].beta)
    targets = prediction_targets(test)
    predicted, sd = mixed_model(capped, test, targets)
    assert np.isfinite(predicted).all() and np.isfinite(sd).all()
    # at or below the cap: every patient, as before
    same = fit_mixed_models(train, max_patients=60, seed=7)
    np.testing.assert_array_equal(same[0].beta, full[0].beta)


def test_the_comparators_info_states_the_patients_of_the_mixed_model():
    train = linear_cohort(30, seed=10, p=1)
    test = linear_cohort(3, seed=11, prefix="q", p=1)
    _, info = comparator_predictions(train, test, mixed_model_max_patients=12, seed=1)
    assert info["mixed_model_patients"] == {"y0": 12}
    _, info = comparator_predictions(train, test)
    assert info["mixed_model_patients"] == {"y0": 30}


def test_a_cap_below_one_patient_names_the_key():
    with pytest.raises(InputError, match="evaluation.mixed_model_max_patients"):
        fit_mixed_models(linear_cohort(5, seed=1), max_patients=0)


def test_a_saved_cohort_sizes_its_training_job(tiny_cohort, tiny_config, tmp_path):
    path = tmp_path / "cohort.npz"
    tiny_cohort.save(path)
    size = saved_size(path)
    assert size.patients == tiny_cohort.n
    assert size.visits == tiny_cohort.visits.sum()
    arrays = sum(
        np.asarray(getattr(tiny_cohort, k)).nbytes
        for k in tiny_cohort.__dataclass_fields__
    )
    assert size.array_mb == pytest.approx(arrays / 1e6)
    assert training_size(path, tiny_config) == size
    assert training_resources(size, tiny_config) == {"runtime": 30, "mem_mb": 1000}
    # ten thousand times the visits: time grows with them, and memory with the arrays
    big = CohortSize(size.patients * 10_000, size.visits * 10_000, 500.0)
    sized = training_resources(big, merge(tiny_config, {"train": {"epochs": 300}}))
    assert sized["runtime"] > 30 and sized["mem_mb"] == 3000


def test_prediction_jobs_keep_the_defaults_until_the_visits_need_more():
    # pbcseq (1,918 visits) and every shipped preset: the profile's defaults
    assert evaluation_resources(CohortSize(285, 1918, 1.0)) == {
        "runtime": 10,
        "mem_mb": 1000,
    }
    # a 15,000-patient registry (200,000 visits; measured: 1.6 GB, 100 s)
    assert evaluation_resources(CohortSize(15000, 200_000, 30.0)) == {
        "runtime": 10,
        "mem_mb": 3000,
    }
    sized = evaluation_resources(CohortSize(150_000, 2_000_000, 300.0))
    assert sized["mem_mb"] == 21000 and sized["runtime"] > 30
    # predict with two models averaged (tuning.ensemble) predicts everyone twice
    pair = evaluation_resources(CohortSize(150_000, 2_000_000, 300.0), models=2)
    assert pair["mem_mb"] == 41000 and pair["runtime"] >= 2 * sized["runtime"] - 1


def test_a_15000_patient_fold_trains_with_batches_of_128_in_the_minimum_time():
    # measured: 1.5-2 minutes per fold with bucketed batches of 128 (batch 8 took
    # 14 s per epoch: one fold's training about an hour)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    size = CohortSize(15000, 200_000, 30.0)
    assert training_resources(size, config)["runtime"] == 30
    small = merge(config, {"train": {"batch_size": 8, "batching": "random"}})
    assert training_resources(size, small)["runtime"] > 60


def test_a_real_cohort_not_yet_preprocessed_is_sized_when_it_is(tmp_path):
    config = {"data": {"source": "table"}}
    with pytest.raises(FileNotFoundError) as missing:
        training_size(tmp_path / "cohort.npz", config)
    assert missing.value.filename == str(tmp_path / "cohort.npz")
