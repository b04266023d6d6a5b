"""Device-resident batches equal the DataLoader + collate batches they replace,
with the same random numbers drawn, so training results do not change."""

from itertools import islice

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from odevae.data.batching import CohortDataset, collate
from odevae.data.folds import fold_members, make_folds
from odevae.train.batches import DeviceCohort, ShuffledBatches, SingleBatch
from odevae.train.data import CohortDataModule
from odevae.train.model_setup import build_model
from odevae.train.similarity import SimilarityDataModule


def assert_same_batch(new: dict, old: dict) -> None:
    assert set(new) == set(old)
    for key, value in old.items():
        assert new[key].dtype == value.dtype, key
        torch.testing.assert_close(new[key], value, rtol=0, atol=0, equal_nan=True)


def as_lightning_reads(loader) -> list[dict]:
    """One epoch read as Lightning reads it: ``len(loader)`` batches, no more."""
    return list(islice(iter(loader), len(loader)))


@pytest.mark.parametrize("batch_size", [3, 4, 7, 100])
def test_shuffled_batches_equal_the_collated_loader(tiny_cohort, batch_size):
    n = tiny_cohort.n
    assert n % 4 == 0 and n % 3 != 0  # full and short last batches both occur
    dataset = CohortDataset(tiny_cohort)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(5),
        collate_fn=collate,
    )
    generator = torch.Generator().manual_seed(5)
    batches = ShuffledBatches(DeviceCohort(dataset.tensors), batch_size, generator)
    assert len(batches) == len(loader)
    for _ in range(3):  # reshuffled every epoch, as the loader reshuffles
        old, new = as_lightning_reads(loader), as_lightning_reads(batches)
        assert len(new) == len(old)
        for a, b in zip(new, old, strict=True):
            assert_same_batch(a, b)
    # the generator is left where the loader leaves its own
    assert torch.equal(generator.get_state(), loader.generator.get_state())


def test_batches_are_trimmed_to_their_longest_patient(tiny_cohort):
    cohort = DeviceCohort(CohortDataset(tiny_cohort).tensors)
    counts = tiny_cohort.visits.sum(1)
    shortest = np.argsort(counts)[:2]
    batch = cohort.batch(torch.as_tensor(shortest))
    assert (
        batch["visits"].shape[1] == counts[shortest].max() < tiny_cohort.visits.shape[1]
    )
    assert batch["baseline"].shape == (2, tiny_cohort.q)


def test_validation_is_one_batch_of_everyone_built_once(tiny_cohort):
    folds = make_folds(tiny_cohort.patient_ids, 2, seed=0)
    train_ids, val_ids = fold_members(folds, 0)
    data = CohortDataModule(tiny_cohort, train_ids, val_ids, batch_size=4)
    (batch,) = data.val_dataloader()
    old = DataLoader(
        CohortDataset(data.val), batch_size=len(val_ids), collate_fn=collate
    )
    (expected,) = list(old)
    assert_same_batch(batch, expected)
    assert data.on_device("val") is data.on_device("val")  # copied once
    # a validation pass draws from the global generator what a DataLoader draws
    torch.manual_seed(0)
    list(old)
    after_loader = torch.rand(1)
    torch.manual_seed(0)
    list(data.val_dataloader())
    assert torch.equal(torch.rand(1), after_loader)
    assert (
        list(SingleBatch(DeviceCohort(CohortDataset(data.val.subset([])).tensors)))
        == []
    )


def test_similarity_batches_equal_the_collated_sampler(tiny_cohort, tiny_config):
    folds = make_folds(tiny_cohort.patient_ids, 2, seed=0)
    train_ids, val_ids = fold_members(folds, 0)
    data = SimilarityDataModule(tiny_cohort, train_ids, val_ids, seed=3, neighbours=3)
    cfg = tiny_config
    torch.manual_seed(0)
    data.rebuild(build_model(tiny_cohort, cfg["model"], cfg["loss"], 1e-3))
    sampler = data.batches

    def collate_weighted(items):
        batch = collate(items)
        own = int(batch["index"][0])
        batch["weight"] = torch.as_tensor(sampler.weights[own], dtype=torch.float32)
        return batch

    sampler.generator.manual_seed(3)
    old = as_lightning_reads(
        DataLoader(data.dataset, batch_sampler=sampler, collate_fn=collate_weighted)
    )
    new = as_lightning_reads(data.train_dataloader())
    assert len(new) == len(old) == len(train_ids)
    for a, b in zip(new, old, strict=True):
        assert_same_batch(a, b)


def test_batches_on_the_device_skip_lightnings_transfer(tiny_cohort):
    folds = make_folds(tiny_cohort.patient_ids, 2, seed=0)
    data = CohortDataModule(tiny_cohort, *fold_members(folds, 0), batch_size=4)
    batch = next(iter(data.train_dataloader()))
    assert data.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch
    moved = data.transfer_batch_to_device(batch, torch.device("meta"), 0)
    assert all(value.device.type == "meta" for value in moved.values())
