"""Train the ODE-VAE on one cross-validation fold (rule ``train``)."""

from pathlib import Path

from odevae.cohort import Cohort
from odevae.runner import run_script
from odevae.tables import read_tsv
from odevae.training import train_fold, with_progress_bar


def main(snakemake):
    truth = getattr(snakemake.input, "truth_patients", None)
    groups = None if truth is None else read_tsv(truth).set_index("patient_id")["group"]
    train_fold(
        Cohort.load(snakemake.input.cohort),
        read_tsv(snakemake.input.folds),
        int(snakemake.wildcards.fold),
        with_progress_bar(snakemake.params.config, snakemake.config),
        Path(snakemake.output.checkpoint).parent,
        groups=groups,
    )


run_script(snakemake, main)
