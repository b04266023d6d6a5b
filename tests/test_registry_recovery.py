"""Recovery of a simulated registry's true rates: matching learned to true axes on
training patients, held-out Spearman correlations and sign agreement."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from odevae.evaluate.registry_recovery import (
    diagonal_rates,
    match_rates,
    registry_recovery,
    spearman,
)

MEANS = np.array([[-0.3, -0.1], [-0.1, 0.3]])  # the simulated registry's groups


def truth_table(n=40, seed=0, means=MEANS, sd=0.03) -> pd.DataFrame:
    """Truth as rule simulate_registry writes it: two groups, rates around them."""
    rng = np.random.default_rng(seed)
    group = np.arange(n) % 2
    rates = means[group] + rng.normal(0.0, sd, (n, 2))
    return pd.DataFrame(
        {
            "patient_id": [f"R{i + 1:03d}" for i in range(n)],
            "group": group,
            "a11": rates[:, 0],
            "a22": rates[:, 1],
        }
    )


def fold_params(truth, learned, n_test=10, folds=(0, 1)) -> pd.DataFrame:
    """``params.tsv`` of every fold: the first ``n_test`` patients of fold k's block
    held out, learned rates ``learned(true, split)`` -> (a11, a22)."""
    parts = []
    for fold in folds:
        held = np.zeros(len(truth), dtype=bool)
        held[fold * n_test : (fold + 1) * n_test] = True
        split = np.where(held, "test", "train")
        a11, a22 = learned(truth, split)
        parts.append(
            pd.DataFrame(
                {
                    "patient_id": truth["patient_id"],
                    "fold": fold,
                    "split": split,
                    "a11": a11,
                    "a22": a22,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def rows(table) -> pd.DataFrame:
    return table.set_index("fold")


def test_diagonal_rates_and_spearman():
    columns = ["patient_id", "a11", "a21", "a12", "a22", "b1", "a1010", "alpha"]
    assert diagonal_rates(columns) == {1: "a11", 2: "a22", 10: "a1010"}
    assert spearman([1, 2, 3, 4], [10, 20, 30, 100]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 2, 3], [5, 5, 5]))  # a constant side
    assert np.isnan(spearman([1], [2]))


def test_swapped_learned_axes_are_matched_on_training_patients():
    truth = truth_table()

    def swapped(t, split):  # learned axis 1 is true axis 2 (rescaled), and back
        return 2.0 * t["a22"], 0.5 * t["a11"]

    params = fold_params(truth, swapped)
    train = params[(params["fold"] == 0) & (params["split"] == "train")]
    train = train.merge(
        truth.rename(columns={"a11": "t11", "a22": "t22"}), on="patient_id"
    )
    assert match_rates(train, ["a11", "a22"], ["t11", "t22"]) == ("a22", "a11")
    table = rows(registry_recovery(params, truth))
    assert list(table.index) == ["0", "1", "mean"]
    assert list(table.columns) == [
        "n_train",
        "n_test",
        "accuracy_1nn",
        "accuracy_threshold",
        "rate_spearman_a11",
        "rate_spearman_a22",
        "sign_agreement",
    ]
    assert table[["rate_spearman_a11", "rate_spearman_a22"]].to_numpy() == (
        pytest.approx(1.0)
    )
    assert table["sign_agreement"].tolist() == [1.0, 1.0, 1.0]
    assert table["accuracy_1nn"].tolist() == [1.0, 1.0, 1.0]
    assert table.loc["0", "n_train"] == 30 and table.loc["0", "n_test"] == 10


def test_anticorrelated_heldout_rates_score_negative():
    truth = truth_table()

    def reversed_on_test(t, split):
        # training patients: the truth; held-out: rank order reversed, a11 keeps
        # its (negative) sign, a22 flips sign
        test = split == "test"
        a11 = np.where(test, -0.4 - t["a11"], t["a11"])
        a22 = np.where(test, 0.2 - t["a22"], t["a22"])
        return a11, a22

    table = rows(registry_recovery(fold_params(truth, reversed_on_test), truth))
    for fold in ("0", "1", "mean"):
        assert table.loc[fold, "rate_spearman_a11"] == pytest.approx(-1.0)
        assert table.loc[fold, "rate_spearman_a22"] == pytest.approx(-1.0)
        assert table.loc[fold, "sign_agreement"] == pytest.approx(0.5)


def test_matching_uses_training_patients_only():
    # independent true rates; the model swaps the axes on training patients only
    truth = truth_table(means=np.zeros((2, 2)), sd=1.0, seed=4)

    def swapped_on_train(t, split):
        train = split == "train"
        return np.where(train, t["a22"], t["a11"]), np.where(train, t["a11"], t["a22"])

    table = rows(registry_recovery(fold_params(truth, swapped_on_train), truth))
    # held-out: learned a11 is true a11, but the training matching pairs true a11
    # with learned a22, i.e. true a22 on held-out patients
    held = truth.iloc[:10]
    expected = spearman(held["a11"], held["a22"])
    assert table.loc["0", "rate_spearman_a11"] == pytest.approx(expected)
    assert table.loc["0", "rate_spearman_a22"] == pytest.approx(expected)
    assert abs(expected) < 0.9


def test_only_surviving_patients_are_scored_and_too_few_axes_give_nan():
    truth = truth_table(n=44)  # R041-R044 dropped by preprocessing: not in params
    params = fold_params(truth.iloc[:40], lambda t, s: (t["a11"], t["a22"]))
    table = rows(registry_recovery(params, truth))
    assert table.loc["0", "n_train"] + table.loc["0", "n_test"] == 40
    assert table.loc["mean", "rate_spearman_a11"] == pytest.approx(1.0)
    # a 1-d model has one learned rate for two true ones: no matching
    one = rows(registry_recovery(params.drop(columns="a22"), truth))
    assert one[["rate_spearman_a11", "rate_spearman_a22"]].isna().all().all()
    assert one["sign_agreement"].isna().all()
    assert one["accuracy_1nn"].notna().all()


def test_folds_tuned_to_different_latent_dimensions_are_each_scored_on_their_own():
    """Fold 1's chosen candidate has a third latent axis (a33), empty in fold 0's
    rows. Fold 1 is scored with it: there only a33 carries the groups and true
    a11. Fold 0 is matched among its own two rates, both reversed, and not to the
    empty column, which an all-NaN correlation would have won."""
    truth = truth_table()
    params = fold_params(truth, lambda t, split: (-2.0 * t["a11"], -0.5 * t["a22"]))
    rng = np.random.default_rng(1)
    wide = (params["fold"] == 1).to_numpy()
    true_a11 = params["patient_id"].map(truth.set_index("patient_id")["a11"])
    params["a33"] = np.where(wide, 3.0 * true_a11, np.nan)
    params.loc[wide, ["a11", "a22"]] = rng.normal(0.0, 1.0, (wide.sum(), 2))
    table = rows(registry_recovery(params, truth))
    assert table.loc["1", "rate_spearman_a11"] == pytest.approx(1.0)  # a33
    assert table.loc["1", "accuracy_threshold"] == 1.0  # a33 separates them
    assert table.loc["0", "accuracy_1nn"] == 1.0
    fold0 = table.loc["0", ["rate_spearman_a11", "rate_spearman_a22"]]
    assert np.isfinite(fold0.to_numpy(dtype=float)).all()
    assert (fold0 < 0).all()  # its own rates, reversed


def test_a_parameter_missing_for_some_patients_of_a_fold_is_an_error():
    truth = truth_table()
    params = fold_params(truth, lambda t, split: (t["a11"], t["a22"]))
    params.loc[3, "a22"] = np.nan
    with pytest.raises(ValueError, match="fold 0: parameter a22 is missing for 1 of"):
        registry_recovery(params, truth)
