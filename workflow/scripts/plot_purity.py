"""Figure: similarity-batch purity per epoch and fold (simulated cohorts)."""

from odevae.figures import plot_batch_purity, purity_table, use_figure_style
from odevae.runner import run_script
from odevae.tables import read_fold_metrics


def main(snakemake):
    use_figure_style()
    metrics = read_fold_metrics(snakemake.params.folds, snakemake.input.metrics)
    purity = purity_table(metrics)
    purity.to_csv(snakemake.output.table, sep="\t", index=False)
    plot_batch_purity(purity).savefig(snakemake.output.figure, dpi=snakemake.params.dpi)


run_script(snakemake, main)
