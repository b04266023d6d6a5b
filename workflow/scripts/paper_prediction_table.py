"""The follow-up paper's prediction table for one run, held out (rule
``paper_prediction_table``): ODE vs OLS vs LOCF in latent and data space, and the
linear mixed model."""

from odevae.data.tables import read_tsv, read_tsvs, write_tsv
from odevae.paper import prediction_table
from odevae.runner import run_script


def main(snakemake):
    summary = read_tsv(snakemake.input.summary).astype({"fold": str})
    table = prediction_table(summary, read_tsvs(snakemake.input.latent))
    write_tsv(table, snakemake.output.table, digits=4)


run_script(snakemake, main)
