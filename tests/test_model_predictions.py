"""The model's held-out predictors: no leakage from visit j on, the documented
formulas on hand-made cases, and the back-transform to original units."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from odevae.data.folds import fitted_and_validation, make_folds
from odevae.data.preprocess import preprocess
from odevae.data.simulate import simulate_cohort, write_cohort
from odevae.evaluate.prediction import targets as targets_module
from odevae.evaluate.prediction.comparators import locf
from odevae.evaluate.prediction.hybrid import (
    latent_step_variance,
    random_effects_offsets,
)
from odevae.evaluate.prediction.latent import (
    decode,
    encode,
    latent_predictions,
    ols_extrapolation,
)
from odevae.evaluate.prediction.model import (
    METHODS,
    SELECTABLE,
    combined,
    decoded_predictions,
    ensemble_mean,
    model_predictions,
)
from odevae.evaluate.prediction.multivariate_mixed import (
    fit_multivariate_mixed,
    multivariate_mixed,
)
from odevae.evaluate.prediction.scores import variable_sd
from odevae.evaluate.prediction.selection import (
    combination_weight,
    inner_multivariate,
    inner_selection,
    select_predictor,
    standardised_mse,
)
from odevae.evaluate.prediction.targets import (
    in_both_units,
    prediction_targets,
    target_passes,
)
from odevae.model.loss import combine_history
from odevae.train.model_setup import build_model
from tests.conftest import TABLES


@pytest.fixture(
    params=[
        ("initial_value", "none"),
        ("statistical", "none"),
        ("initial_value", "gru"),
        ("statistical", "gru"),
        ("initial_value", "gru_state"),
        ("statistical", "gru_state"),
    ],
    ids=lambda p: "-".join(p),
)
def model(request, tiny_cohort, tiny_config):
    torch.manual_seed(0)
    kind, history = request.param
    loss = {**tiny_config["loss"], "kind": kind}
    config = {
        **tiny_config["model"],
        "history": history.removesuffix("_state"),
        "history_state": history.endswith("_state"),
    }
    model = build_model(tiny_cohort, config, loss, lr=1e-3)
    encoder = model.core.history_encoder
    if encoder is not None:  # an encoder whose output moves θ (and the state)
        # std 0.5 moves θ visibly; with a state head, 0.2 keeps the solutions from
        # exploding (a saturated decoder would hide what the state reads)
        std = 0.5 if encoder.state_head is None else 0.2
        torch.nn.init.normal_(encoder.head.weight, std=std)
        if encoder.state_head is not None:
            torch.nn.init.normal_(encoder.state_head.weight, std=0.5)
    return model.eval()


def split(cohort):
    return cohort.subset(np.arange(10)), cohort.subset(np.arange(10, cohort.n))


def test_targets_cover_every_later_visit_per_horizon(tiny_cohort):
    targets = prediction_targets(tiny_cohort)
    later = int(tiny_cohort.visits[:, 1:].sum())
    counts = targets["horizon"].value_counts()
    assert counts["one_step"] == counts["from_first"] == later
    assert counts["from_first_two"] == int(tiny_cohort.visits[:, 2:].sum())
    one = targets[targets["horizon"] == "one_step"]
    assert (one["n_history"] == one["visit"]).all()


def test_no_prediction_reads_the_target_visit_or_later(model, tiny_cohort):
    train, test = split(tiny_cohort)
    before, before_latent = model_predictions(model, train, test)
    row = int(np.argmax(test.visits.sum(1)))  # the patient with most visits
    pid = test.patient_ids[row]
    T = int(test.visits[row].sum())
    assert T >= 3
    cut = T - 2  # perturb the last two visits: targets with n_history <= cut stay
    values, observed = test.values.copy(), test.observed.copy()
    values[row, cut:] += 5.0
    observed[row, cut:, 0] = ~observed[row, cut:, 0]
    changed = dataclasses.replace(test, values=values, observed=observed)
    after, after_latent = model_predictions(model, train, changed)
    keep = (before["patient_id"] == pid) & (before["n_history"] <= cut)
    assert keep.sum() > 0
    pd.testing.assert_series_equal(
        before.loc[keep, "predicted"], after.loc[keep, "predicted"]
    )
    # the same in latent space, where a saturated decoder cannot hide a change
    kept = (before_latent["patient_id"] == pid) & (before_latent["n_history"] <= cut)
    pd.testing.assert_series_equal(
        before_latent.loc[kept, "predicted"], after_latent.loc[kept, "predicted"]
    )
    # ... while the one-step target whose history holds the change does move
    moved = (after["patient_id"] == pid) & (after["n_history"] > cut)
    assert moved.sum() > 0
    assert not np.allclose(
        before.loc[moved, "predicted"], after.loc[moved, "predicted"]
    )


def test_a_large_cohort_predicted_in_passes_gives_the_same_predictions(
    model, tiny_cohort, monkeypatch
):
    train, test = split(tiny_cohort)
    targets, whole, encoded = latent_predictions(model, train, test)
    width = test.visits.shape[1]
    cap = 4 * width  # several passes of targets with similar history lengths
    monkeypatch.setattr(targets_module, "MAX_TARGET_CELLS", cap)
    passes = target_passes(targets["n_history"].to_numpy(), width)
    assert len(passes) > 3
    for group, used in passes:
        assert used == targets["n_history"].to_numpy()[group].max() <= width
        assert len(group) * used <= cap or len(group) == 1
    every = np.sort(np.concatenate([group for group, _ in passes]))
    assert (every == np.arange(len(targets))).all()
    _, parts, encoded_parts = latent_predictions(model, train, test)
    assert set(parts) == set(whole)
    for method, value in whole.items():
        torch.testing.assert_close(parts[method], value, msg=method)
    torch.testing.assert_close(encoded_parts, encoded)


def test_initial_value_one_step_is_encode_solve_decode(tiny_cohort, tiny_config):
    torch.manual_seed(1)
    model = build_model(tiny_cohort, tiny_config["model"], tiny_config["loss"], 1e-3)
    train, test = split(tiny_cohort)
    table = model_predictions(model, train, test)[0]
    mu, theta = encode(model, test)
    row = int(np.argmax(test.visits.sum(1)))
    j = 2
    dt = torch.tensor(
        [[test.times[row, j] - test.times[row, j - 1]]], dtype=torch.float32
    )
    z = model.solve(mu[row, j - 1][None], theta[row][None], dt)[:, 0]
    mean, sd = decode(model, z)
    mine = table[
        (table["patient_id"] == test.patient_ids[row])
        & (table["visit"] == j)
        & (table["horizon"] == "one_step")
        & (table["method"] == "odevae")
    ]
    np.testing.assert_allclose(mine["predicted"], mean[0], rtol=1e-5)
    np.testing.assert_allclose(mine["sd"], sd[0], rtol=1e-5)
    assert set(table["method"]) == set(METHODS)


def test_combined_prediction_uses_inverse_variance_weights():
    # one target, three history starts (slots 0..2) of a 4-slot patient; 1-d latent
    local = torch.tensor([[[0.0], [2.0], [3.0], [99.0]]], dtype=torch.float64)
    history = torch.tensor([[True, True, True, False]])
    # start 0: var{0, 2, 3}; start 1: var{2, 3}; start 2 (alone): var{2, 3}
    v0, v12 = np.var([0.0, 2.0, 3.0], ddof=1), np.var([2.0, 3.0], ddof=1)
    w = np.array([1 / v0, 1 / v12, 1 / v12])
    expected = (w * np.array([0.0, 2.0, 3.0])).sum() / w.sum()
    combined = combine_history(local, history, weighting=True)
    assert combined.item() == pytest.approx(expected)
    plain = combine_history(local, history, weighting=False)
    assert plain.item() == pytest.approx(5.0 / 3.0)
    single = combine_history(local, torch.tensor([[True, False, False, False]]), True)
    assert single.item() == pytest.approx(0.0)


def test_ols_extrapolation_continues_a_latent_line_through_the_last_visit():
    times = torch.tensor([[0.0, 1.0, 2.0, 0.0]])
    mu = torch.stack([2.0 * times + 1.0, -times], -1)
    mu[0, 2] += torch.tensor([0.5, 0.0])  # the line is shifted through the last mean
    history = torch.tensor([[True, True, True, False]])
    last = torch.tensor([2])
    out = ols_extrapolation(mu, times, history, last, torch.tensor([4.0]))
    slope = np.polyfit([0, 1, 2], mu[0, :3, 0].numpy(), 1)[0]
    assert out[0, 0].item() == pytest.approx(mu[0, 2, 0].item() + 2 * slope)
    assert out[0, 1].item() == pytest.approx(-4.0)
    flat = ols_extrapolation(
        mu,
        times,
        torch.tensor([[True, False, False, False]]),
        torch.tensor([0]),
        torch.tensor([4.0]),
    )
    assert torch.equal(flat[0], mu[0, 0])  # one visit: no slope, the state itself


def test_original_units_back_transform_values_and_sd():
    table = pd.DataFrame(
        {
            "variable": ["a", "b"],
            "observed": [np.log(3.0), 1.0],
            "predicted": [np.log(2.0), 1.5],
            "sd": [0.1, 0.2],
        }
    )
    both = in_both_units(table, {"a": "log"})
    original = both[both["units"] == "original"].set_index("variable")
    assert original.loc["a", "observed"] == pytest.approx(3.0)
    assert original.loc["a", "predicted"] == pytest.approx(2.0)
    assert original.loc["a", "sd"] == pytest.approx(2.0 * 0.1, rel=1e-6)  # delta
    assert original.loc["b", ["observed", "predicted", "sd"]].tolist() == [
        1.0,
        1.5,
        0.2,
    ]
    model_rows = both[both["units"] == "model"].drop(columns="units")
    pd.testing.assert_frame_equal(model_rows.reset_index(drop=True), table)


def test_latent_table_scores_against_the_target_visits_own_encoding(model, tiny_cohort):
    train, test = split(tiny_cohort)
    _, latent = model_predictions(model, train, test)
    mu, _ = encode(model, test)
    one = latent[(latent["horizon"] == "one_step") & (latent["dim"] == 1)]
    rows = test.index_of(one["patient_id"])
    visits = one["visit"].to_numpy(copy=True)
    np.testing.assert_allclose(one["target"], mu[rows, visits, 0].numpy(), rtol=1e-6)
    roundtrip = one[one["method"] == "vae_roundtrip"]
    rows = test.index_of(roundtrip["patient_id"])
    np.testing.assert_allclose(
        roundtrip["predicted"],
        mu[rows, roundtrip["visit"].to_numpy() - 1, 0].numpy(),
        rtol=1e-6,
    )


def test_random_effects_learn_a_patients_own_level(tiny_cohort, tiny_config):
    """Stable individual levels the model cannot see are recovered from history."""
    torch.manual_seed(0)
    cohort = level_shifted(tiny_cohort)
    model = build_model(cohort, tiny_config["model"], tiny_config["loss"], 1e-3)
    train, test = split(cohort)
    table, _ = model_predictions(model.eval(), train, test)
    one = table[
        (table["horizon"] == "one_step")
        & (table["variable"] == "x1")
        & table["observed"].notna()
    ]
    err = (one["predicted"] - one["observed"]) ** 2
    mse = err.groupby(one["method"]).mean()
    assert mse["odevae_mixed"] < 0.25 * mse["odevae"]


def test_mixed_sd_covers_the_latent_steps_error_on_training_patients(
    tiny_cohort, tiny_config
):
    """odevae_mixed's sd² is the residual mixed model's predictive variance plus
    the training patients' mean square of decode(ẑ_j) − decode(μ_j) per horizon."""
    torch.manual_seed(0)
    model = build_model(tiny_cohort, tiny_config["model"], tiny_config["loss"], 1e-3)
    model.eval()
    train, test = split(tiny_cohort)
    targets, _, decoded, _ = decoded_predictions(model, train, test)
    offset, offset_sd = random_effects_offsets(model, train, test, targets)
    step = latent_step_variance(model, train)["odevae"]
    wider = step.reindex(targets["horizon"].to_numpy()).to_numpy()
    assert (wider > 0).all()
    fitted = np.isfinite(offset)
    assert fitted.any()
    np.testing.assert_allclose(
        decoded["odevae_mixed"][1][fitted],
        np.sqrt(offset_sd**2 + wider)[fitted],
    )


def level_shifted(cohort):
    """``cohort`` with a stable individual level on x1 that covariates cannot tell."""
    level = np.random.default_rng(0).normal(0.0, 5.0, size=(cohort.n, 1))
    values = cohort.values.copy()
    values[..., 0] += level
    return dataclasses.replace(cohort, values=values)


def test_increment_adds_the_predicted_change_to_the_last_observation(
    model, tiny_cohort
):
    train, test = split(tiny_cohort)
    observed = test.observed.copy()
    observed[0, :, 1] = False  # patient 0 never shows x2
    test = dataclasses.replace(test, observed=observed)
    table, _ = model_predictions(model, train, test)
    wide = table.pivot_table(
        index=["horizon", "patient_id", "visit", "variable"],
        columns="method",
        values="predicted",
    )
    targets = prediction_targets(test)
    last, _ = locf(test, targets)
    keys = pd.MultiIndex.from_arrays(
        [
            np.repeat(targets[k].to_numpy(), test.p)
            for k in ("horizon", "patient_id", "visit")
        ]
        + [np.tile(test.measurement_names, len(targets))],
        names=["horizon", "patient_id", "visit", "variable"],
    )
    last = pd.Series(last.ravel(), index=keys).loc[wide.index]
    change = wide["odevae"] - wide["vae_roundtrip"]
    seen = last.notna()
    assert seen.any() and (~seen).any()
    np.testing.assert_allclose(
        wide.loc[seen, "odevae_increment"], (last + change)[seen], rtol=1e-5
    )
    np.testing.assert_allclose(  # never observed before: the decoded prediction
        wide.loc[~seen, "odevae_increment"], wide.loc[~seen, "odevae"], rtol=1e-6
    )


def test_selection_on_inner_patients_prefers_a_predictor_that_keeps_own_levels(
    tiny_cohort, tiny_config
):
    torch.manual_seed(0)
    cohort = level_shifted(tiny_cohort)
    model = build_model(cohort, tiny_config["model"], tiny_config["loss"], 1e-3)
    fitted, scored = split(cohort)
    table = select_predictor(model.eval(), fitted, scored, "inner_validation")
    assert list(table["predictor"]) == list(SELECTABLE)
    assert table["selected"].sum() == 1
    mse = table.set_index("predictor")["mse"]
    assert mse["odevae_increment"] < mse["odevae"]
    assert mse["odevae_mixed"] < mse["odevae"]
    chosen = table.loc[table["selected"], "predictor"].item()
    assert mse[chosen] == mse.min() and chosen != "odevae"
    assert (table["n_patients"] == scored.n).all()


def single_score(cohort, v=0):
    """``cohort`` with measurement ``v`` alone."""
    return dataclasses.replace(
        cohort,
        values=cohort.values[..., v : v + 1],
        observed=cohort.observed[..., v : v + 1],
        measurement_names=cohort.measurement_names[v : v + 1],
    )


def test_a_single_score_runs_the_ode_on_the_score_itself(
    tiny_cohort, tiny_config, caplog
):
    """``model.autoencoder: auto`` gives a single continuous score the identity
    autoencoder: a visit's roundtrip is the visit, so ``vae_roundtrip`` (no time
    step) is LOCF, and ``odevae`` moves the last value by the ODE alone."""
    single = single_score(tiny_cohort)
    config = {**tiny_config["model"], "autoencoder": "auto", "history": "gru"}
    with caplog.at_level("INFO", logger="odevae.train.model_setup"):
        model = build_model(single, config, tiny_config["loss"], lr=1e-3)
    assert "the ODE runs on the measurements" in caplog.text
    train, test = split(single)
    table = model_predictions(model, train, test)[0]
    one_step = table[table["horizon"] == "one_step"].set_index(["patient_id", "visit"])
    targets = prediction_targets(test)
    last, _ = locf(test, targets.reset_index(drop=True))
    rows = targets["horizon"].to_numpy() == "one_step"
    want = pd.Series(
        last[rows, 0],
        index=pd.MultiIndex.from_frame(targets.loc[rows, ["patient_id", "visit"]]),
    ).sort_index()
    roundtrip = one_step[one_step["method"] == "vae_roundtrip"]["predicted"]
    np.testing.assert_allclose(roundtrip.sort_index(), want, rtol=1e-6)
    # two measurements keep the learned autoencoder; a 0/1 score cannot be a state
    two = build_model(tiny_cohort, config, tiny_config["loss"], lr=1e-3)
    assert type(two.core.encoder).__name__ == "Encoder"
    with pytest.raises(ValueError, match="identity needs continuous measurements"):
        build_model(
            single,
            {**config, "autoencoder": "identity"},
            tiny_config["loss"],
            lr=1e-3,
            binary=[True],
        )


def two_score_cohort(tiny_config, tmp_path, n=60):
    """A simulated cohort of ``n`` patients with two scores: enough for the
    multivariate mixed model (5 patients per random effect)."""
    simulation = {**tiny_config["simulation"], "n": n, "p": 2}
    paths = {key: tmp_path / f"{key}.tsv" for key in TABLES}
    write_cohort(simulate_cohort(simulation, seed=3), paths)
    return preprocess(paths["visits"], paths["baseline"])


def test_combined_averages_odevae_mixed_and_the_multivariate_mixed_model(
    tiny_config, tmp_path
):
    """odevae_combined is the mean of odevae_mixed and mixed_multivariate (fitted on
    the same training patients) with the root mean variance; with too few patients
    for the multivariate model it is odevae_mixed."""
    cohort = two_score_cohort(tiny_config, tmp_path)
    torch.manual_seed(0)
    model = build_model(cohort, tiny_config["model"], tiny_config["loss"], 1e-3)
    train, test = cohort.subset(np.arange(45)), cohort.subset(np.arange(45, 60))
    targets, _, decoded, _ = decoded_predictions(model.eval(), train, test)
    mean, sd = multivariate_mixed(fit_multivariate_mixed(train), test, targets)
    assert np.isfinite(mean).all()
    hybrid_mean, hybrid_sd = decoded["odevae_mixed"]
    np.testing.assert_allclose(
        decoded["odevae_combined"][0], 0.5 * (hybrid_mean + mean), rtol=1e-6
    )
    np.testing.assert_allclose(
        decoded["odevae_combined"][1],
        np.sqrt(0.5 * (hybrid_sd**2 + sd**2)),
        rtol=1e-6,
    )
    # no combined prediction reads its target visit or later
    row = int(np.argmax(test.visits.sum(1)))
    cut = int(test.visits[row].sum()) - 2
    values = test.values.copy()
    values[row, cut:] += 5.0
    changed = dataclasses.replace(test, values=values)
    _, _, after, _ = decoded_predictions(model, train, changed)
    keep = ((targets["row"] == row) & (targets["n_history"] <= cut)).to_numpy()
    assert keep.any()
    np.testing.assert_array_equal(
        after["odevae_combined"][0][keep], decoded["odevae_combined"][0][keep]
    )
    few = cohort.subset(np.arange(8))  # 8 patients for 4 random effects
    _, _, decoded, _ = decoded_predictions(model, few, test)
    for k in (0, 1):
        np.testing.assert_array_equal(
            decoded["odevae_combined"][k], decoded["odevae_mixed"][k]
        )


def test_the_combination_weight_leans_to_the_better_predictor(tiny_cohort):
    """combination_weight: 1 when the hybrid is exact, 0 when the classical model
    is, the least-squares weight in between, and NaN with nothing to fit (the
    classical model predicts nothing)."""
    targets = prediction_targets(tiny_cohort)
    row, visit = targets["row"].to_numpy(), targets["visit"].to_numpy()
    truth = tiny_cohort.values[row, visit]
    sd = np.ones(tiny_cohort.p)
    off = truth + 1.0
    assert combination_weight(tiny_cohort, targets, truth, off, sd) == 1.0
    assert combination_weight(tiny_cohort, targets, off, truth, sd) == 0.0
    below = truth - 1.0  # truth is the midpoint of the two
    assert combination_weight(tiny_cohort, targets, off, below, sd) == 0.5
    far = truth + 3.0  # w·(t+1) + (1 − w)·(t+3) = t at w = 1.5: clipped
    assert combination_weight(tiny_cohort, targets, off, far, sd) == 1.0
    nothing = np.full_like(truth, np.nan)
    assert np.isnan(combination_weight(tiny_cohort, targets, off, nothing, sd))


def test_the_selection_fits_the_combination_weight_on_the_scored_patients(
    tiny_config, tmp_path
):
    """select_predictor: odevae_combined's weight is the least-squares weight on the
    scored (inner) patients' one-step targets, its MSE that of the combination with
    it; the held-out prediction applies a given weight."""
    cohort = two_score_cohort(tiny_config, tmp_path)
    torch.manual_seed(0)
    model = build_model(cohort, tiny_config["model"], tiny_config["loss"], 1e-3)
    model.eval()
    fitted, scored = cohort.subset(np.arange(45)), cohort.subset(np.arange(45, 60))
    table = select_predictor(model, fitted, scored, "inner_validation")
    rows = table.set_index("predictor")
    weight = rows.loc["odevae_combined", "weight"]
    assert 0.0 <= weight <= 1.0
    assert rows.drop(index="odevae_combined")["weight"].isna().all()
    targets, _, decoded, _ = decoded_predictions(model, fitted, scored)
    one = (targets["horizon"] == "one_step").to_numpy()
    hybrid, classical = decoded["odevae_mixed"], decoded["mixed_multivariate"]
    sd = variable_sd(fitted)
    expected = combination_weight(
        scored, targets[one], hybrid[0][one], classical[0][one], sd
    )
    assert weight == pytest.approx(expected)
    mixed = combined(hybrid, classical, weight)[0][one]
    assert rows.loc["odevae_combined", "mse"] == pytest.approx(
        standardised_mse(scored, targets[one], mixed, sd)
    )
    # model_predictions applies the weight it is given
    table, _ = model_predictions(model, fitted, scored, weight=0.2)
    wide = table.pivot_table(
        index=["horizon", "patient_id", "visit", "variable"],
        columns="method",
        values="predicted",
    )
    _, _, decoded, _ = decoded_predictions(model, fitted, scored, weight=0.2)
    np.testing.assert_allclose(
        decoded["odevae_combined"][0],
        0.2 * decoded["odevae_mixed"][0] + 0.8 * decoded["mixed_multivariate"][0],
        rtol=1e-6,
    )
    assert not np.allclose(wide["odevae_combined"], wide["odevae_mixed"])


def test_a_given_multivariate_fit_predicts_as_one_fitted_here(tiny_config, tmp_path):
    """predict combines the multivariate mixed model that comparators fitted on the
    same training patients (tuning: one inner fit per fold for every candidate):
    the predictions and the inner selection equal those that fit it themselves."""
    cohort = two_score_cohort(tiny_config, tmp_path)
    torch.manual_seed(0)
    model = build_model(cohort, tiny_config["model"], tiny_config["loss"], 1e-3)
    model.eval()
    fitted, scored = cohort.subset(np.arange(45)), cohort.subset(np.arange(45, 60))
    fit = fit_multivariate_mixed(fitted)
    assert fit is not None
    pd.testing.assert_frame_equal(
        model_predictions(model, fitted, scored, weight=0.3, multivariate=fit)[0],
        model_predictions(model, fitted, scored, weight=0.3)[0],
    )
    pd.testing.assert_frame_equal(
        select_predictor(model, fitted, scored, "inner", multivariate=fit),
        select_predictor(model, fitted, scored, "inner"),
    )
    # the fit given is the one used: none given (none possible), odevae_combined
    # is odevae_mixed, which it is not with the fit
    for given, same in ((None, True), (fit, False)):
        table = model_predictions(model, fitted, scored, multivariate=given)[0]
        wide = table.pivot_table(
            index=["horizon", "patient_id", "visit", "variable"],
            columns="method",
            values="predicted",
        )
        assert np.array_equal(wide["odevae_combined"], wide["odevae_mixed"]) == same


def test_tunings_one_inner_fit_is_the_one_each_selection_would_make(
    tiny_config, tmp_path
):
    """A tune job fits the inner multivariate mixed model once for its candidates:
    on the inner training patients, as each candidate's selection would."""
    cohort = two_score_cohort(tiny_config, tmp_path)
    folds = make_folds(cohort.patient_ids, 2, 0, 0.25)
    torch.manual_seed(0)
    model = build_model(cohort, tiny_config["model"], tiny_config["loss"], 1e-3)
    model.eval()
    fit = inner_multivariate(cohort, folds, 1)
    assert fit is not None
    fitted, _ = fitted_and_validation(folds, 1)
    expected = fit_multivariate_mixed(cohort.subset(cohort.index_of(fitted)))
    np.testing.assert_array_equal(fit.psi, expected.psi)
    pd.testing.assert_frame_equal(
        inner_selection(model, cohort, folds, 1, multivariate=fit),
        inner_selection(model, cohort, folds, 1),
    )
    # no inner split: nothing to fit
    assert inner_multivariate(cohort, make_folds(cohort.patient_ids, 2, 0), 1) is None
    with pytest.raises(ValueError, match="a fit, None or 'fit'"):
        inner_selection(model, cohort, folds, 1, multivariate="fits.npz")


def second_model(tiny_cohort, tiny_config, seed=1):
    """Another model of the same cohort (other initial weights)."""
    torch.manual_seed(seed)
    model = build_model(tiny_cohort, tiny_config["model"], tiny_config["loss"], 1e-3)
    return model.eval()


def test_an_ensemble_predicts_the_mixture_of_its_members(tiny_cohort, tiny_config):
    """tuning.ensemble: every decoded predictor is the mean of the members', its
    sd that of their equal mixture; latent predictions are the first member's; the
    multivariate fit is shared. An ensemble of one is the model itself."""
    train, test = split(tiny_cohort)
    first, other = (second_model(tiny_cohort, tiny_config, s) for s in (0, 1))
    fit = fit_multivariate_mixed(train)
    singles = [
        decoded_predictions(m, train, test, multivariate=fit) for m in (first, other)
    ]
    targets, latent, decoded, encoded = decoded_predictions(
        [first, other], train, test, multivariate=fit
    )
    pd.testing.assert_frame_equal(targets, singles[0][0])
    assert torch.equal(encoded, singles[0][3])
    assert all(torch.equal(latent[m], singles[0][1][m]) for m in latent)
    for method, (mean, sd) in decoded.items():
        (m1, s1), (m2, s2) = singles[0][2][method], singles[1][2][method]
        np.testing.assert_allclose(mean, (m1 + m2) / 2, equal_nan=True)
        mixture = np.sqrt((s1**2 + s2**2) / 2 + ((m1 - m2) / 2) ** 2)
        np.testing.assert_allclose(sd, mixture, equal_nan=True)
    assert not np.allclose(decoded["odevae"][0], singles[0][2]["odevae"][0])
    alone = decoded_predictions([first], train, test, multivariate=fit)
    for method, (mean, sd) in alone[2].items():
        np.testing.assert_array_equal(mean, singles[0][2][method][0])
        np.testing.assert_array_equal(sd, singles[0][2][method][1])
    mean, sd = ensemble_mean([(np.array([1.0, 3.0]), np.array([1.0, 0.0]))] * 3)
    np.testing.assert_allclose(mean, [1.0, 3.0])
    np.testing.assert_allclose(sd, [1.0, 0.0])
    with pytest.raises(ValueError, match="at least one model"):
        decoded_predictions([], train, test)


def test_no_ensemble_prediction_reads_the_target_visit_or_later(
    tiny_cohort, tiny_config
):
    """The perturbation test of one model, for an ensemble of two."""
    train, test = split(tiny_cohort)
    members = [second_model(tiny_cohort, tiny_config, s) for s in (0, 1)]
    before, _ = model_predictions(members, train, test)
    row = int(np.argmax(test.visits.sum(1)))
    cut = int(test.visits[row].sum()) - 2
    values = test.values.copy()
    values[row, cut:] += 5.0
    after, _ = model_predictions(
        members, train, dataclasses.replace(test, values=values)
    )
    pid = test.patient_ids[row]
    keep = (before["patient_id"] == pid) & (before["n_history"] <= cut)
    assert keep.sum() > 0
    pd.testing.assert_series_equal(
        before.loc[keep, "predicted"], after.loc[keep, "predicted"]
    )
    moved = (after["patient_id"] == pid) & (after["n_history"] > cut)
    assert not np.allclose(
        before.loc[moved, "predicted"], after.loc[moved, "predicted"]
    )
