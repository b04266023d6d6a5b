"""Simulate a SMArtCARE-layout registry export (rule ``simulate_registry``)."""

from odevae.data.simulate_registry import simulate_registry
from odevae.data.tables import write_tsv
from odevae.runner import run_script


def main(snakemake):
    tables = simulate_registry(snakemake.params.simulation, snakemake.params.seed)
    for key, table in tables.items():
        write_tsv(table, snakemake.output[key])


run_script(snakemake, main)
