"""Several initialisations, one training: choose the start by a short probe.

A small ODE-VAE can settle in a poor basin from an unlucky initialisation (on the
default simulation, a fold whose growing group is learned as decaying). With
``train.restarts.n`` > 1, each candidate initialisation (seeds ``seed``,
``seed + 1000``, ...) trains for ``train.restarts.probe_epochs`` epochs (capped at
``train.restarts.probe_max_steps`` optimiser steps, :mod:`odevae.train.scale`), and
the fold's training then starts from the one with the lowest training loss. Only
the training patients enter the choice. The log gets a line per probe (and at
least one a minute) with the time spent on the probes and the time left.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import lightning as L

from odevae.model.module import ODEVAE
from odevae.train.callbacks import Clock, EpochLog, drop_lightning_tips

#: Distance between the seeds of successive candidate initialisations.
SEED_STRIDE = 1000


def candidate_seeds(seed: int, n: int) -> list[int]:
    """The seeds of ``n`` candidate initialisations of a fold trained with ``seed``."""
    return [seed + SEED_STRIDE * k for k in range(n)]


def probe_loss(
    model: ODEVAE,
    data: L.LightningDataModule,
    epochs: int,
    accelerator: str,
    deterministic: bool,
    callbacks: Sequence = (),
) -> float:
    """The training loss of ``model`` after ``epochs`` epochs (no validation, no
    files written); infinite when it is not finite."""
    drop_lightning_tips()
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=1,
        deterministic=deterministic,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
    )
    trainer.fit(model, datamodule=data)
    loss = float(trainer.callback_metrics.get("train/loss", math.inf))
    return loss if math.isfinite(loss) else math.inf


def choose_initialisation(
    new_model: Callable[[], ODEVAE],
    data: L.LightningDataModule,
    seeds: Sequence[int],
    epochs: int,
    accelerator: str,
    deterministic: bool,
    callbacks: Sequence = (),
    fold: int = 0,
) -> tuple[int, list[float]]:
    """Probe one initialisation per seed (``new_model`` after seeding everything)
    and return the seed with the lowest probe loss (the first on ties) and every
    probe's loss. Each probe's progress is logged for ``fold``."""
    losses = []
    clock = Clock(len(seeds) * epochs)
    for k, seed in enumerate(seeds):
        L.seed_everything(seed, workers=True, verbose=False)
        progress = EpochLog(
            fold,
            epochs,
            lines=1,
            label=f"restart probe {k + 1}/{len(seeds)} (seed {seed})",
            clock=clock,
            offset=k * epochs,
        )
        losses.append(
            probe_loss(
                new_model(),
                data,
                epochs,
                accelerator,
                deterministic,
                [*callbacks, progress],
            )
        )
    best = min(range(len(seeds)), key=losses.__getitem__)
    return seeds[best], losses
