"""Shared fixtures: the default config, tiny variants of it, small cohorts and a
copy of the workflow to run Snakemake in."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.utils import validate

from odevae.config_schema import resolve_auto
from odevae.data.batching import CohortDataset, collate
from odevae.data.cohort import Cohort
from odevae.data.ingest import fetch_rdataset, ingest_table
from odevae.data.preprocess import Preprocessed, preprocess, preprocess_tables
from odevae.data.simulate import simulate_cohort, write_cohort
from odevae.data.tables import write_tsv

ROOT = Path(__file__).resolve().parents[1]

#: The tiny config of the tests: the workflow's test run (.test/config/config.yaml)
#: as one run, without its sweep over seeds.
TINY = {
    key: value
    for key, value in yaml.safe_load(
        (ROOT / ".test" / "config" / "config.yaml").read_text()
    ).items()
    if key != "sweep"
}


def merge(base: dict, override: dict) -> dict:
    """``base`` with ``override`` merged in, recursively (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.fixture
def default_config() -> dict:
    """config/config.yaml as shipped, its cohort-dependent settings resolved as
    the workflow resolves them."""
    return resolve_auto(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))


@pytest.fixture
def tiny_config(default_config) -> dict:
    """The default config shrunk to seconds of work."""
    return merge(default_config, TINY)


TABLES = ("visits", "baseline", "truth_patients", "truth_trajectories")


@pytest.fixture
def tiny_tables(tiny_config, tmp_path) -> dict[str, Path]:
    """Paths of a tiny simulated cohort's TSV tables."""
    cohort = simulate_cohort(tiny_config["simulation"], seed=1)
    paths = {key: tmp_path / f"{key}.tsv" for key in TABLES}
    write_cohort(cohort, paths)
    return paths


@pytest.fixture
def tiny_cohort(tiny_tables) -> Cohort:
    return preprocess(tiny_tables["visits"], tiny_tables["baseline"])


def batch_of(cohort: Cohort, index) -> dict:
    """The collated batch of ``cohort``'s patients at positions ``index``."""
    dataset = CohortDataset(cohort)
    return collate([dataset[i] for i in index])


@pytest.fixture(scope="session")
def pbcseq_raw() -> pd.DataFrame:
    """survival::pbcseq as the rule fetch_pbcseq writes it."""
    return fetch_rdataset("survival", "pbcseq")


@pytest.fixture(scope="session")
def pbcseq(pbcseq_raw, tmp_path_factory) -> Preprocessed:
    """pbcseq ingested by config/pbcseq.yaml's column map and preprocessed."""
    tmp = tmp_path_factory.mktemp("pbcseq")
    pbcseq_raw.to_csv(tmp / "pbcseq.csv", index=False)
    cfg = yaml.safe_load((ROOT / "config" / "pbcseq.yaml").read_text())
    config = {"table": cfg["table"] | {"visits": str(tmp / "pbcseq.csv")}}
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    visits, baseline = ingest_table(config["table"], cfg["data"]["time_unit"])
    write_tsv(visits, tmp / "visits.tsv", digits=10)
    write_tsv(baseline, tmp / "baseline.tsv", digits=10)
    return preprocess_tables(tmp / "visits.tsv", tmp / "baseline.tsv")


def snakemake(workdir, *args, check=True):
    """Run Snakemake (2 cores) in ``workdir``; with ``check``, fail on an error."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(result.stdout + result.stderr)
    return result


@pytest.fixture
def workdir(tmp_path):
    """A copy of the workflow (Snakefile, workflow/, config/) with a tiny config."""
    shutil.copy(ROOT / "Snakefile", tmp_path)
    shutil.copytree(ROOT / "workflow", tmp_path / "workflow")
    shutil.copytree(ROOT / "config", tmp_path / "config")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return tmp_path
