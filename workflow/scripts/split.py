"""Patient-grouped cross-validation folds and each fold's inner split (rule
``split``)."""

from odevae.data.cohort import Cohort
from odevae.data.folds import make_folds
from odevae.data.tables import write_tsv
from odevae.runner import run_script


def main(snakemake):
    cohort = Cohort.load(snakemake.input.cohort)
    params = snakemake.params
    folds = make_folds(cohort.patient_ids, params.k, params.seed, params.inner_fraction)
    write_tsv(folds, snakemake.output.folds)


run_script(snakemake, main)
