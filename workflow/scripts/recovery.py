"""Recovery of the simulated truth per fold (rule ``recovery``).

Group separation by the learned ODE parameters, agreement of the learned rates'
signs with the true ones, and R² of the held-out latent trajectories against the
true ones after alignment.
"""

from odevae.data.tables import read_tsv, read_tsvs, write_tsv
from odevae.evaluate.recovery import (
    align_folds,
    fold_alignments,
    group_recovery,
    sign_agreement,
    trajectory_recovery,
    with_mean_row,
)
from odevae.runner import run_script


def main(snakemake):
    params = read_tsvs(snakemake.input.params)
    truth = read_tsv(snakemake.input.truth_patients)
    names = [c for c in params.columns if c not in ("patient_id", "fold", "split")]
    groups = group_recovery(params, truth, names)
    inputs = (
        read_tsvs(snakemake.input.trajectories),
        read_tsvs(snakemake.input.latents),
        truth,
        read_tsv(snakemake.input.truth_trajectories),
        snakemake.params.alignment,
    )
    aligned, _ = align_folds(*inputs)
    signs = sign_agreement(params, truth, fold_alignments(*inputs))
    table = groups.merge(signs, on="fold").merge(
        trajectory_recovery(aligned), on="fold"
    )
    write_tsv(with_mean_row(table), snakemake.output.recovery, digits=4)


run_script(snakemake, main)
