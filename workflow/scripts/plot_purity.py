"""Figure: similarity-batch purity per epoch and fold (simulated cohorts)."""

from odevae.data.tables import read_fold_metrics
from odevae.figures.plots import plot_batch_purity, purity_table, use_figure_style
from odevae.runner import run_script


def main(snakemake):
    use_figure_style()
    metrics = read_fold_metrics(snakemake.params.folds, snakemake.input.metrics)
    purity = purity_table(metrics)
    purity.to_csv(snakemake.output.table, sep="\t", index=False)
    plot_batch_purity(purity).savefig(snakemake.output.figure, dpi=snakemake.params.dpi)


run_script(snakemake, main)
