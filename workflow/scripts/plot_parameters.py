"""Figure: the learned ODE parameters of every held-out patient (rule
``plot_parameters``), coloured by the true group where the cohort is simulated."""

from odevae.data.tables import read_tsv, read_tsvs
from odevae.figures.plots import use_figure_style
from odevae.figures.prediction import plot_parameters
from odevae.runner import run_script


def main(snakemake):
    use_figure_style()
    truth = getattr(snakemake.input, "truth_patients", None)
    groups = None if truth is None else read_tsv(truth).set_index("patient_id")["group"]
    figure = plot_parameters(
        read_tsvs(snakemake.input.params), groups, snakemake.params.seed
    )
    figure.savefig(snakemake.output.figure, dpi=snakemake.params.dpi)


run_script(snakemake, main)
