import numpy as np
import pandas as pd
import pytest

from odevae.data.cohort import Cohort
from odevae.evaluate.prediction.scores import (
    common_targets,
    continuous_rows,
    contrasts,
    summarise,
    training_sd,
)
from odevae.evaluate.prediction.targets import COLUMNS


def table(records, **defaults) -> pd.DataFrame:
    """A stacked prediction table from (patient, visit, variable, obs, pred) rows."""
    base = {"fold": 0, "horizon": "one_step", "method": "locf", "time": 0.0}
    base.update({"n_history": 1, "sd": np.nan}, **defaults)
    rows = [
        {**base, **dict(zip(["patient_id", "visit", "variable"], r[:3], strict=True))}
        | {"observed": r[3], "predicted": r[4]}
        for r in records
    ]
    return pd.DataFrame(rows)[[*COLUMNS, "fold"]]


def unit_sd(folds=(0,), variables=("x",), sd=1.0) -> pd.DataFrame:
    return pd.DataFrame(
        [(f, v, sd) for f in folds for v in variables],
        columns=["fold", "variable", "sd"],
    )


def row(summary, method, fold="pooled", horizon="one_step"):
    sel = summary[
        (summary["method"] == method)
        & (summary["fold"] == fold)
        & (summary["horizon"] == horizon)
    ]
    assert len(sel) == 1
    return sel.iloc[0]


def test_patients_with_many_targets_do_not_dominate():
    # a: three targets with error 1 (se 1), b: one target with error 3 (se 9)
    records = [("a", j, "x", 0.0, 1.0) for j in (1, 2, 3)] + [("b", 1, "x", 0.0, 3.0)]
    records.append(("a", 1, "y", 0.0, 2.0))  # y: only a, error 2
    model = table(records, method="ode")
    locf = table([(*r[:3], 0.0, 1.0) for r in records])
    summary, per_variable = summarise(
        pd.concat([model, locf]), unit_sd(variables=("x", "y")), n_boot=50
    )
    pooled = row(summary, "ode")
    # x: mean over patients (1 + 9) / 2 = 5, not the row mean 3; y: 4
    assert pooled["mse"] == pytest.approx((5 + 4) / 2)
    assert pooled["mae"] == pytest.approx(((1 + 3) / 2 + 2) / 2)
    assert pooled["n_patients"] == 2 and pooled["n_targets"] == 5
    assert pooled["ratio_mse"] == pytest.approx(4.5)
    pv = per_variable[per_variable["method"] == "ode"].set_index("variable")
    assert pv.loc["x", "mse"] == pytest.approx(5.0)
    assert pv.loc["y", "mse"] == pytest.approx(4.0)
    assert pv.loc["x", "n_patients"] == 2 and pv.loc["y", "n_patients"] == 1
    assert list(summary["method"].unique()) == ["locf", "ode"]


def test_training_sd_uses_training_patients_and_standardises_errors():
    # patients p0 (fold 0), p1 and p2 (fold 1); variables a, b; T = 2
    values = np.array(
        [[[0.0, 7.0], [4.0, 0.0]], [[1.0, 2.0], [3.0, 2.0]], [[5.0, 2.0], [100, 0]]]
    )
    observed = np.ones((3, 2, 2), bool)
    observed[0, 1, 1] = False  # p0 has b only once
    observed[2, 1, 0] = False  # the 100 is not observed
    visits = np.ones((3, 2), bool)
    visits[2, 1] = False  # and not a visit
    cohort = Cohort(
        np.array(["p0", "p1", "p2"]),
        np.zeros((3, 2)),
        values,
        observed,
        visits,
        np.zeros((3, 0)),
        np.array(["a", "b"]),
        np.array([], dtype=str),
    )
    folds = pd.DataFrame({"patient_id": ["p0", "p1", "p2"], "fold": [0, 1, 1]})
    sd = training_sd(cohort, folds).set_index(["fold", "variable"])["sd"]
    # fold 0 trains on p1, p2: a = [1, 3, 5] -> 2, b = [2, 2, 2] -> 0 -> 1
    # fold 1 trains on p0: a = [0, 4] -> sqrt(8), b = [7] -> undefined -> 1
    assert sd[(0, "a")] == pytest.approx(2.0)
    assert sd[(0, "b")] == 1.0
    assert sd[(1, "a")] == pytest.approx(np.sqrt(8))
    assert sd[(1, "b")] == 1.0

    pred = pd.concat(
        [
            table([("p0", 1, "a", 0.0, 4.0)], fold=0),
            table([("p1", 1, "a", 0.0, 4.0)], fold=1),
        ]
    )
    summary, _ = summarise(pred, training_sd(cohort, folds), n_boot=10)
    assert row(summary, "locf", "0")["mse"] == pytest.approx((4 / 2) ** 2)
    assert row(summary, "locf", "0")["mae"] == pytest.approx(4 / 2)
    assert row(summary, "locf", "1")["mse"] == pytest.approx(16 / 8)
    with pytest.raises(ValueError, match="no training SD"):
        summarise(pred, unit_sd(folds=(0,), variables=("a",)))


def test_common_targets_drops_a_target_for_all_methods():
    keys = [("a", 1, "x"), ("a", 2, "x"), ("b", 1, "x"), ("b", 2, "x")]
    locf = table([(*k, 1.0, 0.0) for k in keys])
    ode = table(
        [
            (*keys[0], 1.0, 0.5),
            (*keys[1], 1.0, np.nan),  # no prediction from ode
            (*keys[2], np.nan, 0.5),  # not observed
        ],  # keys[3]: no row from ode
        method="ode",
    )
    # a horizon with only locf is scored on its own
    alone = table([("a", 1, "x", 1.0, 0.0)], horizon="from_first")
    pred = pd.concat([alone, locf, ode], ignore_index=True)
    kept = common_targets(pred)
    assert len(kept) == 3
    assert set(kept.loc[kept["horizon"] == "one_step", "method"]) == {"locf", "ode"}
    assert set(zip(kept["patient_id"], kept["visit"], strict=True)) == {("a", 1)}
    summary, _ = summarise(pred, unit_sd(), n_boot=10)
    assert list(summary["horizon"].unique()) == ["one_step", "from_first"]
    assert row(summary, "ode")["n_targets"] == 1


def toy_methods(n=30, seed=1) -> pd.DataFrame:
    """locf, an exact copy of it and a better method on n patients."""
    rng = np.random.default_rng(seed)
    records = [
        (f"p{i}", j, v, rng.normal(), None)
        for i in range(n)
        for j in range(1, 1 + i % 3 + 1)
        for v in ("x", "y")
    ]
    noise = np.random.default_rng(seed + 1).normal(size=(2, len(records)))
    parts = []
    for method, e in (("locf", noise[0]), ("copy", noise[0]), ("better", noise[1])):
        e = e * (0.6 if method == "better" else 1.0)
        pred = [(*r[:4], r[3] + k) for r, k in zip(records, e, strict=True)]
        parts.append(table(pred, method=method))
    return pd.concat(parts, ignore_index=True)


def test_bootstrap_interval_of_the_ratio():
    pred = toy_methods()
    sd = unit_sd(variables=("x", "y"))
    summary, _ = summarise(pred, sd, n_boot=200, seed=3)
    copy = row(summary, "copy")
    assert copy["ratio_mse"] == 1.0
    assert copy["ratio_ci_low"] == copy["ratio_ci_high"] == 1.0
    better = row(summary, "better")
    locf_mse = row(summary, "locf")["mse"]
    assert better["ratio_mse"] == pytest.approx(better["mse"] / locf_mse)
    assert better["ratio_mse"] < 1
    assert better["ratio_ci_low"] <= better["ratio_mse"] <= better["ratio_ci_high"]
    assert better["ratio_ci_low"] < better["ratio_ci_high"]
    # only the pooled rows carry an interval
    assert summary.loc[summary["fold"] != "pooled", "ratio_ci_low"].isna().all()
    again, _ = summarise(pred, sd, n_boot=200, seed=3)
    pd.testing.assert_frame_equal(summary, again)
    other, _ = summarise(pred, sd, n_boot=200, seed=4)
    assert row(other, "better")["ratio_ci_low"] != better["ratio_ci_low"]
    assert list(summary["method"].unique()) == ["locf", "better", "copy"]
    with pytest.raises(ValueError, match="reference method 'mean' is absent"):
        summarise(pred, sd, reference="mean")


def test_coverage_uses_the_methods_own_sd_in_model_units():
    errors = [0.5, 1.0, 1.5, 2.5]
    records = [(f"p{i}", 1, "x", 0.0, e) for i, e in enumerate(errors)]
    pred = pd.concat([table(records), table(records, method="ode", sd=1.0)])
    summary, _ = summarise(pred, unit_sd(sd=10.0), n_boot=10)
    ode = row(summary, "ode")
    assert ode["coverage_1sd"] == pytest.approx(2 / 4)
    assert ode["coverage_2sd"] == pytest.approx(3 / 4)
    assert ode["mse"] == pytest.approx(np.mean(np.square(errors) / 100))
    assert np.isnan(row(summary, "locf")["coverage_1sd"])


def test_binary_variables_get_a_brier_score_instead_of_coverage():
    """A 0/1 variable's 'sd' is √(p(1 − p)), no predictive interval: it is scored
    by the Brier score of its probability, and coverage counts continuous
    variables only."""
    records = [
        *[(f"p{i}", 1, "x", 0.0, 0.5) for i in range(4)],
        *[(f"p{i}", 1, "flag", float(i % 2), 0.0) for i in range(4)],
    ]
    probs = [(*r[:4], 0.8 if r[2] == "flag" else r[3] + 0.5) for r in records]
    pred = pd.concat(
        [table(records), table(probs, method="ode", sd=1.0)], ignore_index=True
    )
    summary, _ = summarise(pred, unit_sd(variables=("x", "flag")), n_boot=10)
    ode = row(summary, "ode")
    assert ode["coverage_1sd"] == 1.0  # x only: the flag's misses do not count
    assert ode["brier"] == pytest.approx(np.mean([0.64, 0.04, 0.64, 0.04]))
    assert row(summary, "locf")["brier"] == pytest.approx(0.5)


def test_mean_and_sd_rows_over_folds():
    # ode: error 1 in fold 0, 3 in fold 1; locf: 1 and 2
    def both(fold, patient, e_ode, e_locf):
        r = [(patient, 1, "x", 0.0, e_ode)]
        return [
            table(r, fold=fold, method="ode"),
            table([(patient, 1, "x", 0.0, e_locf)], fold=fold),
        ]

    pred = pd.concat([*both(0, "a", 1.0, 1.0), *both(1, "b", 3.0, 2.0)])
    summary, _ = summarise(pred, unit_sd(folds=(0, 1)), n_boot=10)
    ode = summary[summary["method"] == "ode"]
    assert list(ode["fold"]) == ["0", "1", "mean", "sd", "pooled"]
    assert row(summary, "ode", "mean")["mse"] == pytest.approx(5.0)
    assert row(summary, "ode", "sd")["mse"] == pytest.approx(np.sqrt(32))
    # mean of per-fold ratios (1 and 9/4), not the pooled ratio 5 / 2.5
    assert row(summary, "ode", "mean")["ratio_mse"] == pytest.approx(1.625)
    assert row(summary, "ode", "sd")["ratio_mse"] == pytest.approx(
        np.std([1.0, 2.25], ddof=1)
    )
    assert row(summary, "ode")["ratio_mse"] == pytest.approx(2.0)
    assert row(summary, "ode")["n_patients"] == 2
    assert row(summary, "ode", "0")["n_patients"] == 1


def test_contrasts_pair_any_two_methods_with_the_summarys_ratio_and_interval():
    """cv/contrasts.tsv: a pair's ratio is the ratio of the two methods' pooled
    MSEs, its interval the same paired bootstrap as the summary's; pairs with an
    absent method are left out."""
    pred = toy_methods()
    sd = unit_sd(variables=("x", "y"))
    summary, _ = summarise(pred, sd, n_boot=200, seed=3)
    pairs = [("better", "locf"), ("better", "copy"), ("copy", "locf"), ("x", "locf")]
    table = contrasts(pred, sd, pairs, n_boot=200, seed=3)
    one = table[table["horizon"] == "one_step"].set_index(["method", "reference"])
    assert list(one.index) == pairs[:3]
    better = row(summary, "better")
    vs_locf = one.loc[("better", "locf")]
    assert vs_locf["ratio_mse"] == pytest.approx(better["ratio_mse"])
    assert vs_locf["ratio_ci_low"] == pytest.approx(better["ratio_ci_low"])
    assert vs_locf["ratio_ci_high"] == pytest.approx(better["ratio_ci_high"])
    assert one.loc[("better", "copy"), "ratio_ci_high"] < 1
    assert one.loc[("copy", "locf"), "ratio_mse"] == 1.0


def part_of_the_variables() -> pd.DataFrame:
    """locf with errors 1 on x and 3 on y; "part" with error 0.5 on x only."""
    records = [
        (f"p{i}", 1, v, 0.0, 1.0 if v == "x" else 3.0)
        for i in range(6)
        for v in ("x", "y")
    ]
    only_x = [(*r[:4], 0.5) for r in records if r[2] == "x"]
    return pd.concat([table(records), table(only_x, method="part")], ignore_index=True)


def test_a_method_scored_on_some_variables_is_compared_on_those():
    """A method with rows for x only (as mixed_multivariate has for continuous
    measurements) leaves y scored for the others, and its ratio divides by the
    reference's MSE on x alone."""
    pred = part_of_the_variables()
    sd = unit_sd(variables=("x", "y"))
    summary, per_variable = summarise(pred, sd, n_boot=20)
    part = row(summary, "part")
    assert part["ratio_mse"] == pytest.approx(0.25)
    assert part["ratio_ci_low"] == pytest.approx(0.25)
    assert row(summary, "locf")["mse"] == pytest.approx(5.0)  # y still scored
    assert set(per_variable.loc[per_variable["method"] == "part", "variable"]) == {"x"}


def test_a_contrast_with_a_method_of_some_variables_compares_those_alone():
    """A contrast against a reference scored on x only (as mixed_multivariate is on
    the continuous measurements) divides the method's MSE on x by the reference's
    on x, not the method's MSE over x and y."""
    pred = part_of_the_variables()
    pairs = [("locf", "part")]
    table_ = contrasts(pred, unit_sd(variables=("x", "y")), pairs, n_boot=20)
    assert table_["ratio_mse"].item() == pytest.approx(4.0)  # 1² / 0.5², x alone
    assert table_["ratio_ci_high"].item() == pytest.approx(4.0)


def test_continuous_rows_leave_out_the_0_1_variables():
    records = [
        *[(f"p{i}", 1, "x", 0.3 * i, 0.0) for i in range(4)],
        *[(f"p{i}", 1, "flag", float(i % 2), 0.0) for i in range(4)],
        *[(f"p{i}", 1, "ones", 1.0, 0.0) for i in range(4)],  # one value: continuous
    ]
    pred = table(records)
    assert set(continuous_rows(pred)["variable"]) == {"x", "ones"}
    assert continuous_rows(pred[pred["variable"] != "flag"]) is None
    assert continuous_rows(pred[pred["variable"] == "flag"]).empty  # 0/1 only
    # with mixed_multivariate: the variables it predicts, whatever their values
    multi = table([r for r in records if r[2] == "x"], method="mixed_multivariate")
    both = pd.concat([pred, multi], ignore_index=True)
    assert set(continuous_rows(both)["variable"]) == {"x"}


def test_a_variable_set_names_its_unknown_measurement():
    """evaluation.variable_sets: the set's rows, or one error naming the set's
    config key, the unknown name and the cohort's measurements."""
    from odevae.errors import InputError
    from odevae.evaluate.prediction.scores import variable_set_rows

    pred = pd.DataFrame({"variable": ["x1", "x2", "x3", "x1"], "value": range(4)})
    rows = variable_set_rows(pred, "pair", ["x1", "x3"])
    assert rows["value"].tolist() == [0, 2, 3]
    with pytest.raises(InputError) as err:
        variable_set_rows(pred, "labs", ["x1", "bili"])
    assert err.value.key == "evaluation.variable_sets.labs"
    assert "['bili'] not among" in str(err.value) and "'x2'" in str(err.value)
