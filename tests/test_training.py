import numpy as np
import pandas as pd
import pytest
import torch

from odevae.errors import InputError
from odevae.folds import make_folds
from odevae.predict import predict_fold
from odevae.training import train_fold


@pytest.fixture
def folds(tiny_cohort):
    return make_folds(tiny_cohort.patient_ids, 2, seed=0)


def test_fast_dev_run(tiny_cohort, folds, tiny_config, tmp_path):
    model = train_fold(tiny_cohort, folds, 0, tiny_config, tmp_path, fast_dev_run=True)
    assert model.trainer.state.finished
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_training_writes_per_epoch_metrics_and_checkpoint(
    tiny_cohort, folds, tiny_config, tmp_path
):
    train_fold(tiny_cohort, folds, 1, tiny_config, tmp_path)
    assert (tmp_path / "model.ckpt").is_file()
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    for key in ("train/loss", "val/loss", "train/nll", "val/kl", "val/consistency"):
        values = metrics[key].dropna()
        assert len(values) == tiny_config["train"]["epochs"], key
        assert np.isfinite(values).all()


def test_training_is_reproducible(tiny_cohort, folds, tiny_config, tmp_path):
    for run in ("a", "b"):
        train_fold(tiny_cohort, folds, 0, tiny_config, tmp_path / run)
    a = pd.read_csv(tmp_path / "a" / "metrics.csv")
    b = pd.read_csv(tmp_path / "b" / "metrics.csv")
    pd.testing.assert_frame_equal(a, b)


def test_training_reduces_the_loss(tiny_cohort, folds, tiny_config, tmp_path):
    config = {**tiny_config, "train": {**tiny_config["train"], "epochs": 30}}
    train_fold(tiny_cohort, folds, 0, config, tmp_path)
    val = pd.read_csv(tmp_path / "metrics.csv")["val/loss"].dropna().to_numpy()
    assert val[-1] < val[0]


def test_scaling_uses_training_patients_only(tiny_cohort, folds, tiny_config, tmp_path):
    config = {
        **tiny_config,
        "model": {
            **tiny_config["model"],
            "standardize_measurements": True,
            "standardize_covariates": True,
        },
    }
    model = train_fold(tiny_cohort, folds, 0, config, tmp_path, fast_dev_run=True)
    held = folds["fold"].to_numpy() == 0
    train = tiny_cohort.subset(tiny_cohort.index_of(folds["patient_id"][~held]))
    np.testing.assert_allclose(
        model.z_mean.numpy(), train.baseline.mean(0), rtol=1e-5, atol=1e-6
    )
    x = train.values[train.observed & train.visits[..., None]].reshape(-1)
    assert model.x_mean.numpy().mean() == pytest.approx(x.mean(), rel=1e-4)


def test_predict_fold_tables(tiny_cohort, folds, tiny_config, tmp_path):
    train_fold(tiny_cohort, folds, 0, tiny_config, tmp_path)
    tables = predict_fold(
        str(tmp_path / "model.ckpt"),
        tiny_cohort,
        folds,
        0,
        0.5,
        {"x1": "log1p"},
        inner_fraction=0.25,
        seed=tiny_config["seed"],
    )
    params, latents, traj = tables["params"], tables["latents"], tables["trajectories"]
    assert list(params.columns) == ["patient_id", "fold", "split", "a11", "a22"]
    assert len(params) == tiny_cohort.n
    held_mask = folds["fold"].to_numpy() == 0
    held = set(folds.loc[held_mask, "patient_id"])
    assert set(params.loc[params["split"] == "test", "patient_id"]) == held
    assert len(latents) == int(tiny_cohort.visits.sum())
    assert {"mu1", "mu2", "logvar1", "ode2"} <= set(latents.columns)
    first = latents[latents["visit"] == 0]
    np.testing.assert_allclose(first["mu1"], first["ode1"], rtol=1e-5)
    t_max = tiny_cohort.times[tiny_cohort.visits].max()
    assert t_max <= traj["time"].max() < t_max + 0.5
    assert np.allclose(np.diff(np.unique(traj["time"])), 0.5)
    pred = tables["predictions"]
    assert set(pred["patient_id"]) == held  # held-out patients only
    assert set(pred["units"]) == {"model", "original"}
    model_units = pred[pred["units"] == "model"].reset_index(drop=True)
    original = pred[pred["units"] == "original"].reset_index(drop=True)
    x1 = model_units["variable"] == "x1"
    np.testing.assert_allclose(
        original.loc[x1, "predicted"], np.expm1(model_units.loc[x1, "predicted"])
    )
    np.testing.assert_allclose(
        original.loc[~x1, "predicted"], model_units.loc[~x1, "predicted"]
    )
    selection = tables["selection"]  # chosen on 25% of the training patients
    assert (selection["scored_on"] == "inner_validation").all()
    assert (selection["n_patients"] == round(0.25 * (~held_mask).sum())).all()
    chosen = selection.loc[selection["selected"], "candidate"].item()
    by_method = model_units.set_index(["method", "horizon", "patient_id", "visit"])
    np.testing.assert_array_equal(
        by_method.loc["odevae_selected", "predicted"],
        by_method.loc[chosen, "predicted"],
    )


def test_a_non_finite_loss_stops_training_with_the_fold_and_causes(
    tiny_cohort, folds, tiny_config, tmp_path
):
    config = {**tiny_config, "train": {**tiny_config["train"], "lr": 1.0e10}}
    with pytest.raises(InputError, match=r"fold 1, epoch 0: the training loss is"):
        train_fold(tiny_cohort, folds, 1, config, tmp_path)
    assert not (tmp_path / "model.ckpt").exists()
