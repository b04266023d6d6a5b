"""Fit the ODE-VAE on one cross-validation fold with Lightning."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import (
    EarlyStopping,
    ModelCheckpoint,
)
from lightning.pytorch.loggers import CSVLogger

from odevae.config_schema import standardize_measurements
from odevae.data.cohort import Cohort
from odevae.data.folds import fitted_and_validation, has_inner_split
from odevae.model.module import ODEVAE
from odevae.train.callbacks import (
    EpochLog,
    StopOnNonFinite,
    TerminalProgressBar,
    drop_lightning_tips,
    terminal,
    third_party_noise_filtered,
)
from odevae.train.data import CohortDataModule, binary_measurements, scaling_stats
from odevae.train.device import choose_accelerator
from odevae.train.model_setup import (
    build_model,
    divergence_hints,
    resolve_time_scale,
)
from odevae.train.restarts import candidate_seeds, choose_initialisation
from odevae.train.scale import resolve_batches, scaled_settings
from odevae.train.similarity import RebuildSimilarityBatches, SimilarityDataModule

log = logging.getLogger(__name__)


def make_trainer(
    out_dir: str | Path,
    epochs: int,
    accelerator: str = "auto",
    deterministic: bool = True,
    progress_bar: bool = False,
    callbacks: list | None = None,
    fast_dev_run: bool = False,
    patience: int | None = None,
) -> L.Trainer:
    """The workflow's Trainer: per-epoch ``metrics.csv``, ``hparams.yaml`` and
    ``model.ckpt`` in ``out_dir``. Without ``patience``: the last epoch's model.
    With ``patience``: early stopping on ``val/loss`` (which must then be an inner
    validation set of training patients, never held-out data) and the best epoch's
    model. ``progress_bar``: Lightning's bar, on the terminal only (none without
    one)."""
    out_dir = Path(out_dir)
    drop_lightning_tips()
    screen = terminal() if progress_bar else None
    bar = [] if screen is None else [TerminalProgressBar(screen, patience is not None)]
    if patience is None:
        selection = [
            ModelCheckpoint(
                dirpath=out_dir,
                filename="model",
                save_top_k=1,
                monitor=None,
                every_n_epochs=epochs,  # only the last epoch's model
                enable_version_counter=False,
            )
        ]
    else:
        selection = [
            EarlyStopping(monitor="val/loss", mode="min", patience=patience),
            ModelCheckpoint(
                dirpath=out_dir,
                filename="model",
                save_top_k=1,
                monitor="val/loss",
                mode="min",
                enable_version_counter=False,
            ),
        ]
    return L.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=1,
        deterministic=deterministic,
        logger=CSVLogger(save_dir=out_dir, name="", version=""),
        callbacks=[*(callbacks or []), *selection, *bar],
        default_root_dir=out_dir,
        enable_progress_bar=screen is not None,
        enable_model_summary=False,
        log_every_n_steps=1,
        fast_dev_run=fast_dev_run,
    )


def train_fold(
    cohort: Cohort,
    folds: pd.DataFrame,
    fold: int,
    config: dict,
    out_dir: str | Path,
    fast_dev_run: bool = False,
    groups: Mapping | None = None,
    progress_bar: bool | None = None,
) -> ODEVAE:
    """Train on all folds but ``fold``.

    Writes ``metrics.csv`` (per-epoch ``train/*`` and ``val/*``) and ``model.ckpt``
    to ``out_dir``. Without early stopping (``train.early_stopping.inner_fraction``
    0) ``val/*`` is the held-out fold, for the record only, and the model is the
    last epoch's. With it, a seeded share of the training patients is an inner
    validation set: ``val/*`` is theirs, training stops after ``patience`` epochs
    without improvement and the best epoch's model is kept; the held-out fold is
    not seen. Seeds everything from ``config['seed']`` and the fold.
    ``train.batching`` picks random mini-batches or similarity batches; with the
    latter, ``groups`` (patient id → true group) adds ``train/batch_purity``.
    ``progress_bar`` (default ``train.progress_bar``, else none) draws Lightning's
    bar on the terminal; the log gets a line per tenth of the epochs instead.
    """
    model_cfg, train_cfg = config["model"], config["train"]
    seed = config["seed"] + fold
    L.seed_everything(seed, workers=True)
    stopping = train_cfg["early_stopping"]
    inner = stopping["inner_fraction"] > 0
    train_ids, val_ids = fitted_and_validation(folds, fold)
    if inner != has_inner_split(folds, fold):
        raise ValueError(
            f"train.early_stopping.inner_fraction is {stopping['inner_fraction']} "
            f"but the folds table has {'no' if inner else 'an'} inner split for "
            f"fold {fold}: make it with make_folds(..., inner_fraction)"
        )
    train_cfg = resolve_batches(fold, train_cfg, len(train_ids))
    callbacks = []
    if train_cfg["batching"] == "similarity":
        sim = train_cfg["similarity"]
        data = SimilarityDataModule(
            cohort,
            train_ids,
            val_ids,
            seed,
            sim["neighbours"],
            sim["bandwidth"],
            sim["times"],
            groups,
        )
        callbacks.append(RebuildSimilarityBatches(data))
    else:
        data = CohortDataModule(
            cohort,
            train_ids,
            val_ids,
            train_cfg["batch_size"],
            seed,
            bucketed=train_cfg["batching"] == "bucketed",
        )
    accelerator = choose_accelerator(
        train_cfg["accelerator"],
        min(data.batch_size, data.train.n),  # similarity: neighbours + 1
        data.train.visits.shape[1],
        fold,
    )
    time_scale = resolve_time_scale(model_cfg.get("time_scale", "auto"), data.train)
    hints = divergence_hints(data.train, config, time_scale)
    callbacks.append(StopOnNonFinite(fold, hints))
    callbacks.append(EpochLog(fold, train_cfg["epochs"], upper_bound=inner))
    binary = binary_measurements(data.train, model_cfg["binary_measurements"])
    scaling = scaling_stats(
        data.train,
        standardize_measurements(config),
        model_cfg["standardize_covariates"],
        binary,
    )

    def new_model() -> ODEVAE:
        model = build_model(
            cohort, model_cfg, config["loss"], train_cfg["lr"], binary, time_scale
        )
        model.set_scaling(*scaling)
        return model

    restarts = train_cfg["restarts"]
    probes = restarts["n"] > 1 and not fast_dev_run
    probing, patience = scaled_settings(fold, train_cfg, data.train, probes, inner)
    if probes:
        with third_party_noise_filtered():
            init, losses = choose_initialisation(
                new_model,
                data,
                candidate_seeds(seed, restarts["n"]),
                probing,
                accelerator,
                train_cfg["deterministic"],
                [c for c in callbacks if isinstance(c, RebuildSimilarityBatches)],
                fold,
            )
        log.info(
            "fold %d: %d initialisations probed for %d epochs, training losses %s; "
            "training starts from seed %d",
            fold,
            restarts["n"],
            probing,
            ", ".join(f"{x:.5g}" for x in losses),
            init,
        )
        L.seed_everything(init, workers=True, verbose=False)
    model = new_model()
    if progress_bar is None:
        progress_bar = train_cfg.get("progress_bar", False)
    with third_party_noise_filtered():
        trainer = make_trainer(
            out_dir,
            train_cfg["epochs"],
            accelerator,
            train_cfg["deterministic"],
            progress_bar,
            callbacks,
            fast_dev_run,
            patience if inner else None,
        )
        log.info(
            "fold %d: the ODE runs in time / %.6g %s (model.time_scale %s)",
            fold,
            time_scale,
            cohort.time_unit,
            model_cfg.get("time_scale", "auto"),
        )
        log.info(
            "fold %d: training an ODE-VAE (system %s, latent dim %d, %s loss, "
            "%s batches) for %s%d epochs, lr %g, seed %d, on %s",
            fold,
            model_cfg["system"],
            model.hparams.model["latent_dim"],  # as built: at most p
            config["loss"]["kind"],
            train_cfg["batching"],
            "at most " if inner else "",
            train_cfg["epochs"],
            train_cfg["lr"],
            seed,
            trainer.strategy.root_device,
        )
        log.info(
            "fold %d: %d training and %d validation (%s) patients; "
            "Bernoulli likelihood for %s",
            fold,
            len(train_ids),
            len(val_ids),
            "inner, from the training folds" if inner else "the held-out fold",
            [str(n) for n, b in zip(cohort.measurement_names, binary, strict=True) if b]
            or "no measurement",
        )
        trainer.fit(model, datamodule=data)
    if fast_dev_run:
        return model
    final = trainer.callback_metrics
    log.info(
        "fold %d: trained %d epochs; final train/loss %.6g, val/loss %.6g",
        fold,
        trainer.current_epoch,
        float(final["train/loss"]),
        float(final["val/loss"]),
    )
    kept = f"epoch {trainer.current_epoch}, the last"
    if inner:
        best = trainer.checkpoint_callback
        epoch = torch.load(best.best_model_path, map_location="cpu", weights_only=False)
        kept = f"epoch {epoch['epoch'] + 1}, the best"
        log.info(
            "fold %d: early stopping: best inner validation loss %.6g at epoch %d "
            "(metrics.csv epoch %d)",
            fold,
            float(best.best_model_score),
            epoch["epoch"] + 1,
            epoch["epoch"],
        )
        model = ODEVAE.load_from_checkpoint(best.best_model_path, map_location="cpu")
    log.info(
        "fold %d: wrote model.ckpt (model of %s), metrics.csv and hparams.yaml to %s",
        fold,
        kept,
        out_dir,
    )
    return model
