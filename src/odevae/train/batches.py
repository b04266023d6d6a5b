"""Device-resident batches: the padded cohort moved to the training device once.

:class:`DeviceCohort` holds a cohort's padded tensors (those of
:class:`~odevae.data.batching.CohortDataset`) on one device; a batch is sliced there by
one gather per tensor, trimmed to the batch's largest visit count, with no
per-step collate or host-to-device copy. :class:`ShuffledBatches` iterates seeded
shuffled batches drawing exactly the random numbers of a ``DataLoader`` with
``shuffle=True`` and the same ``generator``, so its batches are those of
:func:`~odevae.data.batching.collate` under that loader, in the same order, and
training scores do not change.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch

#: Tensors with a visit axis, trimmed to the batch's largest visit count.
VISIT_KEYS = ("times", "values", "observed", "visits")


def _loader_seed(generator: torch.Generator | None = None) -> None:
    """Draw what a ``DataLoader`` draws from ``generator`` (the global generator
    without one) when an iteration starts: its workers' base seed. Drawn so that
    the random numbers of training (sampling noise included) stay those of the
    ``DataLoader`` path, and results those of earlier versions."""
    torch.empty((), dtype=torch.int64).random_(generator=generator)


class DeviceCohort:
    """Padded cohort tensors on ``device``; :meth:`batch` slices patients there.

    The visit counts stay on the host, so a batch's width needs no device
    synchronisation.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor], device="cpu") -> None:
        self.device = torch.device(device)
        self.tensors = {key: value.to(self.device) for key, value in tensors.items()}
        self.counts = tensors["visits"].sum(1).cpu().numpy()
        self.n = len(self.counts)

    def batch(self, index: torch.Tensor, host_index: np.ndarray | None = None) -> dict:
        """The patients at ``index`` (a tensor on this device or the host), padding
        trimmed to their largest visit count as :func:`collate` trims it.
        ``host_index``: the same positions as a host array (saves a copy back)."""
        if host_index is None:
            host_index = index.cpu().numpy()
        width = int(self.counts[host_index].max()) if len(host_index) else 0
        index = index.to(self.device, non_blocking=True)
        batch = {}
        for key, value in self.tensors.items():
            # gather whole rows, then trim: the layout collate gives (index_select
            # is about twice as fast as indexing with a tensor)
            value = value.index_select(0, index)
            batch[key] = value[:, :width] if key in VISIT_KEYS else value
        batch["index"] = index
        return batch

    def everyone(self) -> dict:
        """All patients as one batch (as ``collate`` of every item)."""
        return self.batch(torch.arange(self.n, device=self.device), np.arange(self.n))


class ShuffledBatches:
    """Shuffled batches of a :class:`DeviceCohort`, one pass per iteration.

    Per pass it draws what a ``DataLoader(shuffle=True, generator=generator)``
    read batch by batch (as Lightning reads it) draws from ``generator``: the
    loader's base seed, the sampler's permutation and, before a short last batch,
    the sampler's closing (empty) permutation; so the batches equal that loader's.
    The permutation moves to the device once per pass.
    """

    def __init__(
        self, cohort: DeviceCohort, batch_size: int, generator: torch.Generator
    ) -> None:
        self.cohort, self.batch_size, self.generator = cohort, batch_size, generator

    def __len__(self) -> int:
        return -(-self.cohort.n // self.batch_size)

    def __iter__(self) -> Iterator[dict]:
        n, size = self.cohort.n, self.batch_size
        _loader_seed(self.generator)
        order = torch.randperm(n, generator=self.generator)
        host = order.numpy()
        on_device = order.to(self.cohort.device)
        for start in range(0, n, size):
            if start + size > n:
                # a short last batch: the loader's sampler ran to its end, which
                # draws one more (empty) permutation
                torch.randperm(n, generator=self.generator)
            yield self.cohort.batch(
                on_device[start : start + size], host[start : start + size]
            )


class Pass:
    """One pass over the training patients: ``batches``, sliced as they are
    iterated. Not itself iterable, so Lightning never walks it (to move it to a
    device or to infer a batch size), which would draw the pass's random
    numbers twice."""

    def __init__(self, batches) -> None:
        self.batches = batches


class OnePass:
    """A training loader whose one item per pass is the pass (:class:`Pass` of
    ``batches``): :meth:`~odevae.model.module.ODEVAE.training_step` takes the
    pass's optimiser steps in one Lightning step."""

    def __init__(self, batches) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return int(len(self.batches) > 0)

    def __iter__(self) -> Iterator[Pass]:
        if len(self.batches):
            yield Pass(self.batches)


class SingleBatch:
    """One fixed batch per pass (validation: every patient at once); no batch
    for a cohort without patients."""

    def __init__(self, cohort: DeviceCohort) -> None:
        self.batch = cohort.everyone() if cohort.n else None

    def __len__(self) -> int:
        return int(self.batch is not None)

    def __iter__(self) -> Iterator[dict]:
        _loader_seed()
        if self.batch is not None:
            yield self.batch


class BucketedBatches(ShuffledBatches):
    """Batches of patients with similar visit counts, bounding the padding.

    Per pass, seeded by ``generator``: the patients are shuffled, stably sorted by
    their visit count (so patients with equal counts stay in random order), cut
    into consecutive batches of ``batch_size`` and the batches visited in a random
    order. Every patient is in exactly one batch per pass, as with
    :class:`ShuffledBatches`; a batch is padded to its own longest patient, which
    is close to its shortest (a registry's 2-256 visits per patient padded at
    random cost about ten times the visits themselves).
    """

    def __iter__(self) -> Iterator[dict]:
        n, size = self.cohort.n, self.batch_size
        shuffled = torch.randperm(n, generator=self.generator).numpy()
        order = shuffled[np.argsort(self.cohort.counts[shuffled], kind="stable")]
        starts = torch.randperm(len(self), generator=self.generator).numpy() * size
        on_device = torch.from_numpy(order).to(self.cohort.device)
        for start in starts:
            yield self.cohort.batch(
                on_device[start : start + size], order[start : start + size]
            )


class SortedBatches:
    """Fixed batches of patients sorted by visit count, built once (validation of
    a large cohort: every patient once per pass, each batch padded to about its
    own patients' visits instead of everyone padded to the longest patient). The
    epoch's loss is the batch-size-weighted mean, as over one batch; with a
    history encoder the seeded random history cuts are drawn per batch, so it is
    a loss on other (equally random, and fixed from epoch to epoch) cuts."""

    def __init__(self, cohort: DeviceCohort, batch_size: int) -> None:
        order = np.argsort(cohort.counts, kind="stable")
        on_device = torch.from_numpy(order).to(cohort.device)
        self.batches = [
            cohort.batch(
                on_device[start : start + batch_size], order[start:][:batch_size]
            )
            for start in range(0, cohort.n, batch_size)
        ]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict]:
        _loader_seed()
        yield from self.batches
