"""Where a fold trains: ``train.accelerator: auto`` picks the CPU for small batches.

A training step of the ODE-VAE is a few hundred small kernels. On a GPU it is bound
by the host launching them: one step took 6.4 ms on an H200 whatever the batch up to
512 patients (GPU busy 7 %), while on one CPU core a step of 512 patients × 11
visits took 6.1 ms (``benchmarks/cost.py``, n = 5000) and smaller batches take
proportionally less. The default workflow (8 patients a batch) trained a fold in
~40 s on the GPU against ~11 s on 2 CPU cores. So ``auto`` uses a GPU only when a
training batch holds at least :data:`GPU_MIN_BATCH_CELLS` patient-visits, where the
GPU step is no slower than the CPU's; ``benchmarks/gpu.py`` measures the crossover
on a given machine.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

#: Patient-visits (patients in a training batch × padded visits) from which
#: ``train.accelerator: auto`` trains on a GPU: 512 × 11, the batch at which one
#: CPU core's step (6.1 ms) caught up with a GPU's host-bound step (6.4 ms, H200).
GPU_MIN_BATCH_CELLS = 512 * 11


def gpu_available() -> bool:
    """Whether Lightning's ``auto`` would find a GPU (CUDA or Apple MPS)."""
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available())


def choose_accelerator(
    setting: str, batch_patients: int, visits: int, fold: int | None = None
) -> str:
    """The Lightning accelerator for ``train.accelerator`` = ``setting`` and training
    batches of ``batch_patients`` patients padded to ``visits`` visits; ``auto``
    becomes ``cpu`` without a GPU or below :data:`GPU_MIN_BATCH_CELLS`. The choice
    and its reason are logged."""
    prefix = "" if fold is None else f"fold {fold}: "
    if setting != "auto":
        log.info("%strains on %s (train.accelerator %s)", prefix, setting, setting)
        return setting
    if not gpu_available():
        log.info("%strains on the CPU (train.accelerator auto: no GPU)", prefix)
        return "cpu"
    cells = batch_patients * visits
    if cells < GPU_MIN_BATCH_CELLS:
        log.info(
            "%strains on the CPU although a GPU is present (train.accelerator auto): "
            "a batch of %d patients x %d visits = %d patient-visits is below %d "
            "(odevae.train.device.GPU_MIN_BATCH_CELLS), where a GPU step, bound by "
            "launching its kernels, is slower than a CPU step",
            prefix,
            batch_patients,
            visits,
            cells,
            GPU_MIN_BATCH_CELLS,
        )
        return "cpu"
    log.info(
        "%strains on the GPU (train.accelerator auto): a batch of %d patients x %d "
        "visits = %d patient-visits, at least %d",
        prefix,
        batch_patients,
        visits,
        cells,
        GPU_MIN_BATCH_CELLS,
    )
    return "auto"
