"""Figure: training and validation loss per epoch and fold."""

import pandas as pd

from odevae.figures import loss_table, plot_loss_curves
from odevae.runner import run_script


def main(snakemake):
    metrics = {
        fold: pd.read_csv(path)
        for fold, path in zip(
            snakemake.params.folds, snakemake.input.metrics, strict=True
        )
    }
    losses = loss_table(metrics)
    losses.to_csv(snakemake.output.table, sep="\t", index=False)
    plot_loss_curves(losses).savefig(snakemake.output.figure, dpi=snakemake.params.dpi)


run_script(snakemake, main)
