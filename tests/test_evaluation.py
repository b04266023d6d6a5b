import numpy as np
import pandas as pd

from odevae.evaluation import (
    align_folds,
    apply_alignment,
    fit_alignment,
    group_recovery,
    trajectory_recovery,
    with_mean_row,
)


def test_alignment_undoes_permutation_sign_and_scale():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(200, 2)) * [1.0, 3.0] + [2.0, 0.0]
    learned = np.column_stack([-0.5 * true[:, 1] + 1.0, 2.0 * true[:, 0] - 3.0])
    maps = fit_alignment(learned, true)
    assert [src for src, _, _ in maps] == [1, 0]
    assert maps[1][1] < 0  # dimension 2 came from a sign flip
    np.testing.assert_allclose(apply_alignment(learned, maps), true, atol=1e-8)


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


def test_align_folds_recovers_truth_from_rotated_latents():
    grid = np.round(np.arange(0, 5.01, 0.5), 10)
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
            for g, a in ((1, -0.2), (2, 0.2))
        ]
    )
    truth_patients = pd.DataFrame({"patient_id": ["A", "B"], "group": [1, 2]})
    traj_rows, lat_rows = [], []
    for pid, a in (("A", -0.2), ("B", 0.2)):
        u1, u2 = 2 * np.exp(-0.2 * grid), np.exp(a * grid)
        # model latents: axes swapped, first flipped and scaled
        traj_rows.append(
            pd.DataFrame(
                {
                    "patient_id": pid,
                    "fold": 0,
                    "split": "test",
                    "time": grid,
                    "z1": -3 * u2,
                    "z2": u1 + 1,
                }
            )
        )
        lat_rows.append(
            pd.DataFrame(
                {
                    "patient_id": pid,
                    "fold": 0,
                    "split": "test",
                    "visit": [0, 1],
                    "time": [0.0, 5.0],
                    "mu1": [-3 * u2[0], -3 * u2[-1]],
                    "mu2": [u1[0] + 1, u1[-1] + 1],
                    "ode1": [-3 * u2[0], -3 * u2[-1]],
                    "ode2": [u1[0] + 1, u1[-1] + 1],
                }
            )
        )
    traj, lat = align_folds(
        pd.concat(traj_rows), pd.concat(lat_rows), truth_patients, truth_traj
    )
    np.testing.assert_allclose(traj[["z1", "z2"]], traj[["u1", "u2"]], atol=1e-8)
    np.testing.assert_allclose(lat[["mu1", "mu2"]], lat[["u1", "u2"]], atol=1e-8)
    r2 = trajectory_recovery(traj)
    np.testing.assert_allclose(r2[["r2_dim1", "r2_dim2"]].to_numpy(), 1.0)
