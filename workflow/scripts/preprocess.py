"""Long-format visit and baseline tables → the model's cohort (rule ``preprocess``)."""

from odevae.preprocess import preprocess
from odevae.runner import run_script
from odevae.tables import write_tsv


def main(snakemake):
    cohort = preprocess(snakemake.input.visits, snakemake.input.baseline)
    cohort.save(snakemake.output.cohort)
    write_tsv(cohort.summary(), snakemake.output.patients)


run_script(snakemake, main)
