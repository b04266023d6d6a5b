"""Figure: training and validation loss per epoch and fold."""

from odevae.data.tables import read_fold_metrics
from odevae.figures.plots import loss_table, plot_loss_curves, use_figure_style
from odevae.runner import run_script


def main(snakemake):
    use_figure_style()
    metrics = read_fold_metrics(snakemake.params.folds, snakemake.input.metrics)
    losses = loss_table(metrics)
    losses.to_csv(snakemake.output.table, sep="\t", index=False)
    plot_loss_curves(losses).savefig(snakemake.output.figure, dpi=snakemake.params.dpi)


run_script(snakemake, main)
