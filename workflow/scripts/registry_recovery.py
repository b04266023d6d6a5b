"""Recovery of a simulated registry's true rates per fold (rule
``registry_recovery``).

Group separation by the learned ODE parameters, and each true rate's Spearman
correlation with, and sign agreement of, the learned rate matched to it on the
fold's training patients.
"""

from odevae.data.tables import read_tsv, read_tsvs, write_tsv
from odevae.evaluate.registry_recovery import registry_recovery
from odevae.runner import run_script


def main(snakemake):
    params = read_tsvs(snakemake.input.params)
    truth = read_tsv(snakemake.input.truth_patients)
    table = registry_recovery(params, truth)
    write_tsv(table, snakemake.output.recovery, digits=4)


run_script(snakemake, main)
