"""BJ 2022's similarity-weighted batches: each patient trains with its neighbours.

At every epoch start each training patient's latent trajectory is solved from its
first-visit encoder mean μ0 with its current ODE parameters at fixed times. A
patient's batch is itself and its k nearest neighbours by trajectory distance, each
weighted by a normalised tricube kernel of distance / bandwidth; the batch loss is
the weighted sum of per-patient losses (``batch["weight"]``, see
:meth:`odevae.model.module.ODEVAE.loss_terms`). An epoch takes one optimiser step per
training patient, in an order shuffled with the fold's seed.

The trajectories, distances, neighbour batches and weights are
:mod:`odevae.model.neighbours`'; :class:`SimilarityDataModule` and the
:class:`RebuildSimilarityBatches` callback connect them to Lightning.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import Sampler

from odevae.data.batching import CohortDataset
from odevae.data.cohort import Cohort
from odevae.errors import InputError
from odevae.model.neighbours import (
    batch_purity,
    batch_weights,
    latent_trajectories,
    neighbour_batches,
    trajectory_distances,
)
from odevae.train.batches import DeviceCohort, OnePass, _loader_seed
from odevae.train.data import CohortDataModule


class NeighbourBatchSampler(Sampler[list[int]]):
    """Batch sampler: every patient's neighbour batch once per epoch, seeded order.

    :meth:`update` sets the batches and weights (before each epoch);
    :class:`NeighbourBatches` slices them with their own patient's weights.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.generator = torch.Generator().manual_seed(seed)
        self.batches: np.ndarray | None = None
        self.weights: np.ndarray | None = None

    def update(self, batches: np.ndarray, weights: np.ndarray) -> None:
        self.batches, self.weights = batches, weights

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[list[int]]:
        if self.batches is None:
            raise RuntimeError("similarity batches are iterated before being built")
        for i in torch.randperm(self.n, generator=self.generator).tolist():
            yield self.batches[i].tolist()


class NeighbourBatches:
    """The sampler's neighbour batches sliced from a :class:`DeviceCohort`, with
    ``weight`` (the weights of the batch's own patient, its first index) on the same
    device: the batches a ``DataLoader(batch_sampler=sampler)`` would collate,
    drawing the same random numbers."""

    def __init__(self, cohort: DeviceCohort, sampler: NeighbourBatchSampler) -> None:
        self.cohort, self.sampler = cohort, sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[dict]:
        if self.sampler.batches is None:
            raise RuntimeError("similarity batches are iterated before being built")
        device = self.cohort.device
        weights = torch.as_tensor(self.sampler.weights, dtype=torch.float32)
        weights = weights.to(device)
        batches = torch.as_tensor(self.sampler.batches).to(device)
        _loader_seed()
        for indices in self.sampler:
            own = indices[0]
            batch = self.cohort.batch(batches[own], np.asarray(indices))
            batch["weight"] = weights[own]
            yield batch


class SimilarityDataModule(CohortDataModule):
    """A fold's patients with similarity batches for training.

    ``groups`` (patient id → group label, simulated cohorts only) enables
    :meth:`rebuild`'s batch purity.
    """

    def __init__(
        self,
        cohort: Cohort,
        train_ids,
        val_ids,
        seed: int = 0,
        neighbours: int = 9,
        bandwidth: float = 1.0,
        times: Sequence[float] = tuple(range(1, 11)),
        groups: Mapping | None = None,
    ) -> None:
        super().__init__(cohort, train_ids, val_ids, neighbours + 1, seed)
        n = self.train.n
        if neighbours >= n:
            raise InputError(
                f"{neighbours} neighbours per batch need more than {neighbours} "
                f"training patients, found {n}",
                key="train.similarity.neighbours",
            )
        self.neighbours, self.bandwidth, self.times = neighbours, bandwidth, times
        self.dataset = CohortDataset(self.train)
        self.batches = NeighbourBatchSampler(n, seed)
        self.groups = None
        if groups is not None:
            self.groups = np.array([groups[pid] for pid in self.train.patient_ids])

    def train_dataloader(self) -> OnePass:
        # each fit (a restart's probe, the training) draws the same batch order
        self.batches.generator.manual_seed(self.seed)
        return OnePass(NeighbourBatches(self.on_device("train"), self.batches))

    def rebuild(self, model) -> float | None:
        """Batches and weights from ``model``'s current trajectories.

        Returns the batch purity, or None without groups.
        """
        tensors = self.on_device("train").tensors
        trajectories = latent_trajectories(model, tensors, self.times)
        distances = trajectory_distances(trajectories)
        batches = neighbour_batches(distances, self.neighbours)
        weights = batch_weights(
            np.take_along_axis(distances, batches, 1), self.bandwidth
        )
        self.batches.update(batches, weights)
        if self.groups is None:
            return None
        return batch_purity(batches, self.groups)


class RebuildSimilarityBatches(Callback):
    """Rebuild a :class:`SimilarityDataModule`'s batches at every epoch start.

    Logs ``train/batch_purity`` when the data module knows the patients' groups.
    """

    def __init__(self, data: SimilarityDataModule) -> None:
        self.data = data

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module) -> None:
        purity = self.data.rebuild(pl_module)
        if purity is not None:
            pl_module.log_epoch_value("train/batch_purity", purity)
