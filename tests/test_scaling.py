"""Held-out patients never influence scaling or imputation statistics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from odevae.data.batching import CohortDataset, collate
from odevae.data.folds import make_folds
from odevae.train.data import scaling_stats
from odevae.train.training import train_fold

STANDARDIZE = {"standardize_measurements": True, "standardize_covariates": True}


@pytest.fixture
def cohort_with_gaps(tiny_cohort):
    """The tiny cohort with some missing covariates (NaN) and measurements."""
    base = tiny_cohort.baseline.copy()
    base[::3, 0] = np.nan
    observed = tiny_cohort.observed.copy()
    observed[::4, 1, :2] = False
    return dataclasses.replace(tiny_cohort, baseline=base, observed=observed)


def perturb_held_out(cohort, folds, fold):
    """Held-out patients' measurements and covariates made wildly different."""
    held = np.isin(cohort.patient_ids, folds.loc[folds["fold"] == fold, "patient_id"])
    values, base = cohort.values.copy(), cohort.baseline.copy()
    values[held] = values[held] * 1e3 + 5e4
    base[held] = np.where(np.isnan(base[held]), 7.0, base[held] * -1e3 - 9e4)
    return dataclasses.replace(cohort, values=values, baseline=base), held


def test_statistics_come_from_the_training_patients_only(cohort_with_gaps):
    cohort = cohort_with_gaps
    folds = make_folds(cohort.patient_ids, 2, seed=0)
    train = cohort.subset(np.flatnonzero(folds["fold"].to_numpy() != 0))
    stats = scaling_stats(train, True, True)
    changed, _ = perturb_held_out(cohort, folds, 0)
    train_changed = changed.subset(np.flatnonzero(folds["fold"].to_numpy() != 0))
    for a, b in zip(stats, scaling_stats(train_changed, True, True), strict=True):
        np.testing.assert_array_equal(a, b)
    # the fill value is the training median of the observed covariate
    x_mean, x_std, z_mean, z_std, z_fill = stats
    seen = train.baseline[~np.isnan(train.baseline[:, 0]), 0]
    assert z_fill[0] == np.median(seen)
    filled = np.where(np.isnan(train.baseline[:, 0]), z_fill[0], train.baseline[:, 0])
    assert z_mean[0] == pytest.approx(filled.mean())
    # and the whole-cohort statistics differ: the test can tell
    assert not np.allclose(scaling_stats(changed, True, True)[0], x_mean)


def test_trained_model_ignores_held_out_patients(
    cohort_with_gaps, tiny_config, tmp_path
):
    cohort = cohort_with_gaps
    folds = make_folds(cohort.patient_ids, 2, seed=0)
    changed, held = perturb_held_out(cohort, folds, 1)
    config = {**tiny_config, "model": {**tiny_config["model"], **STANDARDIZE}}
    a = train_fold(cohort, folds, 1, config, tmp_path / "a")
    b = train_fold(changed, folds, 1, config, tmp_path / "b")
    state_a, state_b = a.state_dict(), b.state_dict()
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key], rtol=0, atol=0)
    train = cohort.subset(np.flatnonzero(~held))
    with torch.no_grad():
        batch = collate([CohortDataset(train)[i] for i in range(train.n)])
        out_a, out_b = a(a.scale(batch)), b(b.scale(batch))
    for key in out_a:
        torch.testing.assert_close(out_a[key], out_b[key], rtol=0, atol=0)
    assert torch.isfinite(out_a["theta"]).all()  # missing covariates were imputed
    assert not torch.equal(a.core.z_fill, torch.zeros_like(a.core.z_fill))


def test_a_measurement_unobserved_in_training_scales_to_identity(tiny_cohort):
    train = tiny_cohort.subset(np.arange(10))
    train.observed[..., 1] = False  # no training patient has measurement 2
    x_mean, x_std, *_ = scaling_stats(train, True, True)
    assert np.isfinite(x_mean).all() and np.isfinite(x_std).all()
    assert (x_mean[1], x_std[1]) == (0.0, 1.0) and x_std[0] != 1.0


def test_early_stopping_selects_on_training_patients_only(
    cohort_with_gaps, tiny_config, tmp_path
):
    """The inner split, the stopping epoch and the kept model ignore the held-out
    fold, and the kept model is the best epoch's on the inner validation set."""
    cohort = cohort_with_gaps
    folds = make_folds(cohort.patient_ids, 2, seed=0, inner_fraction=0.3)
    changed, _ = perturb_held_out(cohort, folds, 1)
    train = {
        **tiny_config["train"],
        "epochs": 8,
        "early_stopping": {"inner_fraction": 0.3, "patience": 2},
    }
    config = {**tiny_config, "train": train}
    a = train_fold(cohort, folds, 1, config, tmp_path / "a")
    b = train_fold(changed, folds, 1, config, tmp_path / "b")
    for key, value in a.state_dict().items():
        torch.testing.assert_close(value, b.state_dict()[key], rtol=0, atol=0)
    metrics = pd.read_csv(tmp_path / "a" / "metrics.csv")
    val = metrics.dropna(subset=["val/loss"])
    best_epoch = int(val.loc[val["val/loss"].idxmin(), "epoch"])
    saved = torch.load(tmp_path / "a" / "model.ckpt", weights_only=False)
    assert saved["epoch"] == best_epoch
