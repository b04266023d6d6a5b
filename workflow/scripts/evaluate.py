"""Held-out prediction scores of the model and the comparators (rule ``evaluate``):
``cv/summary.tsv`` (per horizon, method and fold) and ``cv/per_variable.tsv``."""

import logging

from odevae.cohort import Cohort
from odevae.prediction.scores import summarise, training_sd
from odevae.runner import run_script
from odevae.tables import read_tsv, read_tsvs, write_tsv

log = logging.getLogger("odevae.evaluate")


def main(snakemake):
    pred = read_tsvs([*snakemake.input.model, *snakemake.input.comparators])
    pred = pred[pred["units"] == "model"]
    scales = training_sd(
        Cohort.load(snakemake.input.cohort), read_tsv(snakemake.input.folds)
    )
    summary, per_variable = summarise(
        pred,
        scales,
        reference=snakemake.params.reference,
        n_boot=snakemake.params.n_boot,
        seed=snakemake.params.seed,
    )
    write_tsv(summary, snakemake.output.summary)
    write_tsv(per_variable, snakemake.output.per_variable)
    pooled = summary[(summary["fold"] == "pooled") & (summary["horizon"] == "one_step")]
    for row in pooled.itertuples():
        log.info("one step, %s: MSE ratio to LOCF %.3f", row.method, row.ratio_mse)


run_script(snakemake, main)
