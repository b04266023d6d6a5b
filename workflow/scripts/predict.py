"""Per-patient parameters, latent states and trajectories of one fold's model."""

from odevae.cohort import Cohort
from odevae.predict import predict_fold
from odevae.runner import run_script
from odevae.tables import read_tsv, write_tsv


def main(snakemake):
    tables = predict_fold(
        snakemake.input.checkpoint,
        Cohort.load(snakemake.input.cohort),
        read_tsv(snakemake.input.folds),
        int(snakemake.wildcards.fold),
        snakemake.params.grid_dt,
    )
    for key, table in tables.items():
        write_tsv(table, snakemake.output[key])


run_script(snakemake, main)
