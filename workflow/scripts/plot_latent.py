"""Figures: held-out latent trajectories per group, and two individual fits."""

from odevae.data.tables import read_tsv, read_tsvs
from odevae.evaluate.recovery import align_folds
from odevae.figures.plots import (
    pick_patients,
    plot_individual_fits,
    plot_latent_trajectories,
    use_figure_style,
)
from odevae.runner import run_script


def main(snakemake):
    use_figure_style()
    truth_traj = read_tsv(snakemake.input.truth_trajectories)
    traj, latents = align_folds(
        read_tsvs(snakemake.input.trajectories),
        read_tsvs(snakemake.input.latents),
        read_tsv(snakemake.input.truth_patients),
        truth_traj,
        snakemake.params.alignment,
    )
    dpi = snakemake.params.dpi
    plot_latent_trajectories(traj, truth_traj).savefig(
        snakemake.output.trajectories, dpi=dpi
    )
    plot_individual_fits(traj, latents, pick_patients(latents)).savefig(
        snakemake.output.individual, dpi=dpi
    )


run_script(snakemake, main)
