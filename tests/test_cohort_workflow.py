"""Real-cohort sources through Snakemake, in a temporary copy of the workflow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import TINY, snakemake

pytestmark = pytest.mark.workflow

FAST = {k: TINY[k] for k in ("cv", "train", "predict", "figures")}


def new_cohort(path, n=12, seed=0):
    """A long-format CSV of a made-up cohort: dates, text ids, a category."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        start = pd.Timestamp("2020-01-01") + pd.Timedelta(days=int(rng.integers(300)))
        for k in range(1 + i % 4):
            rows.append(
                {
                    "subject": f"S-{i:02d}",
                    "visit_date": (start + pd.Timedelta(days=90 * k)).date(),
                    "lab_crp": round(float(rng.lognormal(1, 0.5)), 3),
                    "lab_hb": round(float(rng.normal(13, 1)), 2),
                    "sex": "fm"[i % 2],
                    "age": 30 + i,
                }
            )
    pd.DataFrame(rows).to_csv(path, index=False)


def cohort_config(**table):
    return FAST | {
        "name": "mine",
        "data": {"source": "table", "time_unit": "months"},
        "table": {
            "visits": "mine.csv",
            "id_column": "subject",
            "time_column": "visit_date",
            "time_unit": "date",
            "measurements": ["lab_*"],
            "covariates": ["age", "sex"],
            "categorical": ["sex"],
            "transforms": {"lab_crp": "log"},
        }
        | table,
    }


def write_config(workdir, name, config):
    (workdir / name).write_text(yaml.safe_dump(config))


def test_a_new_cohort_runs_from_a_config_file_alone(workdir):
    new_cohort(workdir / "mine.csv")
    write_config(workdir, "mine.yaml", cohort_config())
    snakemake(workdir, "--configfile", "mine.yaml")
    out = workdir / "results" / "mine"
    for path in (
        "data/visits.tsv",
        "preprocessed/report.tsv",
        "figures/visit_times.png",
        "figures/measurements.png",
        "figures/loss_curves.png",
        "train/fold_1/metrics.csv",
        "predict/fold_1/params.tsv",
    ):
        assert (out / path).is_file(), path
    assert not (out / "recovery.tsv").exists()  # no truth for a real cohort
    report = pd.read_csv(out / "preprocessed" / "report.tsv", sep="\t")
    dropped = report[report["item"] == "fewer than 2 visits"]
    assert dropped["patients"].tolist() == [3]  # S-00, S-04, S-08 have one visit
    kept = report[report["section"] == "kept"]
    assert kept["patients"].tolist() == [9]
    visits = pd.read_csv(out / "data" / "visits.tsv", sep="\t")
    assert visits.groupby("patient_id")["time"].diff().dropna().between(2.9, 3.0).all()

    # the same rows in another order: the same folds, training and scores
    rows = pd.read_csv(workdir / "mine.csv")
    rows.sample(frac=1.0, random_state=1).to_csv(workdir / "shuffled.csv", index=False)
    shuffled = cohort_config(visits="shuffled.csv") | {"name": "shuffled"}
    write_config(workdir, "shuffled.yaml", shuffled)
    snakemake(
        workdir, "results/shuffled/cv/summary.tsv", "--configfile", "shuffled.yaml"
    )
    again = workdir / "results" / "shuffled"
    for path in ("folds.tsv", "train/fold_1/metrics.csv", "cv/summary.tsv"):
        assert (out / path).read_bytes() == (again / path).read_bytes(), path


def registry_export(workdir, n=12, extra=3, seed=0):
    """Lab values in hours from enrolment (some before it, so negative) and a
    baseline table of the whole registry (``extra`` patients without any lab)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        start = -int(rng.integers(1, 500)) if i % 2 else int(rng.integers(0, 100))
        for k in range(2 + i % 3):
            rows.append(
                {
                    "subject": f"R{i:02d}",
                    "hours": start + 2000 * k,
                    "lab_crp": round(float(rng.lognormal(1, 0.5)), 3),
                    "lab_hb": round(float(rng.normal(13, 1)), 2),
                }
            )
    pd.DataFrame(rows).to_csv(workdir / "labs.csv", index=False)
    base = pd.DataFrame(
        {
            "subject": [f"R{i:02d}" for i in range(n + extra)],
            "age": 30 + np.arange(n + extra),
            "sex": ["fm"[i % 2] for i in range(n + extra)],
        }
    )
    base.to_csv(workdir / "registry.csv", index=False)


def test_registry_tables_in_hours_go_in_as_they_are(workdir):
    """Times before enrolment, a baseline table with patients who have no labs,
    and a follow-up of ~6000 hours with the default trajectory grid."""
    registry_export(workdir)
    config = FAST | {
        "name": "labs",
        "data": {"source": "table", "time_unit": "hours"},
        "predict": {"grid_dt": "auto"},
        "table": {
            "visits": "labs.csv",
            "baseline": "registry.csv",
            "id_column": "subject",
            "time_column": "hours",
            "time_unit": "hours",
            "measurements": ["lab_*"],
            "categorical": ["sex"],
        },
    }
    write_config(workdir, "labs.yaml", config)
    snakemake(workdir, "--configfile", "labs.yaml")
    out = workdir / "results" / "labs"
    drops = pd.read_csv(out / "data" / "ingest_drops.tsv", sep="\t")
    assert drops.set_index("reason").loc["baseline row but no visits", "patients"] == 3
    report = pd.read_csv(out / "preprocessed" / "report.tsv", sep="\t")
    dropped = report[report["section"] == "dropped"].set_index("item")
    assert dropped.loc["baseline row but no visits", "patients"] == 3
    assert report.loc[report["section"] == "kept", "patients"].tolist() == [12]
    before = report[report["step"] == "raw times before 0"].iloc[0]
    assert before["patients"] == 6 and before["value"] < 0
    shift = report[report["step"] == "shift"]["value"].tolist()
    assert shift[0] < 0 < shift[1]  # time 0 from before to after enrolment
    visits = pd.read_csv(out / "data" / "visits.tsv", sep="\t")
    assert (visits["time"] < 0).sum() == 6  # ingestion keeps the raw times
    for fold in (0, 1):
        path = out / "predict" / f"fold_{fold}" / "trajectories.tsv"
        grid = pd.read_csv(path, sep="\t")
        points = grid.groupby("patient_id").size()
        assert points.nunique() == 1 and 50 < points.iloc[0] <= 201, points
        # follow-ups of 4000-6000 h: a step of 50 or 100 h (1, 2, 2.5, 5 x 10^k)
        step = grid["time"].drop_duplicates().diff().dropna().round(6).unique()
        assert len(step) == 1 and step[0] in (50.0, 100.0), step
        log = (out / "logs" / "predict" / f"fold_{fold}.log").read_text()
        assert f"predict.grid_dt auto: a step of {step[0]:g} hours" in log
    assert (out / "cv" / "summary.tsv").is_file()


def test_registry_export_runs_end_to_end(workdir):
    config = FAST | {
        "name": "reg",
        "data": {"source": "simulate_registry"},
        "registry": {"simulation": {"n": 24, "maxntps": 4}},
    }
    write_config(workdir, "reg.yaml", config)
    snakemake(workdir, "--configfile", "reg.yaml")
    out = workdir / "results" / "reg"
    assert (out / "registry" / "visits.tsv").is_file()
    assert (out / "figures" / "measurements.png").is_file()
    assert (out / "predict" / "fold_0" / "params.tsv").is_file()
    report = pd.read_csv(out / "preprocessed" / "report.tsv", sep="\t")
    reasons = set(report.loc[report["section"] == "dropped", "item"])
    assert {"duplicate rows", "RULM_sum variance below 1"} <= reasons
    assert report.loc[report["item"] == "RULM_A", "section"].tolist() == [
        "missing share"
    ]
    # the simulated truth is scored: rates matched on training patients
    recovery = pd.read_csv(out / "recovery.tsv", sep="\t", dtype={"fold": str})
    assert recovery["fold"].tolist() == ["0", "1", "mean"]
    scored = {"accuracy_1nn", "rate_spearman_a11", "rate_spearman_a22"}
    assert scored | {"sign_agreement"} <= set(recovery.columns)
    assert np.isfinite(recovery.drop(columns="fold").to_numpy(dtype=float)).all()
    survivors = pd.read_csv(out / "folds.tsv", sep="\t")
    assert (recovery["n_train"] + recovery["n_test"])[:2].eq(len(survivors)).all()


def test_recovery_is_scored_on_simulated_registries_only(workdir):
    """The registry preset's DAG scores its truth (also over the seeds of a sweep);
    a real SMArtCARE export has no truth to score."""
    preset = ["--configfile", "config/registry.yaml"]
    dry = snakemake(workdir, *preset, "-n")
    text = dry.stdout + dry.stderr
    assert "rule registry_recovery:" in text
    assert "results/registry/recovery.tsv" in text
    write_config(workdir, "sweep.yaml", {"sweep": {"seeds": [1, 100]}})
    dry = snakemake(workdir, *preset, "sweep.yaml", "-n")
    text = dry.stdout + dry.stderr
    assert "results/registry/sweep/recovery.tsv" in text
    assert "results/registry/seed100/recovery.tsv" in text
    for name in ("visits.tsv", "baseline.tsv"):
        (workdir / name).touch()  # a dry run only needs the export to exist
    real = {
        "data": {"source": "smartcare"},
        "registry": {"visits": "visits.tsv", "baseline": "baseline.tsv"},
    }
    write_config(workdir, "real.yaml", real)
    dry = snakemake(workdir, *preset, "real.yaml", "-n")
    text = dry.stdout + dry.stderr
    # a real export tunes over the real-cohort candidates (tuning.candidates auto)
    assert "rule ingest_registry:" in text and "rule tune:" in text
    assert "rule registry_recovery:" not in text and "rule recovery:" not in text
    assert "recovery.tsv" not in text


def assert_clean_failure(result, message, leftovers):
    text = result.stdout + result.stderr
    assert result.returncode != 0
    lines = [line for line in text.splitlines() if line.startswith("odevae: ")]
    assert len(lines) == 1 and message in lines[0], text
    assert "Traceback" not in text
    for path in leftovers:
        assert not path.exists(), path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda f: f.__setitem__(
                "lab_hb", f["lab_hb"].astype(str).str.replace("1", "l", n=1)
            ),
            "mine.csv, column 'lab_hb', line 2: expected a number, found",
        ),
        (
            lambda f: f.__setitem__(
                "visit_date",
                f["visit_date"].astype(str).where(f.index != 3, "13/13/2020"),
            ),
            "mine.csv, column 'visit_date', line 5: expected an ISO date",
        ),
    ],
)
def test_bad_table_fails_in_one_line_and_leaves_no_output(
    workdir,
    edit,
    message,
):
    new_cohort(workdir / "mine.csv")
    frame = pd.read_csv(workdir / "mine.csv")
    edit(frame)
    frame.to_csv(workdir / "mine.csv", index=False)
    write_config(workdir, "mine.yaml", cohort_config())
    result = snakemake(workdir, "--configfile", "mine.yaml", check=False)
    data = workdir / "results" / "mine" / "data"
    assert_clean_failure(
        result,
        message,
        [data / "visits.tsv", data / "baseline.tsv", data / "ingest_drops.tsv"],
    )


def test_all_patients_dropped_fails_in_preprocess(workdir):
    new_cohort(workdir / "mine.csv")
    write_config(
        workdir, "mine.yaml", cohort_config() | {"preprocess": {"min_visits": 5}}
    )
    result = snakemake(workdir, "--configfile", "mine.yaml", check=False)
    out = workdir / "results" / "mine" / "preprocessed"
    assert_clean_failure(
        result,
        "config key 'preprocess.min_visits': no patient is left",
        [out / "cohort.npz", out / "patients.tsv", out / "report.tsv"],
    )


def test_fewer_patients_than_folds_fails_in_split(workdir):
    new_cohort(workdir / "mine.csv", n=4)
    config = cohort_config() | {"cv": {"folds": 4}}
    write_config(workdir, "mine.yaml", config)
    result = snakemake(workdir, "--configfile", "mine.yaml", check=False)
    assert_clean_failure(
        result,
        "config key 'cv.folds': 3 patients cannot fill 4 folds",
        [workdir / "results" / "mine" / "folds.tsv"],
    )


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"time_unit": None}, ["'table.time_unit' is required", "found null"]),
        ({"transforms": {"lab_crp": "sqrt"}}, ["'sqrt' is not one of", "transforms"]),
    ],
)
def test_config_errors_name_the_key(workdir, table, words):
    write_config(workdir, "mine.yaml", cohort_config(**table))
    result = snakemake(workdir, "--configfile", "mine.yaml", "-n", check=False)
    text = result.stdout + result.stderr
    assert result.returncode != 0
    for word in words:
        assert word in text, text


def test_smartcare_source_needs_its_files(workdir):
    write_config(workdir, "sc.yaml", FAST | {"data": {"source": "smartcare"}})
    result = snakemake(workdir, "--configfile", "sc.yaml", "-n", check=False)
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert "'registry.visits' is required when data.source is smartcare" in text
