import dataclasses
import io
import logging
import re
import sys
from types import SimpleNamespace

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from odevae.data.folds import fold_members, make_folds
from odevae.errors import InputError
from odevae.evaluate.predict import predict_fold
from odevae.model.module import ODEVAE
from odevae.runner import run_script
from odevae.train.data import CohortDataModule
from odevae.train.model_setup import build_model
from odevae.train.restarts import candidate_seeds
from odevae.train.similarity import RebuildSimilarityBatches, SimilarityDataModule
from odevae.train.training import make_trainer, train_fold


@pytest.fixture
def folds(tiny_cohort):
    return make_folds(tiny_cohort.patient_ids, 2, seed=0)


@pytest.fixture
def out(tmp_path):
    """A fresh folder for one training (tmp_path holds the tiny cohort's tables)."""
    return tmp_path / "train"


def test_fast_dev_run(tiny_cohort, folds, tiny_config, out):
    model = train_fold(tiny_cohort, folds, 0, tiny_config, out, fast_dev_run=True)
    assert model.trainer.state.finished
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_training_writes_per_epoch_metrics_and_checkpoint(
    tiny_cohort, folds, tiny_config, out
):
    train_fold(tiny_cohort, folds, 1, tiny_config, out)
    assert (out / "model.ckpt").is_file()
    metrics = pd.read_csv(out / "metrics.csv")
    for key in ("train/loss", "val/loss", "train/nll", "val/kl", "val/consistency"):
        values = metrics[key].dropna()
        assert len(values) == tiny_config["train"]["epochs"], key
        assert np.isfinite(values).all()
    # one row per stage and epoch, every term of the stage in it; step is the
    # epoch (a pass is one Lightning step); the sanity check logs no row
    epochs = list(range(tiny_config["train"]["epochs"]))
    train, val = (metrics.dropna(subset=[f"{s}/loss"]) for s in ("train", "val"))
    assert len(metrics) == len(train) + len(val)
    assert list(train["epoch"]) == epochs == list(val["epoch"])
    assert (metrics["step"] == metrics["epoch"]).all()
    assert train[["train/nll", "train/kl", "train/consistency"]].notna().all().all()


def test_training_is_reproducible(tiny_cohort, folds, tiny_config, tmp_path):
    for run in ("a", "b"):
        train_fold(tiny_cohort, folds, 0, tiny_config, tmp_path / run)
    a = pd.read_csv(tmp_path / "a" / "metrics.csv")
    b = pd.read_csv(tmp_path / "b" / "metrics.csv")
    pd.testing.assert_frame_equal(a, b)


class _AutomaticODEVAE(ODEVAE):
    """The module under Lightning's automatic optimisation: one batch per step."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.automatic_optimization = True

    def training_step(self, batch, batch_idx):
        return self._shared_step(batch, "train")


class _PerBatch(CohortDataModule):
    """The same batches, one Lightning step each."""

    def train_dataloader(self):
        return super().train_dataloader().batches


class _PerBatchSimilarity(SimilarityDataModule):
    def train_dataloader(self):
        return super().train_dataloader().batches


@pytest.mark.parametrize("kind", ["shuffled", "bucketed", "similarity", "history"])
def test_a_pass_as_one_step_trains_as_lightnings_automatic_optimisation(
    kind, tiny_cohort, folds, tiny_config, tmp_path
):
    """The module takes a pass's optimiser steps in one Lightning step: the losses
    of every epoch and the trained weights are those of automatic optimisation on
    the same batches (shuffled, bucketed, similarity batches rebuilt every epoch,
    a history encoder's random cuts), and global_step still counts optimiser
    steps."""
    train_ids, val_ids = fold_members(folds, 0)
    model_cfg = tiny_config["model"] | ({"history": "gru"} if kind == "history" else {})
    trained = {}
    for name, module in (("pass", ODEVAE), ("automatic", _AutomaticODEVAE)):
        per_batch = module is _AutomaticODEVAE
        if kind == "similarity":
            similarity = _PerBatchSimilarity if per_batch else SimilarityDataModule
            data = similarity(tiny_cohort, train_ids, val_ids, seed=3, neighbours=3)
            callbacks = [RebuildSimilarityBatches(data)]
        else:
            cohort_data = _PerBatch if per_batch else CohortDataModule
            data = cohort_data(
                tiny_cohort, train_ids, val_ids, 4, 3, bucketed=kind == "bucketed"
            )
            callbacks = []
        L.seed_everything(3, verbose=False)
        hparams = build_model(tiny_cohort, model_cfg, tiny_config["loss"], 1e-2).hparams
        model = module(**hparams)
        trainer = make_trainer(tmp_path / name, 4, "cpu", callbacks=callbacks)
        trainer.fit(model, datamodule=data)
        metrics = pd.read_csv(tmp_path / name / "metrics.csv")
        trained[name] = (model, trainer.global_step, metrics.drop(columns="step"))
    (ours, steps, metrics), (auto, auto_steps, auto_metrics) = trained.values()
    assert steps == auto_steps == 4 * len(data.train_dataloader())  # batches
    pd.testing.assert_frame_equal(metrics, auto_metrics)
    for a, b in zip(ours.parameters(), auto.parameters(), strict=True):
        assert torch.equal(a, b)


def test_fast_dev_run_takes_one_step_of_a_pass(tiny_cohort, folds, tiny_config, out):
    model = train_fold(tiny_cohort, folds, 0, tiny_config, out, fast_dev_run=True)
    assert model.trainer.global_step == 1


def test_training_reduces_the_loss(tiny_cohort, folds, tiny_config, out):
    config = {**tiny_config, "train": {**tiny_config["train"], "epochs": 30}}
    train_fold(tiny_cohort, folds, 0, config, out)
    val = pd.read_csv(out / "metrics.csv")["val/loss"].dropna().to_numpy()
    assert val[-1] < val[0]


def test_scaling_uses_training_patients_only(tiny_cohort, folds, tiny_config, out):
    config = {
        **tiny_config,
        "model": {
            **tiny_config["model"],
            "standardize_measurements": True,
            "standardize_covariates": True,
        },
    }
    model = train_fold(tiny_cohort, folds, 0, config, out, fast_dev_run=True)
    held = folds["fold"].to_numpy() == 0
    train = tiny_cohort.subset(tiny_cohort.index_of(folds["patient_id"][~held]))
    np.testing.assert_allclose(
        model.core.z_mean.numpy(), train.baseline.mean(0), rtol=1e-5, atol=1e-6
    )
    x = train.values[train.observed & train.visits[..., None]].reshape(-1)
    assert model.core.x_mean.numpy().mean() == pytest.approx(x.mean(), rel=1e-4)


def test_predict_fold_tables(tiny_cohort, folds, tiny_config, out):
    train_fold(tiny_cohort, folds, 0, tiny_config, out)
    inner = make_folds(tiny_cohort.patient_ids, 2, seed=0, inner_fraction=0.25)
    assert inner["fold"].equals(folds["fold"])
    tables = predict_fold(
        str(out / "model.ckpt"), tiny_cohort, inner, 0, 0.5, {"x1": "log1p"}
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
    chosen = selection.loc[selection["selected"], "predictor"].item()
    by_method = model_units.set_index(
        ["method", "horizon", "patient_id", "visit"]
    ).sort_index()
    np.testing.assert_array_equal(
        by_method.loc["odevae_selected", "predicted"],
        by_method.loc[chosen, "predicted"],
    )
    # without an inner split nothing is chosen: odevae_selected is odevae
    plain = predict_fold(str(out / "model.ckpt"), tiny_cohort, folds, 0, 0.5, {})
    assert (plain["selection"]["scored_on"] == "none").all()
    pred = plain["predictions"].query("units == 'model'")
    pred = pred.set_index(
        ["method", "horizon", "patient_id", "visit", "variable"]
    ).sort_index()
    np.testing.assert_array_equal(
        pred.loc["odevae_selected", "predicted"], pred.loc["odevae", "predicted"]
    )


def test_a_non_finite_loss_stops_training_with_the_fold_and_causes(
    tiny_cohort, folds, tiny_config, out
):
    config = {**tiny_config, "train": {**tiny_config["train"], "lr": 1.0e10}}
    with pytest.raises(InputError, match=r"fold 1, epoch 0: the training loss is"):
        train_fold(tiny_cohort, folds, 1, config, out)
    assert not (out / "model.ckpt").exists()


def test_no_step_is_taken_from_a_non_finite_loss(
    tiny_cohort, folds, tiny_config, tmp_path
):
    """Inside a pass, training halts at the first non-finite loss, before its
    backward and optimiser step: the weights stay finite and the fit ends."""
    train_ids, val_ids = fold_members(folds, 1)
    L.seed_everything(0, verbose=False)
    model = build_model(tiny_cohort, tiny_config["model"], tiny_config["loss"], 1e10)
    trainer = make_trainer(tmp_path / "nan", 5, accelerator="cpu")
    data = CohortDataModule(tiny_cohort, train_ids, val_ids, 2, 0)
    trainer.fit(model, datamodule=data)
    steps_per_pass = -(-len(train_ids) // 2)
    assert trainer.global_step < 5 * steps_per_pass
    assert not np.isfinite(trainer.callback_metrics["train/loss"].item())
    assert all(torch.isfinite(p).all() for p in model.parameters())


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_the_training_log_is_a_short_record_and_the_bar_stays_on_the_terminal(
    tiny_cohort, folds, tiny_config, out, tmp_path, monkeypatch
):
    # As in the workflow: a job started from a terminal, its output sent to a log.
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "__stdout__", terminal)
    # as in a job: Lightning's records reach the log (its terminal handler is
    # pytest's capture here, which the job would reroute), and no filter is left
    # on its logger by an earlier test
    for name in ("lightning", "lightning.pytorch"):
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
    tips = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    monkeypatch.setattr(tips, "filters", [])
    restarts = {"n": 2, "probe_epochs": 2}  # the probes' trainers log too
    train = {**tiny_config["train"], "epochs": 150, "restarts": restarts}
    # more latent dimensions than the cohort's 4 measurements: built with 4
    model = {**tiny_config["model"], "latent_dim": 9}
    config = {**tiny_config, "train": train, "model": model}
    job = SimpleNamespace(log=[str(tmp_path / "fold_1.log")], threads=1)
    run_script(
        job, lambda _: train_fold(tiny_cohort, folds, 1, config, out, progress_bar=True)
    )
    text = (tmp_path / "fold_1.log").read_text()
    assert "\r" not in text and "it/s" not in text  # no progress bar redraws
    assert len(text.encode()) < 10_000
    assert "Epoch 149" in terminal.getvalue()  # the bar was drawn, elsewhere
    assert "latent space has 4 dimension(s), one per measurement of the" in text
    assert "linear_diagonal, latent dim 4, initial_value loss" in text  # as built
    assert "10 training and 10 validation (the held-out fold) patients" in text
    final = pd.read_csv(out / "metrics.csv")["train/loss"].dropna().iloc[-1]
    assert f"trained 150 epochs; final train/loss {final:.6g}," in text
    assert f"epoch 150/150: train/loss {final:.6g}" in text
    assert f"to {out}" in text
    for noise in ("Tip:", "LeafSpec", "srun", "Warning"):
        assert noise not in text, noise


def test_early_stopping_logs_the_best_epoch(tiny_cohort, folds, tiny_config, out):
    stop = {"inner_fraction": 0.3, "patience": 2}
    train = {**tiny_config["train"], "epochs": 60, "lr": 0.05, "early_stopping": stop}
    job = SimpleNamespace(log=[str(out.parent / "fold_0.log")], threads=1)
    inner = make_folds(tiny_cohort.patient_ids, 2, seed=0, inner_fraction=0.3)
    run_script(
        job,
        lambda _: train_fold(
            tiny_cohort, inner, 0, {**tiny_config, "train": train}, out
        ),
    )
    text = (out.parent / "fold_0.log").read_text()
    val = pd.read_csv(out / "metrics.csv")[["epoch", "val/loss"]].dropna()
    epochs = int(val["epoch"].max()) + 1
    assert epochs < 60  # it did stop early
    assert f"trained {epochs} epochs" in text
    best = val.loc[val["val/loss"].idxmin()]
    assert (
        f"best inner validation loss {best['val/loss']:.6g} at epoch "
        f"{int(best['epoch']) + 1} (metrics.csv epoch {int(best['epoch'])})" in text
    )
    assert "7 training and 3 validation (inner, from the training folds)" in text


def test_restarts_start_from_the_initialisation_with_the_lowest_probe_loss(
    tiny_cohort, folds, tiny_config, tmp_path, caplog
):
    train = {**tiny_config["train"], "restarts": {"n": 3, "probe_epochs": 2}}
    config = {**tiny_config, "train": train}
    with caplog.at_level("INFO", logger="odevae.train.training"):
        train_fold(tiny_cohort, folds, 1, config, tmp_path / "a")
    line = next(r.message for r in caplog.records if "initialisations" in r.message)
    probed = re.search(r"training losses (.*); training starts from seed (\d+)", line)
    losses = [float(x) for x in probed.group(1).split(", ")]
    seeds = candidate_seeds(tiny_config["seed"] + 1, 3)
    assert len(set(losses)) == 3  # three different starts
    assert int(probed.group(2)) == seeds[int(np.argmin(losses))]
    # the choice and the training from it are reproducible
    train_fold(tiny_cohort, folds, 1, config, tmp_path / "b")
    first, again = (pd.read_csv(tmp_path / k / "metrics.csv") for k in "ab")
    pd.testing.assert_frame_equal(first, again)


@pytest.mark.parametrize("kind", ["initial_value", "statistical"])
def test_a_single_score_trains_with_the_ode_on_the_score(
    tiny_cohort, folds, tiny_config, out, kind
):
    """The identity autoencoder (``model.autoencoder: auto``, p = 1) trains with
    either loss and the history encoder, and its predictions load and run."""
    single = dataclasses.replace(
        tiny_cohort,
        values=tiny_cohort.values[..., :1],
        observed=tiny_cohort.observed[..., :1],
        measurement_names=tiny_cohort.measurement_names[:1],
    )
    config = {
        **tiny_config,
        "model": {**tiny_config["model"], "autoencoder": "auto", "history": "gru"},
        "loss": {**tiny_config["loss"], "kind": kind},
        "train": {**tiny_config["train"], "epochs": 3},
    }
    model = train_fold(single, folds, 0, config, out)
    assert type(model.core.encoder).__name__ == "IdentityEncoder"
    loss = pd.read_csv(out / "metrics.csv")["train/loss"].dropna()
    assert np.isfinite(loss).all()
    tables = predict_fold(str(out / "model.ckpt"), single, folds, 0, 0.5, {})
    assert np.isfinite(tables["predictions"]["predicted"]).all()
