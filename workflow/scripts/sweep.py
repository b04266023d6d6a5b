"""Held-out scores and recovery over the seeds of a sweep (rule ``sweep``)."""

from odevae.data.tables import read_tsv, write_tsv
from odevae.evaluate.sweep import recovery_over_seeds, scores_over_seeds
from odevae.runner import run_script


def main(snakemake):
    seeds = snakemake.config["sweep"]["seeds"]
    summaries = dict(zip(seeds, map(read_tsv, snakemake.input.summaries), strict=True))
    write_tsv(scores_over_seeds(summaries), snakemake.output.summary, digits=4)
    if "recovery" in snakemake.output.keys():
        recoveries = map(read_tsv, snakemake.input.recoveries)
        table = recovery_over_seeds(dict(zip(seeds, recoveries, strict=True)))
        write_tsv(table, snakemake.output.recovery, digits=4)


run_script(snakemake, main)
