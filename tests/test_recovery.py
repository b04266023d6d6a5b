import numpy as np
import pandas as pd
import pytest

from odevae.evaluate.recovery import (
    align_folds,
    apply_alignment,
    fit_alignment,
    group_recovery,
    sign_agreement,
    trajectory_recovery,
    with_mean_row,
)


def test_alignment_undoes_permutation_sign_and_scale():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(200, 2)) * [1.0, 3.0] + [2.0, 0.0]
    learned = np.column_stack([-0.5 * true[:, 1] + 1.0, 2.0 * true[:, 0] - 3.0])
    W, c = fit_alignment(learned, true)
    # true dimension 1 from learned dimension 2 (positive), 2 from 1 (sign flip)
    assert W[1, 0] > 0 and W[0, 1] < 0 and W[0, 0] == W[1, 1] == 0
    np.testing.assert_allclose(apply_alignment(learned, (W, c)), true, atol=1e-8)


def test_affine_alignment_undoes_a_rotation_that_axis_alignment_cannot():
    rng = np.random.default_rng(1)
    true = rng.normal(size=(300, 2)) * [1.0, 2.0]
    angle = 0.6
    R = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    learned = true @ R + [0.5, -1.0]
    affine = apply_alignment(learned, fit_alignment(learned, true, "affine"))
    np.testing.assert_allclose(affine, true, atol=1e-8)
    axis = apply_alignment(learned, fit_alignment(learned, true, "axis"))
    assert np.abs(axis - true).max() > 0.1
    with pytest.raises(ValueError, match="unknown alignment"):
        fit_alignment(learned, true, "rotation")


def test_group_recovery_per_fold_and_mean():
    rows = []
    for fold in (0, 1):
        for i in range(20):
            group = 1 + i % 2
            rows.append(
                {
                    "patient_id": f"P{fold}{i}",
                    "fold": fold,
                    "split": "test" if i < 6 else "train",
                    "a11": -0.2 + 0.01 * i,
                    # fold 0 separates the groups, fold 1 mixes one held-out patient
                    "a22": (0.2 if group == 2 else -0.2)
                    * (-1 if (fold, i) == (1, 1) else 1),
                }
            )
    params = pd.DataFrame(rows)
    truth = pd.DataFrame(
        {"patient_id": params["patient_id"], "group": 1 + np.arange(40) % 2}
    )
    table = group_recovery(params, truth, ["a11", "a22"])
    assert table["accuracy_threshold"].tolist() == [1.0, 5 / 6]
    assert table["n_test"].tolist() == [6, 6]
    mean = with_mean_row(table).iloc[-1]
    assert mean["fold"] == "mean" and mean["accuracy_threshold"] == (1 + 5 / 6) / 2


def test_sign_agreement_drops_when_a_growing_group_is_learned_as_decaying():
    ids = [f"P{i}" for i in range(8)]
    truth = pd.DataFrame(
        {
            "patient_id": ids,
            "group": [1, 2] * 4,
            "a11": -0.2,
            "a12": 0.0,
            "a21": 0.0,
            "a22": [-0.2, 0.2] * 4,
        }
    )
    # learned dimension 2 is true axis 1 and vice versa (the alignment swaps them)
    swap = (np.array([[0.0, 3.0], [-2.0, 0.0]]), np.zeros(2))
    right = {"a11": truth["a22"] * 0.5, "a22": truth["a11"] * 2}
    wrong = {"a11": -np.abs(truth["a22"]), "a22": truth["a11"]}  # nothing grows
    params = pd.concat(
        [
            pd.DataFrame({"patient_id": ids, "fold": 0, "split": "test", **right}),
            pd.DataFrame({"patient_id": ids, "fold": 1, "split": "test", **wrong}),
        ]
    )
    table = sign_agreement(params, truth, {0: swap, 1: swap})
    assert table["sign_agreement"].tolist() == [1.0, 0.75]
    # an affine map mixes axes: no per-axis rate to compare
    mixed = (np.array([[1.0, 0.5], [0.2, 1.0]]), np.zeros(2))
    assert np.isnan(sign_agreement(params, truth, {0: mixed})["sign_agreement"][0])


def test_align_folds_fits_on_training_patients_and_maps_held_out_ones():
    grid = np.round(np.arange(0, 5.01, 0.5), 10)
    rates = {1: -0.2, 2: 0.2}
    truth_traj = pd.concat(
        [
            pd.DataFrame(
                {
                    "group": g,
                    "time": grid,
                    "u1": 2 * np.exp(-0.2 * grid),
                    "u2": np.exp(a * grid),
                }
            )
            for g, a in rates.items()
        ]
    )
    patients = {
        "A": (1, "train"),
        "B": (2, "train"),
        "C": (1, "test"),
        "D": (2, "test"),
    }
    truth_patients = pd.DataFrame(
        {"patient_id": list(patients), "group": [g for g, _ in patients.values()]}
    )
    traj_rows, lat_rows = [], []
    for pid, (group, split) in patients.items():
        u1, u2 = 2 * np.exp(-0.2 * grid), np.exp(rates[group] * grid)
        # the model's latents: axes swapped, the first flipped and scaled, shifted
        z1, z2 = -3 * u2, u1 + 1
        # held-out patients are fitted worse: their error must survive alignment
        if split == "test":
            z1 = z1 + 0.3 * np.sin(grid)
        traj_rows.append(
            pd.DataFrame(
                {
                    "patient_id": pid,
                    "fold": 0,
                    "split": split,
                    "time": grid,
                    "z1": z1,
                    "z2": z2,
                }
            )
        )
        lat_rows.append(
            pd.DataFrame(
                {
                    "patient_id": pid,
                    "fold": 0,
                    "split": split,
                    "visit": [0, 1],
                    "time": [0.0, 5.0],
                    "mu1": z1[[0, -1]],
                    "mu2": z2[[0, -1]],
                    "ode1": z1[[0, -1]],
                    "ode2": z2[[0, -1]],
                }
            )
        )
    traj, lat = align_folds(
        pd.concat(traj_rows), pd.concat(lat_rows), truth_patients, truth_traj
    )
    assert set(traj["patient_id"]) == {"C", "D"} and set(lat["patient_id"]) == {
        "C",
        "D",
    }
    # the map learnt on A and B: u2 = -z1 / 3, u1 = z2 - 1
    np.testing.assert_allclose(traj["u1"], traj["z1"], atol=1e-8)
    np.testing.assert_allclose(
        traj["z2"], traj["u2"] - 0.1 * np.sin(traj["time"]), atol=1e-8
    )
    np.testing.assert_allclose(lat["mu1"], lat["u1"], atol=1e-8)
    r2 = trajectory_recovery(traj)
    assert r2["r2_dim1"].iloc[0] == 1.0 or np.isclose(r2["r2_dim1"].iloc[0], 1.0)
    assert r2["r2_dim2"].iloc[0] < 1.0
