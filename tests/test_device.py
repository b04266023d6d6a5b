"""train.accelerator auto: the CPU for small batches even when a GPU is present."""

import logging

import pytest
import torch

from odevae.data.folds import make_folds
from odevae.train.device import GPU_MIN_BATCH_CELLS, choose_accelerator
from odevae.train.training import train_fold
from tests.conftest import merge


@pytest.fixture
def gpu_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_auto_uses_the_gpu_from_the_threshold_on(gpu_present, caplog):
    caplog.set_level(logging.INFO, logger="odevae")
    visits = 11
    below = GPU_MIN_BATCH_CELLS // visits - 1
    assert choose_accelerator("auto", below, visits, fold=2) == "cpu"
    assert "fold 2: trains on the CPU although a GPU is present" in caplog.text
    assert f"{below} patients x {visits} visits" in caplog.text
    assert choose_accelerator("auto", below + 2, visits) == "auto"
    assert "trains on the GPU" in caplog.text


def test_auto_without_a_gpu_and_explicit_settings(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="odevae")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert choose_accelerator("auto", 10**6, 100) == "cpu"
    assert "no GPU" in caplog.text
    assert choose_accelerator("gpu", 1, 1) == "gpu"  # as configured, even if small
    assert choose_accelerator("cpu", 10**6, 100) == "cpu"


def test_a_small_fold_trains_on_the_cpu_beside_a_gpu(
    gpu_present, tiny_cohort, tiny_config, tmp_path, caplog
):
    # were the GPU chosen, Lightning would fail to find CUDA on this machine
    caplog.set_level(logging.INFO, logger="odevae")
    folds = make_folds(tiny_cohort.patient_ids, 2, seed=0)
    config = merge(tiny_config, {"train": {"accelerator": "auto"}})
    model = train_fold(tiny_cohort, folds, 0, config, tmp_path / "t", fast_dev_run=True)
    assert model.device.type == "cpu"
    assert "trains on the CPU although a GPU is present" in caplog.text
