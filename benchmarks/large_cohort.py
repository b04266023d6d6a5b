"""A registry-sized cohort end to end: seconds and peak memory per stage.

A simulated cohort shaped like a real registry export: 15,000 patients with 2 to
256 visits (skewed: follow-ups log-normal with median 9, clipped to 1..255, about
13 visits per patient and 200,000 in all), two measurements and five baseline
covariates of which 9-19 % are missing (:func:`registry_tables`, seeded), read as a
table source (time unit years).
Stages, as the workflow runs them, one fold: simulate, preprocess, split, train
(``--epochs`` epochs, one initialisation; the log line per epoch gives the
epoch's time, from which a full training is extrapolated), predict, comparators
(LOCF, smoother, mixed models on at most ``evaluation.mixed_model_max_patients``
training patients) and the mixed model's fit time against the patients it is
fitted on. Wall times on a shared machine are noisy.

    python benchmarks/large_cohort.py             # full size (minutes)
    python benchmarks/large_cohort.py --tiny      # seconds, as in the tests

``--workflow`` runs the whole workflow instead (``snakemake --cores 2`` on the
tables, described by a config file as ``config/README.md`` shows, results under
``results/large_cohort/``) and prints each rule's jobs, seconds and peak memory
from its ``benchmark:`` files, and the wall time:

    python benchmarks/large_cohort.py --workflow  # 15,000 patients, 5 folds
    python benchmarks/large_cohort.py --workflow --patients 3000 --batching random
"""

from __future__ import annotations

import argparse
import logging
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from snakemake.utils import validate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from odevae.config_schema import resolve_auto  # noqa: E402
from odevae.data.folds import fold_members, make_folds  # noqa: E402
from odevae.data.preprocess import preprocess_tables  # noqa: E402
from odevae.data.tables import write_tsv  # noqa: E402
from odevae.evaluate.predict import predict_fold  # noqa: E402
from odevae.evaluate.prediction.comparators import (  # noqa: E402
    comparator_predictions,
)
from odevae.evaluate.prediction.mixed import fit_mixed_models  # noqa: E402
from odevae.evaluate.prediction.multivariate_mixed import (  # noqa: E402
    fit_multivariate_mixed,
)
from odevae.train.training import train_fold  # noqa: E402

SIZES = {
    "full": {"n": 15000, "median": 9, "mixed": (250, 500, 1000, 2000)},
    "tiny": {"n": 60, "median": 3, "mixed": (10, 20)},
}


def cohort_config(n: int) -> dict:
    """The default config (schema defaults filled in), one initialisation."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["simulation"]["n"] = n
    config["train"]["restarts"]["n"] = 1
    config["train"]["progress_bar"] = False
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return resolve_auto(config)


def registry_tables(n: int, median: int, seed: int) -> dict[str, pd.DataFrame]:
    """Visit and baseline tables shaped like a registry export (module docstring):
    per patient du/dt = diag(a) u, u(0) = (1, 0.5), rates around one of two group
    means; labs y1 = u1 + 0.5 u2, y2 = u2 - 0.3 u1 (noise sd 0.1) at visits spread
    over a follow-up of 1-10 years; covariates x1, x2 noisy rates, x3-x5 noise."""
    rng = np.random.default_rng(seed)
    follow_ups = np.clip(np.rint(median * np.exp(rng.normal(0, 0.8, n))), 1, 255)
    counts = follow_ups.astype(int) + 1
    patient = np.repeat(np.arange(n), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    # follow-up 1-10 years whatever the number of visits, gaps within 3x of each
    # other (distinct times at the tables' 4 decimals)
    last = np.cumsum(counts) - 1
    gaps = np.where(
        first == np.arange(len(patient)), 0.0, rng.uniform(0.5, 1.5, len(patient))
    )
    time_ = np.cumsum(gaps)
    time_ -= time_[first]
    time_ *= rng.uniform(1.0, 10.0, n)[patient] / time_[last][patient]
    means = np.array([[-0.3, -0.1], [-0.1, 0.3]])
    rates = means[np.arange(n) % 2] + rng.normal(0, 0.03, (n, 2))
    u = np.array([1.0, 0.5]) * np.exp(rates[patient] * time_[:, None])
    labs = u @ np.array([[1.0, -0.3], [0.5, 1.0]]) + rng.normal(0, 0.1, (len(u), 2))
    ids = np.array([f"P{i:05d}" for i in range(n)])
    visits = pd.DataFrame(
        {"patient_id": ids[patient], "time": time_.round(4)}
        | {f"y{j + 1}": labs[:, j].round(4) for j in range(2)}
    )
    covariates = np.column_stack(
        [rates + rng.normal(0, 0.02, (n, 2)), rng.normal(0, 1, (n, 3))]
    )
    for j, share in enumerate(np.linspace(0.09, 0.19, 5)):
        covariates[rng.random(n) < share, j] = np.nan
    baseline = pd.DataFrame(
        covariates.round(4), columns=[f"x{j + 1}" for j in range(5)]
    )
    baseline.insert(0, "patient_id", ids)
    return {"visits": visits, "baseline": baseline}


def workflow_config(out: Path, name: str, train: dict | None = None) -> dict:
    """A table cohort's config for the tables in ``out`` (config/README.md's
    form); it trains the config's model as it is (no tuning candidates: each
    would be another training per fold)."""
    return {
        "name": name,
        "data": {"source": "table", "time_unit": "years"},
        "table": {
            "visits": str(out / "visits.tsv"),
            "baseline": str(out / "baseline.tsv"),
            "id_column": "patient_id",
            "time_column": "time",
            "time_unit": "years",
            "measurements": ["y1", "y2"],
        },
        "tuning": {"candidates": "none"},
        "train": {"progress_bar": False} | (train or {}),
    }


def rule_stages(benchmarks: Path) -> pd.DataFrame:
    """Per rule, from the ``benchmark:`` files under ``benchmarks``: jobs, their
    summed and longest seconds and the largest peak memory (max_rss, MB)."""
    rows = []
    for path in sorted(benchmarks.rglob("*.tsv")):
        rule = path.relative_to(benchmarks).parts[0].removesuffix(".tsv")
        record = pd.read_csv(path, sep="\t").iloc[0]
        rows.append({"rule": rule, "s": record["s"], "max_rss": record["max_rss"]})
    table = pd.DataFrame(rows).groupby("rule", sort=False)
    return (
        table.agg(
            jobs=("s", "size"),
            seconds=("s", "sum"),
            longest_s=("s", "max"),
            max_rss_mb=("max_rss", "max"),
        )
        .round(1)
        .reset_index()
        .sort_values("seconds", ascending=False)
    )


def run_workflow(
    out: Path, size: dict, cores: int, name: str, train: dict | None = None
) -> None:
    """Write the tables and a config (``train``: overrides of that section) to
    ``out``, run the workflow on them as ``name`` and print the stages
    (:func:`rule_stages`) and the wall time."""
    tables = registry_tables(size["n"], size["median"], 42)
    for table_name, table in tables.items():
        write_tsv(table, out / f"{table_name}.tsv")
    config = out / "config.yaml"
    config.write_text(
        yaml.safe_dump(workflow_config(out, name, train), sort_keys=False)
    )
    per_patient = tables["visits"].groupby("patient_id").size()
    print(
        f"{len(per_patient)} patients, {len(tables['visits'])} visits "
        f"({per_patient.min()}-{per_patient.max()}, median "
        f"{per_patient.median():g}); config {config}",
        flush=True,
    )
    benchmarks = ROOT / "results" / name / "benchmarks"
    shutil.rmtree(benchmarks, ignore_errors=True)  # this run's jobs only
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            str(cores),
            "--configfile",
            str(config),
            "--forceall",
        ],
        cwd=ROOT,
        check=True,
    )
    wall = time.perf_counter() - start
    stages = rule_stages(benchmarks)
    write_tsv(stages, out / "workflow_stages.tsv")
    print(stages.to_string(index=False))
    print(
        f"snakemake --cores {cores} end to end: {wall / 60:.1f} min wall; "
        f"largest job peak {stages['max_rss_mb'].max():.0f} MB; "
        f"summary in results/{name}/cv/summary.tsv",
        flush=True,
    )


class Stages:
    """Seconds, peak Python allocations (tracemalloc) and the process's peak RSS
    after each stage."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def run(self, name: str, step, note: str = ""):
        tracemalloc.start()
        start = time.perf_counter()
        out = step()
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
        self.rows.append(
            {
                "stage": name,
                "seconds": round(seconds, 2),
                "peak_alloc_mb": round(peak, 1),
                "max_rss_mb": round(rss, 1),
                "note": note,
            }
        )
        print(f"{name}: {seconds:.1f} s, peak {peak:.0f} MB {note}", flush=True)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="seconds, not minutes")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs")
    parser.add_argument("--out", type=Path, default=None, help="folder for tables")
    parser.add_argument(
        "--workflow", action="store_true", help="the whole workflow, per rule"
    )
    parser.add_argument("--cores", type=int, default=2, help="with --workflow")
    parser.add_argument("--patients", type=int, default=None, help="cohort size")
    parser.add_argument(
        "--batching",
        default=None,
        choices=["random", "bucketed"],
        help="with --workflow: train.batching (default: the config's auto)",
    )
    args = parser.parse_args()
    size = dict(SIZES["tiny" if args.tiny else "full"])
    name = "large_cohort" + ("_tiny" if args.tiny else "")
    if args.patients:
        size["n"] = args.patients
        name += f"_{args.patients}"
    out = (args.out or Path(tempfile.mkdtemp(prefix="large_cohort_"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.workflow:
        train = {"batching": args.batching} if args.batching else None
        name += f"_{args.batching}" if args.batching else ""
        run_workflow(out, size, args.cores, name, train)
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = cohort_config(size["n"])
    config["train"]["epochs"] = args.epochs
    stages, seed = Stages(), config["seed"]

    def simulate():
        tables = registry_tables(size["n"], size["median"], seed)
        for name, table in tables.items():
            write_tsv(table, out / f"{name}.tsv")
        return tables

    tables = stages.run("simulate", simulate)
    per_patient = tables["visits"].groupby("patient_id").size()
    shape = (
        f"{len(per_patient)} patients, {len(tables['visits'])} visits "
        f"({per_patient.min()}-{per_patient.max()}, median {per_patient.median():g})"
    )
    pre = stages.run(
        "preprocess",
        lambda: preprocess_tables(
            out / "visits.tsv",
            out / "baseline.tsv",
            config["preprocess"],
            time_unit="years",
        ),
        shape,
    )
    cohort = pre.cohort
    cohort.save(out / "cohort.npz")
    folds = stages.run(
        "split",
        lambda: make_folds(
            cohort.patient_ids,
            config["cv"]["folds"],
            seed,
            config["train"]["early_stopping"]["inner_fraction"],
        ),
    )
    write_tsv(folds, out / "folds.tsv")
    train_ids, held_ids = fold_members(folds, 0)
    stages.run(
        "train",
        lambda: train_fold(cohort, folds, 0, config, out / "train"),
        f"{args.epochs} epoch(s), fold 0, {len(train_ids)} training patients",
    )
    epoch_s = stages.rows[-1]["seconds"] / args.epochs
    train = cohort.subset(cohort.index_of(train_ids))
    held = cohort.subset(cohort.index_of(held_ids))
    cap = config["evaluation"]["mixed_model_max_patients"]
    fitted = {}

    def comparators():
        # as rule comparators: the multivariate model's fit is kept for predict
        fitted["multivariate"] = fit_multivariate_mixed(
            train, max_patients=cap, seed=seed
        )
        return comparator_predictions(
            train, held, cap, seed, multivariate=fitted["multivariate"]
        )

    stages.run(
        "comparators",
        comparators,
        f"mixed models on at most {cap} training patients",
    )
    stages.run(
        "predict",
        lambda: predict_fold(
            str(out / "train" / "model.ckpt"),
            cohort,
            folds,
            0,
            config["predict"]["grid_dt"],
            {},
            multivariate=fitted["multivariate"],
        ),
        "with the comparators' multivariate mixed model, as rule predict",
    )
    for patients in size["mixed"]:
        stages.run(
            f"mixed_fit_{patients}",
            lambda n=patients: fit_mixed_models(train, n, seed),
            f"{train.p} variables",
        )
    table = pd.DataFrame(stages.rows)
    write_tsv(table, out / "stages.tsv")
    print(table.to_string(index=False))
    full = epoch_s * (config["train"]["epochs"] if args.epochs > 1 else 150)
    print(
        f"one epoch of fold 0: {epoch_s:.1f} s incl. setup; 150 epochs (the "
        f"default) about {full / 60:.0f} min; tables in {out}"
    )


if __name__ == "__main__":
    main()
