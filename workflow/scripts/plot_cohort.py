"""Figures of the preprocessed cohort: visit times, and measurements per variable on
the model's scale (rule ``plot_cohort``)."""

from odevae.data.cohort import Cohort
from odevae.data.transforms import resolve_transforms
from odevae.figures.cohort import plot_measurements
from odevae.figures.plots import plot_visit_times, use_figure_style
from odevae.runner import run_script


def main(snakemake):
    use_figure_style()
    cohort = Cohort.load(snakemake.input.cohort)
    names = list(cohort.measurement_names)
    spec = resolve_transforms(snakemake.params.transforms, names)
    long = cohort.to_long()  # already on the model's scale (transformed at ingestion)
    dpi = snakemake.params.dpi
    plot_visit_times(long, snakemake.params.time_unit).savefig(
        snakemake.output.visit_times, dpi=dpi
    )
    plot_measurements(long, names, spec, snakemake.params.time_unit).savefig(
        snakemake.output.measurements, dpi=dpi
    )


run_script(snakemake, main)
