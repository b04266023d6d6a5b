"""Simulate a cohort with known latent dynamics (rule ``simulate``)."""

from odevae.data.simulate import simulate_cohort, write_cohort
from odevae.runner import run_script


def main(snakemake):
    cohort = simulate_cohort(snakemake.params.simulation, snakemake.params.seed)
    write_cohort(cohort, dict(snakemake.output.items()))


run_script(snakemake, main)
