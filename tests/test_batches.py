"""Device-resident batches equal the DataLoader + collate batches they replace,
with the same random numbers drawn, so training results do not change."""

from itertools import islice

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from odevae.data.batching import CohortDataset, collate
from odevae.data.folds import fold_members, make_folds
from odevae.train.batches import (
    BucketedBatches,
    DeviceCohort,
    ShuffledBatches,
    SingleBatch,
    SortedBatches,
)
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


def test_bucketed_batches_hold_everyone_once_with_similar_visit_counts(tiny_cohort):
    dataset = CohortDataset(tiny_cohort)
    counts = tiny_cohort.visits.sum(1)
    cohort = DeviceCohort(dataset.tensors)

    def epochs(seed, n=2):
        batches = BucketedBatches(cohort, 4, torch.Generator().manual_seed(seed))
        return [as_lightning_reads(batches) for _ in range(n)]

    first, second = epochs(5)
    assert len(first) == -(-tiny_cohort.n // 4)
    for epoch in (first, second):
        members = np.concatenate([b["index"].numpy() for b in epoch])
        assert sorted(members) == list(range(tiny_cohort.n))
        # each batch is padded to its own longest patient; batches cut from the
        # patients sorted by visit count pad less than random ones
        for batch in epoch:
            assert batch["visits"].shape[1] == counts[batch["index"].numpy()].max()
        widths = sorted(b["visits"].shape[1] for b in epoch)
        padded = sum(len(b["index"]) * b["visits"].shape[1] for b in epoch)
        assert padded <= sum(len(b["index"]) * b["visits"].shape[1] for b in first)
        assert widths == sorted(b["visits"].shape[1] for b in first)
    # reshuffled every epoch, and seeded
    order = [tuple(b["index"].tolist()) for b in first]
    assert order != [tuple(b["index"].tolist()) for b in second]
    again = epochs(5)[0]
    assert order == [tuple(b["index"].tolist()) for b in again]
    # sorted by visit count: a patient's batch holds no visit count outside the
    # range between the neighbouring batches' (cut from one sorted order)
    spans = sorted(
        (counts[b["index"].numpy()].min(), counts[b["index"].numpy()].max())
        for b in first
    )
    for (_, high), (low, _) in zip(spans, spans[1:], strict=False):
        assert high <= low
    random = ShuffledBatches(cohort, 4, torch.Generator().manual_seed(5))
    padded_random = sum(
        len(b["index"]) * b["visits"].shape[1] for b in as_lightning_reads(random)
    )
    assert padded < padded_random


@pytest.mark.parametrize("kind", ["initial_value", "statistical"])
def test_sorted_validation_batches_give_the_loss_of_one_batch(
    tiny_cohort, tiny_config, kind
):
    torch.manual_seed(0)
    loss = {**tiny_config["loss"], "kind": kind}
    model = build_model(tiny_cohort, tiny_config["model"], loss, lr=1e-3).eval()
    cohort = DeviceCohort(CohortDataset(tiny_cohort).tensors)
    batches = SortedBatches(cohort, 3)
    members = np.concatenate([b["index"].numpy() for b in batches])
    assert sorted(members) == list(range(tiny_cohort.n))
    counts = tiny_cohort.visits.sum(1)[members]
    assert (np.diff(counts) >= 0).all()
    assert list(iter(batches))[0] is list(iter(batches))[0]  # built once
    with torch.no_grad():
        whole = model.loss_terms(model.scale(cohort.everyone()), sample=False)
        parts = [
            (model.loss_terms(model.scale(b), sample=False)["loss"], len(b["index"]))
            for b in batches
        ]
    weighted = sum(value * size for value, size in parts) / tiny_cohort.n
    torch.testing.assert_close(weighted, whole["loss"])


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
    new = as_lightning_reads(data.train_dataloader().batches)
    assert len(new) == len(old) == len(train_ids)
    for a, b in zip(new, old, strict=True):
        assert_same_batch(a, b)


def test_batches_on_the_device_skip_lightnings_transfer(tiny_cohort):
    folds = make_folds(tiny_cohort.patient_ids, 2, seed=0)
    data = CohortDataModule(tiny_cohort, *fold_members(folds, 0), batch_size=4)
    one_pass = next(iter(data.train_dataloader()))
    with pytest.raises(TypeError):  # nothing for Lightning to walk
        iter(one_pass)
    for device in ("cpu", "meta"):
        moved = data.transfer_batch_to_device(one_pass, torch.device(device), 0)
        assert moved is one_pass
    batch = next(iter(one_pass.batches))
    assert data.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch
    moved = data.transfer_batch_to_device(batch, torch.device("meta"), 0)
    assert all(value.device.type == "meta" for value in moved.values())
