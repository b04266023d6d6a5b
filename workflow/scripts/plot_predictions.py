"""Figures of held-out prediction (rule ``plot_predictions``): chosen held-out
patients with the model's and comparators' predictions in original units, and the
error of every method by horizon and fold."""

from odevae.data.tables import read_tsv, read_tsvs
from odevae.figures.plots import use_figure_style
from odevae.figures.prediction import (
    pick_heldout_patients,
    plot_errors,
    plot_heldout_patients,
)
from odevae.runner import run_script


def main(snakemake):
    use_figure_style()
    pred = read_tsvs(
        [*snakemake.input.model, *snakemake.input.comparators], units="original"
    )
    params = snakemake.params
    patients = pick_heldout_patients(pred, params.patients, params.seed)
    plot_heldout_patients(pred, patients, params.time_unit).savefig(
        snakemake.output.patients, dpi=params.dpi
    )
    plot_errors(read_tsv(snakemake.input.summary), params.seed).savefig(
        snakemake.output.errors, dpi=params.dpi
    )


run_script(snakemake, main)
