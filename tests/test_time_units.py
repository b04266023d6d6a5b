"""Time units: any unit in, the same model out (the ODE runs on an internal scale)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from odevae.data.folds import make_folds
from odevae.data.ingest import ingest_table
from odevae.data.preprocess import preprocess_tables
from odevae.data.simulate import simulate_cohort
from odevae.data.tables import write_tsv
from odevae.data.transforms import DAYS_PER
from odevae.errors import InputError
from odevae.evaluate.predict import AUTO_STEPS, auto_grid_dt, predict_fold
from odevae.model.module import ODEVAE
from odevae.train.model_setup import resolve_time_scale
from odevae.train.training import train_fold
from tests.conftest import merge
from tests.test_ingest import table_cfg

EPOCHS = 4


def long_table(tiny_config, years_per_unit: float) -> pd.DataFrame:
    """The tiny simulated cohort as one visit table with covariates, its times read
    as ``years_per_unit`` years each (so the follow-up is chosen by the caller)."""
    sim = simulate_cohort(tiny_config["simulation"], seed=1)
    visits, baseline = sim.visits.copy(), sim.baseline
    visits["time"] = visits["time"] * years_per_unit
    return visits.merge(baseline, on="patient_id")


def cohort_in(table: pd.DataFrame, unit: str, tmp_path, digits: int = 17):
    """``table`` (times in years) written with times in ``unit``, ingested with
    ``unit`` as input and output unit, and preprocessed."""
    out = table.copy()
    out["time"] = (out["time"] * DAYS_PER["years"] / DAYS_PER[unit]).round(digits)
    path = tmp_path / f"visits_{unit}.csv"
    out.to_csv(path, index=False, float_format="%.17g")
    x = [c for c in table.columns if c.startswith("x")]
    z = [c for c in table.columns if c.startswith("z")]
    cfg = table_cfg(visits=str(path), time_unit=unit, measurements=x, covariates=z)
    visits, baseline = ingest_table(cfg, unit)
    write_tsv(visits, tmp_path / f"v_{unit}.tsv", digits=17)
    write_tsv(baseline, tmp_path / f"b_{unit}.tsv", digits=17)
    result = preprocess_tables(
        tmp_path / f"v_{unit}.tsv", tmp_path / f"b_{unit}.tsv", time_unit=unit
    )
    return result.cohort


def table_config(tiny_config, **model) -> dict:
    return merge(
        tiny_config,
        {
            "data": {"source": "table"},
            "train": {"epochs": EPOCHS, "accelerator": "cpu"},
            "model": model,
        },
    )


def test_one_table_in_hours_days_and_years_trains_to_the_same_losses(
    tiny_config, tmp_path
):
    table = long_table(tiny_config, years_per_unit=1.0)
    config = table_config(tiny_config)
    metrics, scales, rates = {}, {}, {}
    for unit in ("hours", "days", "years"):
        cohort = cohort_in(table, unit, tmp_path)
        assert cohort.time_unit == unit
        folds = make_folds(cohort.patient_ids, 2, seed=0)
        out = tmp_path / unit
        model = train_fold(cohort, folds, 0, config, out)
        scales[unit] = model.time_scale
        metrics[unit] = pd.read_csv(out / "metrics.csv")
        tables = predict_fold(str(out / "model.ckpt"), cohort, folds, 0, 1e9, {})
        rates[unit] = tables["params"][["a11", "a22"]].to_numpy()
    # the internal scale is the median follow-up, whatever the unit
    assert scales["hours"] == pytest.approx(24 * scales["days"], rel=1e-9)
    assert scales["years"] * 365.25 == pytest.approx(scales["days"], rel=1e-9)
    assert 0.1 < scales["years"] < 20
    reference = metrics["years"]
    losses = ["train/loss", "val/loss", "val/nll", "val/consistency"]
    for unit in ("hours", "days"):
        for key in losses:
            a = metrics[unit][key].dropna().to_numpy()
            b = reference[key].dropna().to_numpy()
            assert len(a) == EPOCHS and np.isfinite(a).all(), (unit, key)
            np.testing.assert_allclose(a, b, rtol=1e-5, err_msg=f"{unit} {key}")
    # params.tsv: rates per data unit, so per hour = per day / 24 = per year / 8766
    np.testing.assert_allclose(rates["hours"] * 24, rates["days"], rtol=1e-4)
    np.testing.assert_allclose(rates["days"] * 365.25, rates["years"], rtol=1e-4)


def test_long_follow_up_in_days_overflows_on_the_raw_scale_but_trains_on_auto(
    tiny_config, tmp_path
):
    """Follow-ups up to ~5000 days: solving the ODE in days gives a non-finite
    loss from the first step; the automatic internal scale trains."""
    table = long_table(tiny_config, years_per_unit=1.4)  # up to ~14 years
    cohort = cohort_in(table, "days", tmp_path)
    assert 4000 < cohort.times.max() < 5200
    folds = make_folds(cohort.patient_ids, 2, seed=0)
    raw = table_config(tiny_config, time_scale=1.0)
    with pytest.raises(InputError, match=r"epoch 0: the training loss is"):
        train_fold(cohort, folds, 0, raw, tmp_path / "raw")
    model = train_fold(cohort, folds, 0, table_config(tiny_config), tmp_path / "auto")
    loss = pd.read_csv(tmp_path / "auto" / "metrics.csv")["train/loss"].dropna()
    assert len(loss) == EPOCHS and np.isfinite(loss).all()
    # the scale is stored in the checkpoint and restored with the model
    restored = ODEVAE.load_from_checkpoint(
        tmp_path / "auto" / "model.ckpt", map_location="cpu"
    )
    assert restored.time_scale == model.time_scale > 100


def test_auto_time_scale_is_one_for_simulated_cohorts(tiny_cohort):
    assert tiny_cohort.time_unit == "a.u."
    assert resolve_time_scale("auto", tiny_cohort) == 1.0
    assert resolve_time_scale(2.5, tiny_cohort) == 2.5
    in_days = dataclasses.replace(tiny_cohort, time_unit="days")
    assert in_days.subset(np.arange(3)).time_unit == "days"
    assert resolve_time_scale("auto", in_days) == pytest.approx(
        tiny_cohort.median_follow_up()
    )


def test_solutions_depend_on_time_over_scale_only():
    torch.manual_seed(0)
    a = ODEVAE(p=3, q=2, time_scale=1.0)
    b = ODEVAE(p=3, q=2, time_scale=24.0)
    b.load_state_dict(a.state_dict())
    u0, theta = torch.randn(4, 2), torch.randn(4, 2)
    t = torch.rand(4, 5) * 3
    torch.testing.assert_close(a.solve(u0, theta, t), b.solve(u0, theta, t * 24))
    torch.testing.assert_close(b.rates_per_data_unit(theta), theta / 24)
    with pytest.raises(ValueError, match="time_scale"):
        ODEVAE(p=3, q=2, time_scale=0.0)


def test_a_trajectory_grid_too_fine_for_the_follow_up_names_the_key(
    tiny_config, tmp_path
):
    table = long_table(tiny_config, years_per_unit=1.0)
    cohort = cohort_in(table, "hours", tmp_path)
    folds = make_folds(cohort.patient_ids, 2, seed=0)
    config = table_config(tiny_config)
    config["train"]["epochs"] = 1
    train_fold(cohort, folds, 0, config, tmp_path / "fold")
    with pytest.raises(InputError, match=r"config key 'predict.grid_dt'.*hours"):
        predict_fold(str(tmp_path / "fold" / "model.ckpt"), cohort, folds, 0, 0.5, {})


@pytest.mark.parametrize(
    ("follow_up", "step"),
    [(8.5, 0.1), (10.0, 0.1), (14.3, 0.2), (5152.0, 100.0), (8090.0, 100.0)],
)
def test_auto_grid_step_is_a_nice_number_with_50_to_100_steps(follow_up, step):
    assert auto_grid_dt(follow_up) == step
    assert 50 <= follow_up / step <= AUTO_STEPS


def test_default_grid_is_bounded_in_seconds_hours_days_and_years(
    default_config, tiny_config, tmp_path, caplog
):
    """Follow-ups up to ~14 years in four units: the default predict.grid_dt (auto)
    gives the same 50-100 step grid, in each unit's numbers."""
    assert default_config["predict"]["grid_dt"] == "auto"
    table = long_table(tiny_config, years_per_unit=1.4)
    config = table_config(tiny_config)
    config["train"]["epochs"] = 1
    steps = {}
    for unit in ("seconds", "hours", "days", "years"):
        cohort = cohort_in(table, unit, tmp_path)
        folds = make_folds(cohort.patient_ids, 2, seed=0)
        train_fold(cohort, folds, 0, config, tmp_path / unit)
        with caplog.at_level("INFO", logger="odevae.evaluate.predict"):
            tables = predict_fold(
                str(tmp_path / unit / "model.ckpt"), cohort, folds, 0, "auto", {}
            )
        grid = tables["trajectories"].query("patient_id == @cohort.patient_ids[0]")
        times = grid["time"].to_numpy()
        assert 50 < len(times) <= 2 * AUTO_STEPS + 1, unit
        assert times[-1] >= cohort.times[cohort.visits].max() - 1e-9
        steps[unit] = (times[1] - times[0]) * DAYS_PER[unit] / DAYS_PER["years"]
        assert f"predict.grid_dt auto: a step of {times[1]:g} {unit}" in caplog.text
    # the same step up to the rounding to 1, 2, 2.5 or 5 x 10^k in each unit
    assert max(steps.values()) / min(steps.values()) <= 2.5
