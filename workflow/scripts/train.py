"""Train the ODE-VAE on one cross-validation fold (rule ``train``)."""

from pathlib import Path

from odevae.data.cohort import Cohort
from odevae.data.tables import read_tsv
from odevae.runner import run_script
from odevae.train.training import train_fold


def main(snakemake):
    truth = getattr(snakemake.input, "truth_patients", None)
    groups = None if truth is None else read_tsv(truth).set_index("patient_id")["group"]
    train_fold(
        Cohort.load(snakemake.input.cohort),
        read_tsv(snakemake.input.folds),
        int(snakemake.wildcards.fold),
        snakemake.params.config,
        Path(snakemake.output.checkpoint).parent,
        groups=groups,
        # display only, so not among the params (changing it retrains nothing)
        progress_bar=snakemake.config["train"]["progress_bar"],
    )


run_script(snakemake, main)
