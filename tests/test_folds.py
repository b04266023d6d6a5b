import numpy as np
import pytest

from odevae.data.folds import (
    fitted_and_validation,
    fold_members,
    has_inner_split,
    inner_split,
    make_folds,
)
from odevae.errors import InputError


def test_every_patient_in_exactly_one_fold_and_balanced():
    ids = [f"P{i}" for i in range(23)]
    folds = make_folds(ids, k=5, seed=0)
    assert sorted(folds["patient_id"]) == sorted(ids)
    assert folds["patient_id"].is_unique
    sizes = folds["fold"].value_counts()
    assert set(sizes.index) == set(range(5)) and sizes.max() - sizes.min() <= 1
    for fold in range(5):
        train, test = fold_members(folds, fold)
        assert not set(train) & set(test)
        assert len(train) + len(test) == 23


def test_folds_reproducible_from_seed():
    ids = np.array([f"P{i}" for i in range(30)])
    a, b, c = (make_folds(ids, 3, seed) for seed in (1, 1, 2))
    assert a.equals(b)
    assert not a["fold"].equals(c["fold"])


def test_fewer_patients_than_folds_is_a_config_error():
    with pytest.raises(InputError, match="cv.folds.*3 patients cannot fill 5 folds"):
        make_folds(["a", "b", "c"], 5, 0)


def test_row_order_never_changes_the_folds():
    ids = [f"P{i:02d}" for i in range(30)]
    shuffled = list(np.random.default_rng(3).permutation(ids))
    a = make_folds(ids, 5, seed=7).set_index("patient_id")["fold"]
    b = make_folds(shuffled, 5, seed=7).set_index("patient_id")["fold"]
    assert a.sort_index().equals(b.sort_index())


def test_inner_split_takes_a_seeded_share_of_the_training_patients():
    ids = [f"P{i:02d}" for i in range(20)]
    inner_train, inner_val = inner_split(ids, 0.25, seed=3)
    assert len(inner_val) == 5 and not set(inner_train) & set(inner_val)
    assert sorted([*inner_train, *inner_val]) == ids
    again = inner_split(ids[::-1], 0.25, seed=3)
    assert list(again[1]) == list(inner_val)  # order of the input does not matter
    assert list(inner_split(ids, 0.25, seed=4)[1]) != list(inner_val)
    with pytest.raises(InputError, match="train.early_stopping.inner_fraction"):
        inner_split(["a"], 0.5, seed=0)


def test_the_folds_table_holds_each_folds_inner_split_and_training_reads_it():
    ids = [f"P{i:02d}" for i in range(20)]
    folds = make_folds(ids, 4, seed=3, inner_fraction=0.25)
    assert list(folds.columns) == [
        "patient_id",
        "fold",
        *(f"role_{f}" for f in range(4)),
    ]
    for f in range(4):
        train_ids, held_ids = fold_members(folds, f)
        fitted, validation = fitted_and_validation(folds, f)
        assert has_inner_split(folds, f)
        # the inner split of that fold's training patients, seeded with seed + fold
        want_fitted, want_validation = inner_split(train_ids, 0.25, seed=3 + f)
        assert list(fitted) == list(want_fitted)
        assert list(validation) == list(want_validation)
        assert set(folds.loc[folds["fold"] == f, f"role_{f}"]) == {"test"}
        assert not set(held_ids) & {*fitted, *validation}
    plain = make_folds(ids, 4, seed=3)
    assert plain["fold"].equals(folds["fold"])
    fitted, validation = fitted_and_validation(plain, 1)
    assert not has_inner_split(plain, 1)
    assert [list(x) for x in fold_members(plain, 1)] == [list(fitted), list(validation)]
    with pytest.raises(ValueError, match="no column 'role_0'"):
        fitted_and_validation(plain[["patient_id", "fold"]], 0)
