import numpy as np
import pandas as pd
import pytest
import torch

from odevae.data.batching import CohortDataset
from odevae.data.folds import fold_members, make_folds
from odevae.data.preprocess import preprocess
from odevae.data.simulate import simulate_cohort, write_cohort
from odevae.data.tables import read_tsv
from odevae.errors import InputError
from odevae.model.neighbours import (
    batch_purity,
    batch_weights,
    latent_trajectories,
    neighbour_batches,
    trajectory_distances,
    tricube,
)
from odevae.train.model_setup import build_model
from odevae.train.similarity import SimilarityDataModule
from odevae.train.training import train_fold
from tests.conftest import TABLES, merge

SIMILARITY = {"train": {"batching": "similarity", "similarity": {"neighbours": 3}}}


@pytest.fixture
def folds(tiny_cohort):
    return make_folds(tiny_cohort.patient_ids, 2, seed=0)


@pytest.fixture
def groups(tiny_tables):
    return read_tsv(tiny_tables["truth_patients"]).set_index("patient_id")["group"]


@pytest.fixture
def sim_config(tiny_config):
    return merge(tiny_config, SIMILARITY)


def test_distances_match_a_direct_loop():
    x = np.random.default_rng(0).normal(size=(7, 10, 3))
    expected = np.zeros((7, 7))
    for i in range(7):
        for j in range(7):
            gaps = [np.sqrt(np.sum((x[i, t] - x[j, t]) ** 2)) for t in range(10)]
            expected[i, j] = sum(gaps) / np.sqrt(10)
    np.testing.assert_allclose(trajectory_distances(x), expected, rtol=1e-12)


def test_batches_are_self_then_the_k_nearest():
    x = np.random.default_rng(1).normal(size=(12, 4, 2))
    x[5] = x[3]  # a twin at distance 0 must not displace the patient itself
    distances = trajectory_distances(x)
    batches = neighbour_batches(distances, 4)
    assert batches.shape == (12, 5)
    np.testing.assert_array_equal(batches[:, 0], np.arange(12))
    for i, batch in enumerate(batches):
        others = np.delete(np.arange(12), i)
        nearest = others[np.argsort(distances[i, others], kind="stable")[:4]]
        assert set(batch[1:]) == set(nearest), i
        assert np.all(np.diff(distances[i, batch[1:]]) >= 0), i
    assert batches[3, 1] == 5 and batches[5, 1] == 3
    with pytest.raises(ValueError, match="k < n"):
        neighbour_batches(distances, 12)


def test_weights_are_the_normalised_tricube():
    d = np.array([[0.0, 0.5, 1.0, 2.0], [0.0, 0.2, 0.4, 0.9]])
    assert tricube(np.array([0.0, 0.5, 1.0, 3.0])).tolist() == [
        1.0,
        (1 - 0.125) ** 3,
        0.0,
        0.0,
    ]
    w = batch_weights(d, bandwidth=1.0)
    np.testing.assert_allclose(w.sum(1), 1.0)
    np.testing.assert_allclose(w[0], np.array([1.0, 0.875**3, 0, 0]) / (1 + 0.875**3))
    kernel = (1 - d[1] ** 3) ** 3
    np.testing.assert_allclose(w[1], kernel / kernel.sum())
    # a wider bandwidth gives distant neighbours weight
    wide = batch_weights(d, bandwidth=4.0)
    assert (wide[0] > 0).all() and wide[0, 3] < wide[0, 1] < wide[0, 0]


def test_purity_on_a_constructed_case():
    groups = np.array(["a", "a", "a", "b"])
    batches = np.array([[0, 1, 2], [1, 0, 2], [2, 3, 0], [3, 0, 1]])
    assert batch_purity(batches, groups) == pytest.approx((1 + 1 + 0.5 + 0) / 4)


def test_trajectories_start_at_the_first_visit_encoder_mean(tiny_cohort, sim_config):
    cfg = sim_config
    model = build_model(tiny_cohort, cfg["model"], cfg["loss"], 1e-3)
    rng = np.random.default_rng(0)
    p, q = tiny_cohort.p, tiny_cohort.q
    model.set_scaling(
        rng.normal(size=p), 1 + rng.random(p), rng.normal(size=q), 2.0 * np.ones(q)
    )
    tensors = CohortDataset(tiny_cohort).tensors
    times = [0.0, 1.0, 2.5]
    got = latent_trajectories(model, tensors, times)
    with torch.no_grad():
        out = model(model.scale(tensors))
        t = torch.tensor(times).expand(tiny_cohort.n, -1)
        expected = model.solve(out["mu_enc"][:, 0], out["theta"], t).numpy()
    assert got.shape == (tiny_cohort.n, 3, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[:, 0], out["mu_enc"][:, 0].numpy(), rtol=1e-5)


def test_an_epoch_is_every_patients_weighted_batch_once(
    tiny_cohort, folds, sim_config, groups
):
    cfg = sim_config
    train_ids, val_ids = fold_members(folds, 0)
    data = SimilarityDataModule(
        tiny_cohort, train_ids, val_ids, seed=3, neighbours=3, groups=groups
    )
    model = build_model(tiny_cohort, cfg["model"], cfg["loss"], 1e-3)
    purity = data.rebuild(model)
    assert 0 <= purity <= 1
    orders = []
    # one per fit; each pass (an epoch) is one item, the pass's batches
    assert len(data.train_dataloader()) == 1
    loader = data.train_dataloader().batches
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == len(train_ids)
        own = [int(batch["index"][0]) for batch in batches]
        assert sorted(own) == list(range(len(train_ids)))
        for batch, i in zip(batches, own, strict=True):
            assert batch["index"].tolist() == data.batches.batches[i].tolist()
            assert batch["weight"].shape == (4,)
            assert batch["weight"].sum().item() == pytest.approx(1.0)
            assert batch["weight"][0] == batch["weight"].max()
        orders.append(own)
    assert orders[0] != orders[1]  # reshuffled every epoch
    # every fit (each restart's probe, the training) starts from the same order
    again = [int(b["index"][0]) for b in data.train_dataloader().batches]
    assert again == orders[0]
    before = data.batches.batches.copy()
    torch.manual_seed(1)
    data.rebuild(build_model(tiny_cohort, cfg["model"], cfg["loss"], 1e-3))
    assert not np.array_equal(data.batches.batches, before)
    for batch in data.train_dataloader().batches:
        i = int(batch["index"][0])
        assert batch["index"].tolist() == data.batches.batches[i].tolist()
    again = SimilarityDataModule(tiny_cohort, train_ids, val_ids, seed=3, neighbours=3)
    again.rebuild(model)
    assert [int(b["index"][0]) for b in again.train_dataloader().batches] == orders[0]


def test_too_many_neighbours_name_the_key(tiny_cohort, folds, sim_config, tmp_path):
    config = merge(sim_config, {"train": {"similarity": {"neighbours": 10}}})
    with pytest.raises(InputError, match=r"'train.similarity.neighbours'.*found 10"):
        train_fold(tiny_cohort, folds, 0, config, tmp_path / "run")


def test_similarity_training_logs_purity_and_reproduces(
    tiny_cohort, folds, sim_config, groups, tmp_path
):
    for run in ("a", "b"):
        model = train_fold(
            tiny_cohort, folds, 0, sim_config, tmp_path / run, groups=groups
        )
    n_train = len(fold_members(folds, 0)[0])
    epochs = sim_config["train"]["epochs"]
    assert model.trainer.global_step == epochs * n_train  # one step per patient
    a = pd.read_csv(tmp_path / "a" / "metrics.csv")
    b = pd.read_csv(tmp_path / "b" / "metrics.csv")
    pd.testing.assert_frame_equal(a, b)
    purity = a["train/batch_purity"].dropna()
    assert len(purity) == epochs and purity.between(0, 1).all()
    loss = a["train/loss"].dropna()
    assert len(loss) == epochs and np.isfinite(loss).all()


def test_no_purity_without_groups(tiny_cohort, folds, sim_config, tmp_path):
    train_fold(tiny_cohort, folds, 0, sim_config, tmp_path / "run")
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert "train/batch_purity" not in metrics
    loss = metrics["train/loss"].dropna()
    assert len(loss) == sim_config["train"]["epochs"] and np.isfinite(loss).all()


def test_random_batching_ignores_similarity_options_and_groups(
    tiny_cohort, folds, tiny_config, groups, tmp_path
):
    other = merge(tiny_config, {"train": {"similarity": {"neighbours": 50}}})
    train_fold(tiny_cohort, folds, 1, tiny_config, tmp_path / "a")
    train_fold(tiny_cohort, folds, 1, other, tmp_path / "b", groups=groups)
    a = pd.read_csv(tmp_path / "a" / "metrics.csv")
    b = pd.read_csv(tmp_path / "b" / "metrics.csv")
    pd.testing.assert_frame_equal(a, b)
    assert "train/batch_purity" not in a


def test_purity_rises_as_the_groups_separate(tiny_config, tmp_path):
    """Strongly separated groups: batches become nearly pure within a few epochs."""
    config = merge(
        tiny_config,
        {
            "seed": 1,
            "simulation": {
                "n": 40,
                "q_info": 4,
                "groups": [
                    {"A": [[-0.3, 0.0], [0.0, -0.3]]},
                    {"A": [[0.1, 0.0], [0.0, 0.1]]},
                ],
            },
            "train": {"epochs": 6, **SIMILARITY["train"]},
        },
    )
    tables = {key: tmp_path / f"{key}.tsv" for key in TABLES}
    write_cohort(simulate_cohort(config["simulation"], seed=1), tables)
    cohort = preprocess(tables["visits"], tables["baseline"])
    truth = read_tsv(tables["truth_patients"]).set_index("patient_id")["group"]
    folds = make_folds(cohort.patient_ids, 2, seed=0)
    train_fold(cohort, folds, 0, config, tmp_path / "run", groups=truth)
    purity = pd.read_csv(tmp_path / "run" / "metrics.csv")["train/batch_purity"]
    purity = purity.dropna().to_numpy()
    assert purity[-1] > purity[0] + 0.2 and purity[-1] > 0.85, purity
