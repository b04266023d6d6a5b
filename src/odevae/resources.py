"""SLURM resources of a fold's training job, sized from the cohort.

A training job's time grows with its optimiser steps per epoch (each has a fixed
cost, which small batches are bound by) and the visits it passes over, times the
epochs it may train; its memory with the cohort's padded arrays. From the
preprocessed cohort when it exists (``cohort.npz``: its visits and array sizes),
else estimated from the config for simulated cohorts (their size is set there);
for a real cohort not yet preprocessed the size is unknown: :func:`training_size`
raises ``FileNotFoundError`` on the cohort file, which Snakemake shows as <TBD>
in a dry run and evaluates when the job is submitted, after preprocessing.

Per attempt (a retried job gets ``attempt`` times as much):

* runtime (minutes) = max(30, 10 + (SECONDS_PER_STEP · steps per epoch +
  SECONDS_PER_VISIT · training visits) · (train.epochs + restarts.n · probe
  epochs) / 60), the steps those of ``train.batch_size``/``batching`` (``auto``
  as :func:`~odevae.train.scale.batch_plan` resolves it);
* mem_mb = 1000 + 4 · the cohort's arrays in MB, in whole 100 MB.

Every shipped preset stays at the former fixed 30 minutes and about 1000 MB.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odevae.train.scale import (
    PROBE_MAX_STEPS,
    batch_plan,
    probe_epochs,
    steps_per_epoch,
)

#: Seconds per optimiser step and per training visit in an epoch, each about twice
#: what one CPU core took (for slower nodes): 9.3 ms per step at batch 8, where the
#: step's fixed cost dominates (a 15,000-patient cohort's fold: 1,500 steps over
#: 161,000 visits in 14 s), and 0.47 s per epoch of 75 bucketed batches of 128
#: over 128,000 visits, validation included (benchmarks/large_cohort.py).
SECONDS_PER_STEP, SECONDS_PER_VISIT = 0.02, 2e-6

#: The job's base memory (Python, torch, Lightning) and the fixed minimum time.
BASE_MB, BASE_MINUTES, MIN_MINUTES = 1000, 10, 30


@dataclass(frozen=True)
class CohortSize:
    """Patients, visits and the MB of the padded arrays of a cohort."""

    patients: int
    visits: int
    array_mb: float


def saved_size(path: str | Path) -> CohortSize:
    """The size of a cohort saved by :meth:`Cohort.save` (only ``visits`` is read;
    the other arrays' sizes come from their headers)."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            with archive.open(name) as member:
                version = np.lib.format.read_magic(member)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read(member)
            total += math.prod(shape) * dtype.itemsize
    with np.load(path, allow_pickle=False) as data:
        visits = data["visits"]
    return CohortSize(int(visits.shape[0]), int(visits.sum()), total / 1e6)


def simulated_size(config: dict) -> CohortSize | None:
    """The expected size of a simulated cohort from its config; None for a real
    cohort (sources table, smartcare)."""
    source = config["data"]["source"]
    if source == "simulate":
        sim = config["simulation"]
        n, p, q = sim["n"], sim["p"], sim["q"]
        most, mean = sim["maxntps"] + 1, (sim["minntps"] + sim["maxntps"]) / 2 + 1
    elif source == "simulate_registry":
        sim = config["registry"]["simulation"]
        n, p, q = sim["n"], 20, sim["q_info"] + 2
        most, mean = sim["maxntps"] + 1, (1 + sim["maxntps"]) / 2 + 1
    else:
        return None
    # values (float) and observed (bool) per measurement, times and visits
    cells = n * most * (p * 9 + 9) + n * q * 8
    return CohortSize(n, round(n * mean), cells / 1e6)


def training_size(cohort: str | Path, config: dict) -> CohortSize:
    """The cohort's size from ``cohort`` if it exists, else from the config."""
    if Path(cohort).exists():
        return saved_size(cohort)
    size = simulated_size(config)
    if size is None:
        raise FileNotFoundError(2, "not preprocessed yet", str(cohort))
    return size


def training_resources(size: CohortSize, config: dict) -> dict[str, int]:
    """``runtime`` (minutes) and ``mem_mb`` of one attempt of a fold's training."""
    train = config["train"]
    share = 1 - 1 / config["cv"]["folds"]
    patients = max(1, math.ceil(size.patients * share))
    epochs = train["epochs"]
    restarts = train["restarts"]
    # the batches are those of the patients the optimiser steps over: without
    # the inner validation share (auto resolved at parse time; as 0 otherwise)
    inner = train["early_stopping"]["inner_fraction"]
    fitted = patients * (1 - inner if isinstance(inner, int | float) else 1)
    fitted = max(1, math.ceil(fitted))
    batch, kind = batch_plan(fitted, train["batch_size"], train["batching"])
    steps = steps_per_epoch(fitted, kind, batch)
    if restarts["n"] > 1:
        cap = restarts.get("probe_max_steps", PROBE_MAX_STEPS)
        epochs += restarts["n"] * probe_epochs(restarts["probe_epochs"], cap, steps)
    per_epoch = SECONDS_PER_STEP * steps + SECONDS_PER_VISIT * size.visits * share
    seconds = per_epoch * epochs
    return {
        "runtime": max(MIN_MINUTES, math.ceil(BASE_MINUTES + seconds / 60)),
        "mem_mb": BASE_MB + 100 * math.floor(4 * size.array_mb / 100),
    }


#: Memory per visit of the cohort for a fold's prediction or comparators (MB), and
#: seconds per visit: about twice what a 15,000-patient cohort of 200,000 visits
#: took (predict 1.6 GB and 90 s, comparators 1.0 GB and 100 s; one CPU core).
EVALUATION_MB_PER_VISIT, EVALUATION_SECONDS_PER_VISIT = 0.01, 1e-3

#: The profile's defaults, which every shipped preset's predict and comparators
#: keep (their cohorts have at most a few thousand visits).
DEFAULT_MB, DEFAULT_MINUTES = 1000, 10


def evaluation_resources(size: CohortSize, models: int = 1) -> dict[str, int]:
    """``runtime`` (minutes) and ``mem_mb`` of one attempt of a fold's ``predict``
    or ``comparators`` job: the profile's defaults (10 minutes, 1000 MB) until
    the cohort's visits need more (every patient is predicted; a large cohort's
    prediction tables have millions of rows); ``models``: the models ``predict``
    averages (``tuning.ensemble``), each predicting every patient."""
    mb = EVALUATION_MB_PER_VISIT * size.visits * models
    seconds = EVALUATION_SECONDS_PER_VISIT * size.visits * models
    return {
        "runtime": max(DEFAULT_MINUTES, math.ceil(seconds / 60)),
        "mem_mb": DEFAULT_MB + 100 * math.floor(mb / 100),
    }
