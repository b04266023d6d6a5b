"""Figure: a VAE-only model's held-out latent means beside the ODE-VAE's held-out
trajectories (workshop)."""

from odevae.data.tables import read_tsv, read_tsvs
from odevae.figures.paper_figures import plot_vae_vs_odevae
from odevae.figures.plots import use_figure_style
from odevae.runner import run_script


def main(snakemake):
    use_figure_style()
    figure = plot_vae_vs_odevae(
        read_tsvs(snakemake.input.vae_latents),
        read_tsvs(snakemake.input.ode_trajectories),
        read_tsvs(snakemake.input.ode_latents),
        read_tsv(snakemake.input.truth_patients),
    )
    figure.savefig(snakemake.output.figure, dpi=snakemake.params.dpi)


run_script(snakemake, main)
