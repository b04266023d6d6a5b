"""The comparator predictors on hand-built toy cohorts."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from odevae.data.cohort import Cohort
from odevae.data.folds import fold_members, make_folds
from odevae.evaluate.prediction.comparators import (
    SmootherFit,
    comparator_predictions,
    fit_mixed_model,
    fit_mixed_models,
    fit_smoother,
    locf,
    median_gap,
    mixed_model,
    random_effects,
    smoother,
    train_mean,
)
from odevae.evaluate.prediction.scores import summarise, training_sd
from odevae.evaluate.prediction.targets import prediction_targets

nan = np.nan


def make_cohort(times, values, baseline, prefix="p") -> Cohort:
    """A cohort from per-patient times (T_i,) and values (T_i, p), NaN = missing."""
    n, T, p = len(times), max(len(t) for t in times), np.shape(values[0])[1]
    t_pad, v_pad = np.zeros((n, T)), np.full((n, T, p), np.nan)
    visits = np.zeros((n, T), dtype=bool)
    for i, (t, v) in enumerate(zip(times, values, strict=True)):
        t_pad[i, : len(t)], v_pad[i, : len(t)], visits[i, : len(t)] = t, v, True
    baseline = np.asarray(baseline, float).reshape(n, -1)
    return Cohort(
        np.array([f"{prefix}{i}" for i in range(n)]),
        t_pad,
        np.nan_to_num(v_pad),
        ~np.isnan(v_pad),
        visits,
        baseline,
        np.array([f"y{k}" for k in range(p)]),
        np.array([f"x{k}" for k in range(baseline.shape[1])]),
    )


def linear_cohort(n, seed, slope=0.8, prefix="p", p=1) -> Cohort:
    """y = 1 + slope·t + 0.5·x + b0 + b1·t + e, 5 irregular visits over 4 years."""
    rng = np.random.default_rng(seed)
    times, values = [], []
    x = rng.normal(size=n)
    for i in range(n):
        t = np.concatenate([[0.0], np.sort(rng.uniform(0.2, 4.0, 4))])
        b0, b1 = rng.normal(0, 1.0, p), rng.normal(0, 0.5, p)
        noise = rng.normal(0, 0.3, (5, p))
        values.append(1 + (slope + b1) * t[:, None] + 0.5 * x[i] + b0 + noise)
        times.append(t)
    return make_cohort(times, values, x[:, None], prefix)


def pick(targets, horizon, row, visit):
    """The position of one target."""
    hit = targets.index[
        (targets["horizon"] == horizon)
        & (targets["row"] == row)
        & (targets["visit"] == visit)
    ]
    assert len(hit) == 1
    return hit[0]


@pytest.fixture(scope="module")
def toy():
    return make_cohort(
        [[0.0, 1.0, 3.0, 4.0], [0.0, 2.0]],
        [
            [[1.0, 2.0], [nan, 4.0], [3.0, nan], [5.0, nan]],
            [[nan, 3.0], [1.0, 3.0]],
        ],
        [[0.0], [1.0]],
    )


def test_locf_takes_the_last_observed_history_value(toy):
    targets = prediction_targets(toy)
    pred, sd = locf(toy, targets)
    assert np.isnan(sd).all()
    np.testing.assert_array_equal(pred[pick(targets, "one_step", 0, 3)], [3.0, 4.0])
    np.testing.assert_array_equal(pred[pick(targets, "one_step", 0, 2)], [1.0, 4.0])
    np.testing.assert_array_equal(pred[pick(targets, "from_first", 0, 3)], [1.0, 2.0])
    np.testing.assert_array_equal(
        pred[pick(targets, "from_first_two", 0, 3)], [1.0, 4.0]
    )
    np.testing.assert_array_equal(pred[pick(targets, "one_step", 1, 1)], [nan, 3.0])


def test_smoother_hand_values(toy):
    targets = prediction_targets(toy)
    fit = SmootherFit(tau=np.array([2.0, 2.0]), rmse=np.array([0.5, 0.7]))
    pred, sd = smoother(toy, targets, fit)
    w = np.exp(-np.array([4.0, 3.0, 1.0]) / 2)  # lags of visits 0..2 from t = 4
    k = pick(targets, "one_step", 0, 3)
    expected = [
        (w[0] * 1 + w[2] * 3) / (w[0] + w[2]),
        (w[0] * 2 + w[1] * 4) / w[:2].sum(),
    ]
    np.testing.assert_allclose(pred[k], expected)
    np.testing.assert_array_equal(sd[k], [0.5, 0.7])
    k = pick(targets, "one_step", 1, 1)
    np.testing.assert_array_equal(pred[k], [nan, 3.0])
    np.testing.assert_array_equal(sd[k], [nan, 0.7])
    tiny = smoother(toy, targets, SmootherFit(np.array([1e-6, 1e-6]), np.ones(2)))[0]
    np.testing.assert_array_equal(tiny, locf(toy, targets)[0])  # no underflow


def test_train_mean_uses_the_training_patients(toy):
    test = replace(toy, values=toy.values + 100)  # only the targets come from test
    targets = prediction_targets(test)
    pred, sd = train_mean(toy, test, targets)
    assert pred.shape == (len(targets), 2)
    np.testing.assert_allclose(pred, np.broadcast_to([10 / 4, 12 / 4], pred.shape))
    spread = [np.std([1, 3, 5, 1], ddof=1), np.std([2, 4, 3, 3], ddof=1)]
    np.testing.assert_allclose(sd, np.broadcast_to(spread, sd.shape))


def test_smoother_tau_is_chosen_on_training_data():
    rng = np.random.default_rng(0)
    times = [np.arange(10.0) * 0.5] * 60
    walk = np.cumsum(rng.normal(size=(60, 10)), 1)  # y0: LOCF is optimal
    noise = rng.normal(0, 3, (60, 1)) + rng.normal(size=(60, 10))  # y1: past mean
    train = make_cohort(times, list(np.stack([walk, noise], -1)), np.zeros((60, 1)))
    fit = fit_smoother(train)
    assert median_gap(train) == 0.5
    # over 200 seeds: random walk tau <= 0.56 gaps, noise tau >= 5.6 gaps
    assert fit.tau[0] <= 1 * 0.5
    assert fit.tau[1] >= 3 * 0.5
    assert np.all(fit.rmse > 0)


def all_methods(train, fits, smooth, test, targets) -> dict:
    return {
        "locf": locf(test, targets),
        "smoother": smoother(test, targets, smooth),
        "train_mean": train_mean(train, test, targets),
        "mixed_model": mixed_model(fits, test, targets),
        "population": mixed_model(fits, test, targets, population=True),
    }


def test_no_method_reads_visits_after_the_history():
    train, test = linear_cohort(40, seed=1, p=2), linear_cohort(4, seed=2, p=2)
    test.baseline[1, 0] = np.nan  # a missing covariate is filled
    fits, smooth = fit_mixed_models(train), fit_smoother(train)
    targets = prediction_targets(test)
    before = all_methods(train, fits, smooth, test, targets)
    rng = np.random.default_rng(3)
    for row in range(test.n):
        for h in range(1, 5):
            values, observed = test.values.copy(), test.observed.copy()
            values[row, h:] = rng.normal(5, 3, values[row, h:].shape)
            observed[row, h:] = rng.random(observed[row, h:].shape) < 0.5
            changed = replace(test, values=values, observed=observed)
            after = all_methods(train, fits, smooth, changed, targets)
            own = ((targets["row"] == row) & (targets["n_history"] == h)).to_numpy()
            later = ((targets["row"] == row) & (targets["n_history"] > h)).to_numpy()
            for name in before:
                for old, new in zip(before[name], after[name], strict=True):
                    np.testing.assert_array_equal(old[own], new[own], err_msg=name)
                    np.testing.assert_array_equal(
                        old[~own & ~later], new[~own & ~later]
                    )
            if later.any():  # the perturbation is seen where it is history
                assert not np.array_equal(
                    before["locf"][0][later], after["locf"][0][later]
                )
    assert np.isfinite(before["mixed_model"][0]).all()


def test_blup_matches_statsmodels_random_effects():
    train = linear_cohort(40, seed=4)
    fit = fit_mixed_model(train, 0)
    mask = train.visits & train.observed[..., 0]
    b, cov = random_effects(
        fit, train.times, train.values[..., 0], mask, train.baseline
    )
    reference = fit.result.random_effects
    reference_cov = fit.result.random_effects_cov
    for i, pid in enumerate(train.patient_ids):
        np.testing.assert_allclose(b[i], reference[pid], rtol=1e-4, atol=1e-8)
        np.testing.assert_allclose(cov[i], reference_cov[pid], rtol=1e-4, atol=1e-10)


def test_mixed_model_prediction_is_the_blup_of_the_history():
    train, test = linear_cohort(40, seed=6), linear_cohort(3, seed=7, prefix="q")
    fit = fit_mixed_model(train, 0)
    targets = prediction_targets(test)
    k = pick(targets, "from_first_two", 1, 4)
    pred, sd = mixed_model([fit], test, targets)
    t, y = test.times[1, :2], test.values[1, :2, 0]  # its history: visits 0 and 1
    x = fit.covariates(test.baseline[1:2])[0]
    X = np.column_stack([np.ones(2), t, np.repeat(x[None], 2, 0)])
    Z = X[:, :2]
    V = Z @ fit.G @ Z.T + fit.sigma2 * np.eye(2)
    b = fit.G @ Z.T @ np.linalg.solve(V, y - X @ fit.beta)
    C = fit.G - fit.G @ Z.T @ np.linalg.solve(V, Z @ fit.G)
    z = np.array([1.0, test.times[1, 4]])
    np.testing.assert_allclose(pred[k, 0], np.r_[z, x] @ fit.beta + z @ b)
    np.testing.assert_allclose(sd[k, 0] ** 2, z @ C @ z + fit.sigma2)
    pop, pop_sd = mixed_model([fit], test, targets, population=True)
    np.testing.assert_allclose(pop[k, 0], np.r_[z, x] @ fit.beta)
    np.testing.assert_allclose(pop_sd[k, 0] ** 2, z @ fit.G @ z + fit.sigma2)


def test_mixed_model_recovers_the_slope_and_beats_the_population_fit():
    train, test = linear_cohort(60, seed=8), linear_cohort(30, seed=9, prefix="q")
    fit = fit_mixed_model(train, 0)
    assert abs(fit.beta[1] - 0.8) < 0.25  # its standard error is about 0.07
    assert abs(fit.beta[2] / fit.sd[0] - 0.5) < 0.4  # per unit of raw x; se 0.13
    np.testing.assert_allclose(np.diag(fit.G), [1.0, 0.25], rtol=0.6)
    assert abs(np.sqrt(fit.sigma2) - 0.3) < 0.1
    targets = prediction_targets(test)
    one_step = (targets["horizon"] == "one_step").to_numpy()
    truth = test.values[targets["row"], targets["visit"], 0][one_step]
    blup = mixed_model([fit], test, targets)[0][one_step, 0]
    pop = mixed_model([fit], test, targets, population=True)[0][one_step, 0]
    assert np.mean((blup - truth) ** 2) < 0.5 * np.mean((pop - truth) ** 2)


def test_comparator_predictions_table_and_info(caplog):
    train = linear_cohort(30, seed=10, p=2)
    test = linear_cohort(3, seed=11, prefix="q", p=2)
    train.observed[:, 1:, 1] = False  # y1: one value per patient, no fit, no tau
    table, info = comparator_predictions(train, test)
    methods = [
        "locf",
        "smoother",
        "train_mean",
        "mixed_model",
        "mixed_model_population",
        "mixed_multivariate",
    ]
    assert list(table["method"].unique()) == methods
    # mixed_multivariate has rows for the variables it fitted only: y0 here
    n = len(prediction_targets(test))
    assert len(table) == 5 * 2 * n + n
    multi = table[table["method"] == "mixed_multivariate"]
    assert set(multi["variable"]) == {"y0"} and multi["predicted"].notna().all()
    assert info["mixed_model_converged"] == {"y0": True, "y1": None}
    assert abs(info["mixed_model_slope"]["y0"] - 0.8) < 0.5
    assert np.isnan(info["smoother_rmse"]["y1"])
    mixed = table[table["method"].str.startswith("mixed")]
    assert mixed.loc[mixed["variable"] == "y0", "predicted"].notna().all()
    assert mixed.loc[mixed["variable"] == "y1", "predicted"].isna().all()
    assert "y1: too few data" in caplog.text


def test_pbcseq_mixed_model_beats_locf_and_the_population_fit_is_far_worse(pbcseq):
    """Known properties of this cohort, on one fold of patients held out."""
    cohort = pbcseq.cohort
    folds = make_folds(cohort.patient_ids, 5, seed=42)
    train_ids, held_ids = fold_members(folds, 0)
    train = cohort.subset(cohort.index_of(train_ids))
    table, info = comparator_predictions(
        train, cohort.subset(cohort.index_of(held_ids))
    )
    table.insert(0, "fold", 0)
    summary, _ = summarise(
        table[table["horizon"] == "one_step"], training_sd(cohort, folds), n_boot=200
    )
    ratio = summary[summary["fold"] == "pooled"].set_index("method")["ratio_mse"]
    assert ratio["mixed_model"] < 0.95
    assert ratio["mixed_model_population"] > 1.2
    assert ratio["mixed_model_population"] > ratio["mixed_model"] + 0.3
    assert all(info["mixed_model_converged"].values())


def test_a_large_cohort_predicted_in_passes_gives_the_same_table(monkeypatch):
    from odevae.evaluate.prediction import targets as targets_module

    rng = np.random.default_rng(3)

    def cohort(n, prefix):  # 2 to 9 visits per patient: passes of several widths
        times, values = [], []
        for _ in range(n):
            t = np.concatenate(
                [[0.0], np.sort(rng.uniform(0.1, 5.0, rng.integers(1, 9)))]
            )
            level, slope = rng.normal(0, 1, 2), rng.normal(0.5, 0.3, 2)
            values.append(level + slope * t[:, None] + rng.normal(0, 0.2, (len(t), 2)))
            times.append(t)
        return make_cohort(times, values, rng.normal(size=(n, 1)), prefix)

    train, test = cohort(40, "p"), cohort(12, "q")
    whole, info = comparator_predictions(train, test)
    width = test.visits.shape[1]
    monkeypatch.setattr(targets_module, "MAX_TARGET_CELLS", 3 * width)
    n_history = prediction_targets(test)["n_history"].to_numpy()
    assert len({w for _, w in targets_module.target_passes(n_history, width)}) > 3
    parts, info_parts = comparator_predictions(train, test)
    pd.testing.assert_frame_equal(parts, whole, rtol=1e-12)
    assert info_parts == info
