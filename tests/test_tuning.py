"""Tuning: settings chosen per fold on its inner validation patients."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from odevae.data.folds import make_folds
from odevae.errors import InputError
from odevae.evaluate.prediction.selection import inner_selection
from odevae.evaluate.tuning import choose_candidate, ensemble_members
from odevae.model.trained import load_trained
from odevae.train.training import train_fold
from tests.conftest import TINY, merge, snakemake

INNER = {"train": {"early_stopping": {"inner_fraction": 0.25, "patience": 2}}}
CANDIDATES = {
    "kl_high": {"loss": {"kl_weight": 0.5}},
    "kl_low": {"loss": {"kl_weight": 0.05}},
}


def selection(best: str, mse: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "predictor": ["odevae", "odevae_mixed"],
            "mse": [mse, mse + 1] if best == "odevae" else [mse + 1, mse],
            "selected": [best == "odevae", best != "odevae"],
        }
    )


def test_the_candidate_whose_selected_predictor_scores_lowest_is_chosen():
    choice = choose_candidate(
        {"a": selection("odevae", 0.9), "b": selection("odevae_mixed", 0.7)}
    )
    assert choice["candidate"].tolist() == ["a", "b"]
    assert choice["predictor"].tolist() == ["odevae", "odevae_mixed"]
    assert choice["mse"].tolist() == [0.9, 0.7]
    assert choice["chosen"].tolist() == [False, True]


def test_the_ensemble_is_the_best_candidates_in_order():
    """tuning.ensemble: the k lowest inner scores, ranked (ties in the candidates'
    order, a score that is not a number last); all where fewer candidates."""
    tables = {
        name: selection("odevae", mse)
        for name, mse in [("a", 0.8), ("b", float("nan")), ("c", 0.7), ("d", 0.8)]
    }
    choice = choose_candidate(tables, "odevae", ensemble=2)
    assert choice["rank"].tolist() == [2, 4, 1, 3]
    assert choice["chosen"].tolist() == [False, False, True, False]
    assert choice["ensemble"].tolist() == [True, False, True, False]
    paths = [f"tune/fold_0/{name}/model.ckpt" for name in "dcba"]  # any order
    path = {name: f"tune/fold_0/{name}/model.ckpt" for name in "abcd"}
    assert ensemble_members(choice, paths) == [path["c"], path["a"]]
    # a candidate without a finite score never joins an ensemble
    everyone = choose_candidate(tables, "odevae", ensemble=9)
    assert everyone["ensemble"].tolist() == [True, False, True, True]
    assert ensemble_members(everyone, paths) == [path["c"], path["a"], path["d"]]
    one = choose_candidate(tables, "odevae", ensemble=1)
    assert ensemble_members(one, paths) == [path["c"]]
    with pytest.raises(ValueError, match="no checkpoint of candidate"):
        ensemble_members(choice, paths[:2])
    with pytest.raises(InputError, match="tuning.ensemble"):
        choose_candidate(tables, "odevae", ensemble=0)


def test_a_named_predictor_chooses_the_setting_where_it_scores_lowest():
    """tuning.predictor: odevae picks the candidate whose own ODE-VAE prediction
    is best on the inner patients, whatever its selected predictor scores."""
    tables = {"a": selection("odevae", 0.9), "b": selection("odevae_mixed", 0.7)}
    choice = choose_candidate(tables, "odevae")
    assert choice["predictor"].tolist() == ["odevae", "odevae"]
    assert choice["mse"].tolist() == [0.9, 1.7]
    assert choice["chosen"].tolist() == [True, False]
    with pytest.raises(
        InputError, match="config key 'tuning.predictor'.*no odevae_inc"
    ):
        choose_candidate(tables, "odevae_increment")


def test_tunings_inner_selection_is_what_prediction_would_compute(
    tiny_cohort, tiny_config, tmp_path
):
    """predict reuses the chosen candidate's selection table: the model that
    tuning scores is the kept checkpoint's, so scoring it again changes nothing."""
    config = merge(merge(tiny_config, INNER), {"train": {"epochs": 6}})
    folds = make_folds(tiny_cohort.patient_ids, 2, config["seed"], 0.25)
    model = train_fold(tiny_cohort, folds, 1, config, tmp_path)
    in_tuning = inner_selection(model, tiny_cohort, folds, 1)
    loaded = load_trained(str(tmp_path / "model.ckpt"))
    assert (in_tuning["scored_on"] == "inner_validation").all()
    pd.testing.assert_frame_equal(
        in_tuning, inner_selection(loaded, tiny_cohort, folds, 1)
    )


@pytest.mark.workflow
def test_each_fold_trains_every_candidate_and_keeps_the_inner_best(workdir):
    tuned = {"tuning": {"candidates": CANDIDATES, "ensemble": 1}}
    config = merge(TINY, INNER | tuned)
    (workdir / "tune.yaml").write_text(yaml.safe_dump(config))
    target = "results/tiny/predict/fold_1/predictions.tsv"
    snakemake(workdir, target, "--configfile", "tune.yaml")
    out = workdir / "results" / "tiny"
    choice = pd.read_csv(out / "tune" / "fold_1" / "choice.tsv", sep="\t")
    assert choice["candidate"].tolist() == list(CANDIDATES)
    chosen = choice.loc[choice["chosen"], "candidate"].item()
    assert choice.loc[choice["chosen"], "mse"].item() == choice["mse"].min()
    for name in CANDIDATES:  # each scored on the same inner patients
        scored = pd.read_csv(out / "tune" / "fold_1" / name / "selection.tsv", sep="\t")
        assert (scored["scored_on"] == "inner_validation").all()
        assert scored["n_patients"].nunique() == 1
    kept = (out / "train" / "fold_1" / "model.ckpt").read_bytes()
    assert kept == (out / "tune" / "fold_1" / chosen / "model.ckpt").read_bytes()
    # prediction's odevae_selected is the one tuning scored for the chosen candidate
    scored = pd.read_csv(out / "tune" / "fold_1" / chosen / "selection.tsv", sep="\t")
    used = pd.read_csv(out / "predict" / "fold_1" / "selection.tsv", sep="\t")
    pd.testing.assert_frame_equal(scored, used)
    hparams = yaml.safe_load((out / "train" / "fold_1" / "hparams.yaml").read_text())
    assert hparams["loss"]["kl_weight"] == CANDIDATES[chosen]["loss"]["kl_weight"]
    assert not (out / "tune" / "fold_0").exists()  # only what the target needs
    # one job trained the fold's candidates (tuning.jobs fold, the default); one
    # job per candidate (tuning.jobs candidate) gives the same files
    assert (out / "logs" / "tune" / "fold_1.log").is_file()
    # switching how the work is split retrains nothing: the params are the same
    (workdir / "jobs.yaml").write_text(
        yaml.safe_dump({"tuning": {"jobs": "candidate"}})
    )
    switched = snakemake(
        workdir, target, "--configfile", "tune.yaml", "jobs.yaml", "-n"
    )
    assert "Nothing to be done" in switched.stdout + switched.stderr, switched.stdout
    # and with an ensemble of the two (tuning.ensemble 2, the default), predict
    # averages both models and chooses odevae_selected for the average
    apart = merge(config, {"name": "apart", "tuning": {"jobs": "candidate"}})
    apart["tuning"].pop("ensemble")
    (workdir / "apart.yaml").write_text(yaml.safe_dump(apart))
    snakemake(
        workdir,
        "results/apart/predict/fold_1/predictions.tsv",
        "--configfile",
        "apart.yaml",
    )
    again = workdir / "results" / "apart"
    logs = sorted(p.name for p in (again / "logs" / "tune" / "fold_1").iterdir())
    assert logs == sorted(f"{name}.log" for name in CANDIDATES)
    pair = pd.read_csv(again / "tune/fold_1/choice.tsv", sep="\t")
    assert choice["ensemble"].tolist() == choice["chosen"].tolist()
    assert pair["ensemble"].all()
    pd.testing.assert_frame_equal(
        choice.drop(columns="ensemble"), pair.drop(columns="ensemble")
    )
    log = (again / "logs/predict/fold_1.log").read_text()
    assert "the mean of an ensemble of 2 models" in log
    rescored = pd.read_csv(again / "predict/fold_1/selection.tsv", sep="\t")
    assert (rescored["scored_on"] == "inner_validation").all()
    assert rescored["n_patients"].tolist() == used["n_patients"].tolist()
    assert not rescored["mse"].equals(used["mse"])
    both, alone = (
        pd.read_csv(d / "predict/fold_1/predictions.tsv", sep="\t")
        for d in (again, out)
    )
    own = both["method"] == "odevae"
    assert not np.allclose(both.loc[own, "predicted"], alone.loc[own, "predicted"])
    keys = ["patient_id", "visit", "horizon", "method"]
    pd.testing.assert_frame_equal(both[keys], alone[keys])
    for name in CANDIDATES:
        tuned = f"tune/fold_1/{name}"
        for file in ("metrics.csv", "selection.tsv"):
            assert (out / tuned / file).read_bytes() == (
                again / tuned / file
            ).read_bytes(), (name, file)
        weights = [
            torch.load(d / tuned / "model.ckpt", weights_only=False)["state_dict"]
            for d in (out, again)
        ]
        assert weights[0].keys() == weights[1].keys()
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.workflow
@pytest.mark.parametrize("jobs", ["fold", "candidate"])
def test_a_sweep_tunes_every_seed(workdir, jobs):
    config = merge(
        TINY,
        INNER
        | {
            "tuning": {"candidates": CANDIDATES, "jobs": jobs},
            "sweep": {"seeds": [1, 100]},
        },
    )
    (workdir / "sweep.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(workdir, "--configfile", "sweep.yaml", "-n")
    text = dry.stdout + dry.stderr
    for seed in (1, 100):
        for fold in (0, 1):
            assert f"results/tiny/seed{seed}/tune/fold_{fold}/choice.tsv" in text
    tunes = len(re.findall(r"^rule tune:", text, re.M))
    assert tunes == 2 * 2 * (len(CANDIDATES) if jobs == "candidate" else 1), text


@pytest.mark.workflow
@pytest.mark.parametrize(
    ("tuning", "inner", "words"),
    [
        ({"a": {"loss": {"kl_weight": 0.1}}}, False, "inner_fraction > 0"),
        ({"a": {"cv": {"folds": 3}}}, True, "'tuning.candidates.a.cv'"),
        ({"a": {"loss": {"kl_weight": -1}}}, True, "tuning candidate 'a'"),
        (
            {"a": {"train": {"early_stopping": {"inner_fraction": 0.5}}}},
            True,
            "cannot change the inner split",
        ),
    ],
)
def test_a_bad_tuning_config_fails_before_any_job_in_one_line(
    workdir, tuning, inner, words
):
    config = merge(TINY, (INNER if inner else {}) | {"tuning": {"candidates": tuning}})
    (workdir / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--configfile", "bad.yaml", "-n", check=False)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("odevae:")]
    assert len(lines) == 1 and words in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
