"""benchmarks/real_cohorts.py: each public cohort becomes a long table and a config
that the workflow reads as it is, and a finished run becomes one summary row."""

import importlib.util
import sys

import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config, validate

from odevae.config_checks import check_config
from odevae.config_schema import load_yaml, resolve_auto
from odevae.data.ingest import ingest_table
from odevae.data.tables import write_tsv
from tests.conftest import ROOT

SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")


@pytest.fixture(scope="module")
def real_cohorts():
    spec = importlib.util.spec_from_file_location(
        "real_cohorts", ROOT / "benchmarks" / "real_cohorts.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass resolves names there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def as_the_workflow_reads(cohort, name, table, folder) -> dict:
    """The cohort's config merged over config/config.yaml, validated and resolved
    as the workflow does, for ``table`` written to ``folder``."""
    table.to_csv(folder / "visits.csv", index=False)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    update_config(config, cohort.config(name, folder / "visits.csv"))
    validate(config, SCHEMA)
    resolved = resolve_auto(config)
    check_config(resolved, load_yaml(SCHEMA))
    return resolved


@pytest.mark.parametrize(
    "name, patients, visits",
    [("autism", 155, 604), ("blackmore", 231, 945), ("opt", 823, 2166)],
)
def test_long_cohorts_are_read_as_the_workflow_reads_a_table(
    real_cohorts, tmp_path, name, patients, visits
):
    cohort = real_cohorts.COHORTS[name]
    table = cohort.visits()
    assert len(table) == visits
    assert table[cohort.id_column].nunique() == patients
    resolved = as_the_workflow_reads(cohort, name, table, tmp_path)
    # a real cohort: candidates, inner split and selection are the shipped defaults
    shipped = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert (
        resolved["tuning"]["candidates"]
        == (shipped["tuning"]["real_cohort_candidates"])
    )
    assert resolved["train"]["early_stopping"]["inner_fraction"] == 0.2
    long, covariates = ingest_table(resolved["table"], resolved["data"]["time_unit"])
    assert long["patient_id"].nunique() == patients
    assert long[list(cohort.measurements)].notna().any(axis=1).all()
    assert len(covariates) == patients


def test_a_wide_trial_becomes_one_row_per_visit(real_cohorts, tmp_path):
    """BtheB's five BDI columns become visits at their months; missed visits
    (dropout) are no rows, and every patient keeps its covariates."""
    cohort = real_cohorts.COHORTS["btheb"]
    table = cohort.visits()
    assert table["patient"].nunique() == 100
    assert len(table) == 380  # 100 baselines, 97 + 73 + 58 + 52 follow-ups
    assert set(table["month"]) == {0, 2, 4, 6, 8}
    assert table.groupby("patient")["month"].min().eq(0).all()
    first = table[table["patient"] == 1]  # the first row of the wide table
    assert first["month"].tolist() == [0, 2, 4]
    assert first["bdi"].tolist() == [29, 2, 2]
    assert set(first["treatment"]) == {"TAU"} and set(first["drug"]) == {"No"}
    config = as_the_workflow_reads(cohort, "btheb", table, tmp_path)
    long, _ = ingest_table(config["table"], config["data"]["time_unit"])
    assert long["time"].max() == 8  # months


def test_summary_row_reads_pooled_ratios_contrasts_and_choices(real_cohorts, tmp_path):
    rows = []
    for method, ratio in [("locf", 1.0), ("odevae", 0.5), ("mixed_model", 0.6)]:
        for fold in ("0", "pooled"):
            rows.append(
                {
                    "horizon": "one_step",
                    "method": method,
                    "fold": fold,
                    "n_patients": 40 if fold == "pooled" else 8,
                    "ratio_mse": ratio if fold == "pooled" else 9.0,
                    "ratio_ci_low": ratio - 0.1,
                    "ratio_ci_high": ratio + 0.1,
                }
            )
    (tmp_path / "cv").mkdir()
    write_tsv(pd.DataFrame(rows), tmp_path / "cv" / "summary.tsv")
    contrasts = pd.DataFrame(
        {
            "horizon": ["one_step", "from_first"],
            "method": ["odevae", "odevae"],
            "reference": ["odevae_prior", "odevae_prior"],
            "ratio_mse": [0.75, 0.5],
            "ratio_ci_low": [0.65, 0.4],
            "ratio_ci_high": [0.85, 0.6],
        }
    )
    write_tsv(contrasts, tmp_path / "cv" / "contrasts.tsv")
    for fold, chosen in enumerate(["history", "papers"]):
        candidates = ["papers", "history"]
        choice = pd.DataFrame(
            {"candidate": candidates, "chosen": [c == chosen for c in candidates]}
        )
        (tmp_path / "tune" / f"fold_{fold}").mkdir(parents=True)
        write_tsv(choice, tmp_path / "tune" / f"fold_{fold}" / "choice.tsv")
    row = real_cohorts.summarise(tmp_path)
    assert row["patients"] == 40
    assert row["odevae one_step"] == "0.500 (0.400-0.600)"
    assert row["mixed_model one_step"] == "0.600 (0.500-0.700)"
    assert row["odevae_selected one_step"] == "-"  # not in this run
    assert row["odevae/odevae_prior one_step"] == "0.750 (0.650-0.850)"
    assert row["odevae/odevae_prior from_first"] == "0.500 (0.400-0.600)"
    assert row["selected/mixed_model one_step"] == "-"
    assert row["odevae/mixed_model one_step"] == "-"
    assert row["candidates chosen"] == "history, papers"
    # with an ensemble: each fold's members, best first
    for fold, ranks in enumerate([[2, 1], [1, 2]]):
        choice = pd.DataFrame(
            {
                "candidate": ["papers", "history"],
                "chosen": [r == 1 for r in ranks],
                "rank": ranks,
                "ensemble": [True, True],
            }
        )
        write_tsv(choice, tmp_path / "tune" / f"fold_{fold}" / "choice.tsv")
    row = real_cohorts.summarise(tmp_path)
    assert row["candidates chosen"] == "history+papers, papers+history"


def test_a_wide_table_of_several_measurements_keeps_each_visits_columns(
    real_cohorts,
):
    """OPT: five periodontal measurements at three visits per row; each visit
    row takes that visit's columns, and a visit with none is no row."""
    table = real_cohorts.COHORTS["opt"].visits()
    first = table[table["PID"] == 100034]
    assert first["week"].tolist() == [0, 8, 16]
    assert first["GE"].tolist() == pytest.approx([1.429, 1.637, 2.077])
    assert first["BOP"].tolist() == pytest.approx([48.214, 88.690, 86.310])
    # 823 baselines; 684 and 659 later visits have the gingival index
    assert table.groupby("week")["GE"].count().tolist() == [823, 684, 659]
    assert len(table) == 2166
