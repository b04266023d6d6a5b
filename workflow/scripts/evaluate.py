"""Held-out prediction scores of the model and the comparators (rule ``evaluate``):
``cv/summary.tsv`` (per horizon, method and fold), ``cv/summary_continuous.tsv``
(the same over the variables ``mixed_multivariate`` predicts, so that every method
is scored on the same variables as it), ``cv/per_variable.tsv`` and
``cv/contrasts.tsv`` (pooled MSE ratios of method pairs with bootstrap
intervals: what the history, the individual dynamics and the ODE add),
``cv/training.tsv`` (each fold's validation-loss course; a divergence is flagged in
the summary and the log), ``cv/selection.tsv`` (each fold's choice of predictor
on its inner validation patients) and ``cv/summary_<name>.tsv`` per set of
``evaluation.variable_sets`` (the summary over those measurements only)."""

import logging

from odevae.data.cohort import Cohort
from odevae.data.tables import read_fold_metrics, read_tsv, read_tsvs, write_tsv
from odevae.evaluate.prediction.scores import (
    continuous_rows,
    contrasts,
    summarise,
    training_sd,
    variable_set_rows,
)
from odevae.evaluate.prediction.training_check import flag_diverged, validation_course
from odevae.runner import run_script

log = logging.getLogger("odevae.evaluate")


def main(snakemake):
    pred = read_tsvs(
        [*snakemake.input.model, *snakemake.input.comparators], units="model"
    ).drop(columns=["time", "n_history", "units"])  # not scored: less memory
    # evaluation.variable_sets checked before anything is scored or written
    sets = {
        name: variable_set_rows(pred, name, variables)
        for name, variables in snakemake.params.variable_sets.items()
    }
    scales = training_sd(
        Cohort.load(snakemake.input.cohort), read_tsv(snakemake.input.folds)
    )
    params = snakemake.params

    def scored(rows):
        return summarise(
            rows, scales, params.reference, n_boot=params.n_boot, seed=params.seed
        )

    summary, per_variable = scored(pred)
    continuous = continuous_rows(pred)
    if continuous is None:  # no 0/1 measurement: the same table
        summary_continuous = summary
    elif continuous.empty:  # 0/1 measurements only
        summary_continuous = summary.iloc[:0]
    else:
        summary_continuous, _ = scored(continuous)
        del continuous
    pairs = contrasts(
        pred, scales, n_boot=snakemake.params.n_boot, seed=snakemake.params.seed
    )
    course = validation_course(
        read_fold_metrics(snakemake.params.folds, snakemake.input.metrics),
        snakemake.params.divergence_factor,
        kept="best" if snakemake.params.early_stopping else "last",
    )
    for row in course[course["diverged"]].itertuples():
        log.warning(
            "fold %s: the kept model's validation loss %.4g is above its minimum "
            "%.4g (epoch %d) by more than evaluation.divergence_factor allows",
            row.fold,
            row.val_loss_kept,
            row.val_loss_min,
            row.val_loss_min_epoch,
        )
    summary = flag_diverged(summary, course)
    summary_continuous = flag_diverged(summary_continuous, course)
    for name, rows in sets.items():
        table = flag_diverged(scored(rows)[0], course)
        write_tsv(table, snakemake.output[f"summary_{name}"])
    selection = read_tsvs(snakemake.input.selection)
    for row in selection[selection["selected"]].itertuples():
        if row.scored_on == "none":
            log.info("fold %d: odevae_selected is odevae (no inner split)", row.fold)
            continue
        log.info(
            "fold %d: odevae_selected is %s (scored on %d %s patients)",
            row.fold,
            row.predictor,
            row.n_patients,
            row.scored_on.replace("_", " "),
        )
    write_tsv(selection, snakemake.output.selection)
    write_tsv(course, snakemake.output.training)
    write_tsv(summary, snakemake.output.summary)
    write_tsv(summary_continuous, snakemake.output.summary_continuous)
    write_tsv(per_variable, snakemake.output.per_variable)
    write_tsv(pairs, snakemake.output.contrasts)
    pooled = summary[(summary["fold"] == "pooled") & (summary["horizon"] == "one_step")]
    for row in pooled.itertuples():
        log.info("one step, %s: MSE ratio to LOCF %.3f", row.method, row.ratio_mse)


run_script(snakemake, main)
