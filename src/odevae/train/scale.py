"""How much work a fold's training is, and the settings that scale with it.

An epoch is one pass over the fold's training patients: ``ceil(patients /
train.batch_size)`` optimiser steps with random batches, one per patient with
similarity batches. A registry-sized cohort (9,000 training patients in batches
of 8) has about 1,100 steps per epoch, 30 to 100 times a shipped preset's, so
settings counted in epochs are capped in optimiser steps:

* each restart probe trains ``min(probe_epochs, max(1, floor(probe_max_steps /
  steps per epoch)))`` epochs (``train.restarts.probe_max_steps``);
* early stopping waits ``min(patience, max(1, ceil(patience_max_steps / steps per
  epoch)))`` epochs (``train.early_stopping.patience_max_steps``).

Below the caps (every shipped preset) the settings are taken as they are.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from odevae.data.cohort import Cohort

log = logging.getLogger("odevae.train.training")  # one logger for a run's lines

#: The schema's defaults, for configs (library callers) that leave the keys out.
PROBE_MAX_STEPS = 2000
PATIENCE_MAX_STEPS = 10000


def steps_per_epoch(patients: int, batching: str, batch_size: int) -> int:
    """Optimiser steps of one epoch over ``patients`` training patients."""
    if batching == "similarity":
        return patients
    return math.ceil(patients / batch_size)


def probe_epochs(setting: int, max_steps: int, steps: int) -> int:
    """Epochs of each restart probe: ``setting``, but at most ``max_steps``
    optimiser steps (and at least one epoch)."""
    return min(setting, max(1, max_steps // steps))


def patience_epochs(setting: int, max_steps: int, steps: int) -> int:
    """Epochs without improvement before early stopping: ``setting``, but no more
    than needed to cover ``max_steps`` optimiser steps (and at least one)."""
    return min(setting, max(1, math.ceil(max_steps / steps)))


def workload(train: Cohort, steps: int) -> str:
    """The training patients' visits and the optimiser steps per epoch, in words."""
    visits = train.visits.sum(1)
    if not len(visits):
        return "no training patients"
    return (
        f"{len(visits)} training patients with {int(visits.sum())} visits "
        f"({int(visits.min())}-{int(visits.max())} per patient, median "
        f"{np.median(visits):g}), "
        f"{steps} optimiser steps per epoch"
    )


def capped(name: str, setting: int, value: int, key: str, cap: int, steps: int) -> str:
    """Log text for a setting in epochs capped at ``cap`` optimiser steps (``key``)
    with ``steps`` steps per epoch."""
    if value == setting:
        return (
            f"{name} {value} epochs ({value * steps} optimiser steps, within "
            f"{key} {cap})"
        )
    return (
        f"{name} {value} epochs, not {setting}: {key} {cap} caps it in optimiser "
        f"steps and an epoch is {steps} steps"
    )


def scaled_settings(
    fold: int, train_cfg: dict, train: Cohort, probes: bool, inner: bool
) -> tuple[int, int]:
    """A fold's restart probe epochs and early-stopping patience for the training
    patients ``train``, with the workload logged, and each setting that applies
    (``probes``: restarts are probed; ``inner``: early stopping)."""
    steps = steps_per_epoch(
        len(train.patient_ids), train_cfg["batching"], train_cfg["batch_size"]
    )
    log.info("fold %d: %s", fold, workload(train, steps))
    restarts, stopping = train_cfg["restarts"], train_cfg["early_stopping"]
    probe_cap = restarts.get("probe_max_steps", PROBE_MAX_STEPS)
    patience_cap = stopping.get("patience_max_steps", PATIENCE_MAX_STEPS)
    settings = [
        (
            probes,
            "restart probes:",
            restarts["probe_epochs"],
            probe_epochs(restarts["probe_epochs"], probe_cap, steps),
            "train.restarts.probe_max_steps",
            probe_cap,
        ),
        (
            inner,
            "early stopping: patience",
            stopping["patience"],
            patience_epochs(stopping["patience"], patience_cap, steps),
            "train.early_stopping.patience_max_steps",
            patience_cap,
        ),
    ]
    for used, name, setting, value, key, cap in settings:
        if used:
            log.info("fold %d: %s", fold, capped(name, setting, value, key, cap, steps))
    return settings[0][3], settings[1][3]


#: Training patients up to which ``train.batch_size: auto`` is 8 and
#: ``train.batching: auto`` random (every shipped preset); above it a cohort is
#: large: batches grow to keep an epoch within :data:`MAX_STEPS_PER_EPOCH` steps
#: and are bucketed by visit count.
LARGE_COHORT_PATIENTS = 1024
MAX_STEPS_PER_EPOCH = 128
SMALL_BATCH = 8


def batch_plan(patients: int, batch_size, batching: str) -> tuple[int, str]:
    """The batch size and batching of ``train.batch_size`` / ``train.batching``
    (each an int / kind or ``auto``) for a fold with ``patients`` training
    patients (those the optimiser steps over)."""
    large = patients > LARGE_COHORT_PATIENTS
    if batch_size == "auto":
        batch_size = SMALL_BATCH
        while large and math.ceil(patients / batch_size) > MAX_STEPS_PER_EPOCH:
            batch_size *= 2
    if batching == "auto":
        batching = "bucketed" if large else "random"
    return int(batch_size), batching


def resolve_batches(fold: int, train_cfg: dict, patients: int) -> dict:
    """``train_cfg`` with its batch size and batching resolved for ``patients``
    training patients (:func:`batch_plan`), logged where ``auto`` chose."""
    size, kind = batch_plan(patients, train_cfg["batch_size"], train_cfg["batching"])
    automatic = "auto" in (train_cfg["batch_size"], train_cfg["batching"])
    if automatic and kind != "similarity":
        log.info(
            "fold %d: %s batches of %d patients (train.batch_size %s, "
            "train.batching %s: %d training patients, %s)",
            fold,
            kind,
            size,
            train_cfg["batch_size"],
            train_cfg["batching"],
            patients,
            f"above {LARGE_COHORT_PATIENTS}, an epoch of at most "
            f"{MAX_STEPS_PER_EPOCH} steps"
            if patients > LARGE_COHORT_PATIENTS
            else f"at most {LARGE_COHORT_PATIENTS}",
        )
    return {**train_cfg, "batch_size": size, "batching": kind}
