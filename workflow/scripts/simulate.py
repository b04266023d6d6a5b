"""Simulate a cohort with known latent dynamics (rule ``simulate``)."""

from odevae.runner import run_script
from odevae.simulate import simulate_cohort, write_cohort


def main(snakemake):
    cohort = simulate_cohort(snakemake.params.simulation, snakemake.params.seed)
    write_cohort(cohort, dict(snakemake.output.items()))


run_script(snakemake, main)
