"""Figure: similarity-batch purity per epoch and fold (simulated cohorts)."""

import pandas as pd

from odevae.figures import plot_batch_purity, purity_table
from odevae.runner import run_script


def main(snakemake):
    metrics = {
        fold: pd.read_csv(path)
        for fold, path in zip(
            snakemake.params.folds, snakemake.input.metrics, strict=True
        )
    }
    purity = purity_table(metrics)
    purity.to_csv(snakemake.output.table, sep="\t", index=False)
    plot_batch_purity(purity).savefig(snakemake.output.figure, dpi=snakemake.params.dpi)


run_script(snakemake, main)
