"""A fold's batches for training: the DataModule, and the scaling and likelihood
settings computed from its training patients.

The padded patients and their collate are :mod:`odevae.data.batching`'s.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from odevae.data.batching import CohortDataset
from odevae.data.cohort import Cohort
from odevae.errors import InputError
from odevae.train.batches import (
    BucketedBatches,
    DeviceCohort,
    OnePass,
    Pass,
    ShuffledBatches,
    SingleBatch,
    SortedBatches,
)


def binary_measurements(cohort: Cohort, setting) -> list[bool]:
    """Which measurements get a Bernoulli likelihood (config
    ``model.binary_measurements``): ``auto``, those whose observed values in
    ``cohort`` (the training patients) are all 0 or 1 with both present; ``none``;
    or a list of names (each must exist)."""
    names = [str(n) for n in cohort.measurement_names]
    if setting == "none":
        return [False] * len(names)
    if setting == "auto":
        mask = cohort.observed & cohort.visits[..., None]
        flags = []
        for j in range(len(names)):
            seen = np.unique(cohort.values[..., j][mask[..., j]])
            flags.append(len(seen) == 2 and set(seen.tolist()) == {0.0, 1.0})
        return flags
    unknown = sorted(set(setting) - set(names))
    if unknown:
        raise InputError(
            f"unknown measurement(s) {unknown}; the cohort has {names}",
            key="model.binary_measurements",
        )
    return [name in setting for name in names]


def scaling_stats(
    cohort: Cohort,
    measurements: bool,
    covariates: bool,
    binary: list[bool] | None = None,
):
    """Scaling and imputation statistics of the training patients.

    Returns ``x_mean, x_std`` of the observed measurements and ``z_mean, z_std`` of
    the covariates (identity where standardisation is off), and ``z_fill``, the
    median of each covariate (0 where no value is observed) that replaces missing
    covariates (NaN) before scaling; ``z_mean``/``z_std`` are those of the filled
    covariates. A measurement no training patient has, or a ``binary`` one (a
    Bernoulli likelihood reads 0/1), keeps mean 0 and sd 1.
    Computed from ``cohort`` alone: pass the training patients only, so held-out
    patients never influence scaling or imputation.
    """
    p, q = cohort.p, cohort.q
    x_mean, x_std = np.zeros(p), np.ones(p)
    z_mean, z_std = np.zeros(q), np.ones(q)
    base = cohort.baseline
    seen = ~np.isnan(base)
    z_fill = np.zeros(q)
    for j in np.flatnonzero(seen.any(0)):
        z_fill[j] = np.median(base[seen[:, j], j])
    if measurements:
        mask = (cohort.observed & cohort.visits[..., None]).reshape(-1, p)
        values = cohort.values.reshape(-1, p)
        keep = mask.any(0) & ~np.asarray(binary or [False] * p, dtype=bool)
        for j in np.flatnonzero(keep):  # unobserved in training: left as is
            x_mean[j] = values[mask[:, j], j].mean()
            x_std[j] = values[mask[:, j], j].std()
    if covariates:
        filled = np.where(seen, base, z_fill)
        z_mean = filled.mean(0)
        z_std = filled.std(0)
    x_std = np.where(x_std > 0, x_std, 1.0)
    z_std = np.where(z_std > 0, z_std, 1.0)
    return x_mean, x_std, z_mean, z_std, z_fill


class CohortDataModule(L.LightningDataModule):
    """Training and held-out patients of one cross-validation fold.

    The padded patients move to the trainer's device once
    (:class:`~odevae.train.batches.DeviceCohort`); training batches are sliced
    there in the order a seeded shuffling ``DataLoader`` would give
    (:class:`~odevae.train.batches.ShuffledBatches`) or, ``bucketed``, grouped by
    visit count (:class:`~odevae.train.batches.BucketedBatches`), and validation
    is one batch of every held-out patient, built once (``bucketed``: batches of
    patients sorted by visit count, :class:`~odevae.train.batches.SortedBatches`).
    """

    def __init__(
        self,
        cohort: Cohort,
        train_ids,
        val_ids,
        batch_size: int = 8,
        seed: int = 0,
        bucketed: bool = False,
    ) -> None:
        super().__init__()
        self.train = cohort.subset(cohort.index_of(train_ids))
        self.val = cohort.subset(cohort.index_of(val_ids))
        self.batch_size = batch_size
        self.seed = seed
        self.bucketed = bucketed
        self._on_device: dict = {}

    @property
    def device(self) -> torch.device:
        """The attached trainer's device (the CPU without a trainer)."""
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer else torch.device("cpu")

    def on_device(self, split: str) -> DeviceCohort:
        """``train`` or ``val`` patients on :attr:`device`, copied once per device."""
        key = (split, str(self.device))
        if key not in self._on_device:
            cohort = self.train if split == "train" else self.val
            tensors = CohortDataset(cohort).tensors
            self._on_device[key] = DeviceCohort(tensors, self.device)
        return self._on_device[key]

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        """Batches are sliced on the device already: passed through without
        Lightning's walk over the batch (a per-step cost on small batches), as is
        a training pass (its batches are sliced on the device as it runs)."""
        if isinstance(batch, Pass) or (
            isinstance(batch, dict) and batch["index"].device == device
        ):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def train_dataloader(self) -> OnePass:
        """Each pass over the training patients as one item
        (:class:`~odevae.train.batches.OnePass`) of seeded shuffled (or bucketed)
        batches."""
        generator = torch.Generator().manual_seed(self.seed)
        kind = BucketedBatches if self.bucketed else ShuffledBatches
        return OnePass(kind(self.on_device("train"), self.batch_size, generator))

    def val_dataloader(self) -> SingleBatch | SortedBatches:
        if self.bucketed:
            return SortedBatches(self.on_device("val"), self.batch_size)
        return SingleBatch(self.on_device("val"))

    def predict_dataloader(self) -> SingleBatch | SortedBatches:
        return self.val_dataloader()
