"""GPU checks: run only where CUDA is available."""

import numpy as np
import pandas as pd
import pytest
import torch

from odevae.data.folds import make_folds
from odevae.data.tables import read_tsv
from odevae.model.dynamics import make_system
from odevae.model.solving import solve
from odevae.train.training import train_fold
from tests.conftest import merge

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


def test_closed_form_matches_dopri5_on_gpu():
    system = make_system("linear_diagonal", 2)
    gen = torch.Generator().manual_seed(0)
    u0 = torch.randn(64, 2, generator=gen, dtype=torch.float64).cuda()
    theta = (torch.rand(64, 2, generator=gen, dtype=torch.float64) - 0.5).cuda()
    t = torch.sort(torch.rand(64, 6, generator=gen, dtype=torch.float64) * 10).values
    t[:, 0] = 0
    t = t.cuda()
    exact = solve(system, u0, theta, t)
    numeric = solve(system, u0, theta, t, "dopri5", rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(numeric, exact, atol=1e-5, rtol=0)


def test_gpu_training_with_device_resident_batches(tiny_cohort, tiny_config, tmp_path):
    config = merge(tiny_config, {"train": {"accelerator": "gpu"}})
    folds = make_folds(tiny_cohort.patient_ids, 2, seed=0)
    out = tmp_path / "train"  # tmp_path holds the cohort's tables
    model = train_fold(tiny_cohort, folds, 0, config, out)
    # Lightning moves the module back to the CPU after fit; ask the strategy.
    assert model.trainer.strategy.root_device.type == "cuda"
    data = model.trainer.datamodule
    assert all(
        t.device.type == "cuda" for t in data.on_device("train").tensors.values()
    )
    metrics = pd.read_csv(out / "metrics.csv")
    for key in ("train/loss", "val/loss"):
        values = metrics[key].dropna()
        assert len(values) == config["train"]["epochs"], key  # one per epoch
        assert np.isfinite(values).all(), key
    assert (out / "model.ckpt").is_file()


def test_auto_accelerator_keeps_small_batches_on_the_cpu(
    tiny_cohort, tiny_config, tmp_path
):
    # The default config (accelerator: auto): batches of 8 patients train faster
    # on the CPU than on a GPU (odevae.train.device)
    assert tiny_config["train"]["accelerator"] == "auto"
    folds = make_folds(tiny_cohort.patient_ids, 2, seed=0)
    model = train_fold(tiny_cohort, folds, 0, tiny_config, tmp_path / "train")
    assert model.trainer.strategy.root_device.type == "cpu"


def test_similarity_batches_train_on_the_gpu(
    tiny_cohort, tiny_tables, tiny_config, tmp_path
):
    config = merge(
        tiny_config,
        {
            "train": {
                "accelerator": "gpu",
                "batching": "similarity",
                "similarity": {"neighbours": 3},
            }
        },
    )
    groups = read_tsv(tiny_tables["truth_patients"]).set_index("patient_id")["group"]
    folds = make_folds(tiny_cohort.patient_ids, 2, seed=0)
    model = train_fold(tiny_cohort, folds, 0, config, tmp_path / "run", groups=groups)
    assert model.trainer.strategy.root_device.type == "cuda"
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    epochs = config["train"]["epochs"]
    purity = metrics["train/batch_purity"].dropna()
    assert len(purity) == epochs and purity.between(0, 1).all()
    loss = metrics["train/loss"].dropna()
    assert len(loss) == epochs and np.isfinite(loss).all()
