"""Train one tuning candidate on one fold and score it on the fold's inner
validation patients (rule ``tune``)."""

from pathlib import Path

from odevae.data.cohort import Cohort
from odevae.data.tables import read_tsv, write_tsv
from odevae.evaluate.prediction.selection import inner_selection
from odevae.runner import run_script
from odevae.train.training import train_fold


def main(snakemake):
    cohort = Cohort.load(snakemake.input.cohort)
    folds = read_tsv(snakemake.input.folds)
    fold, config = int(snakemake.wildcards.fold), snakemake.params.config
    truth = getattr(snakemake.input, "truth_patients", None)
    groups = None if truth is None else read_tsv(truth).set_index("patient_id")["group"]
    model = train_fold(
        cohort,
        folds,
        fold,
        config,
        Path(snakemake.output.checkpoint).parent,
        groups=groups,
        progress_bar=snakemake.config["train"]["progress_bar"],
    )
    cap = snakemake.params.mixed_model_max_patients
    selection = inner_selection(model, cohort, folds, fold, cap)
    write_tsv(selection.assign(fold=fold), snakemake.output.selection)


run_script(snakemake, main)
