"""Figure: simulated measurements over the true latent trajectories."""

from odevae.data.tables import read_tsv
from odevae.figures.plots import plot_data_vs_truth, use_figure_style
from odevae.runner import run_script


def main(snakemake):
    use_figure_style()
    fig = plot_data_vs_truth(
        read_tsv(snakemake.input.visits),
        read_tsv(snakemake.input.truth_patients),
        read_tsv(snakemake.input.truth_trajectories),
    )
    fig.savefig(snakemake.output.figure, dpi=snakemake.params.dpi)


run_script(snakemake, main)
