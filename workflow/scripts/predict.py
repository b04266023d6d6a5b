"""Per-patient parameters, latent states and trajectories of one fold's model, and
its held-out predictions in data space (rule ``predict``)."""

from odevae.data.cohort import Cohort
from odevae.data.tables import read_tsv, write_tsv
from odevae.data.transforms import resolve_transforms
from odevae.evaluate.predict import predict_fold
from odevae.evaluate.prediction.multivariate_mixed import load_fit
from odevae.evaluate.tuning import ensemble_members
from odevae.runner import run_script


def main(snakemake):
    cohort = Cohort.load(snakemake.input.cohort)
    checkpoints = [snakemake.input.checkpoint]
    if "choice" in snakemake.input.keys():  # tuning: the ensemble's members
        choice = read_tsv(snakemake.input.choice)
        checkpoints = ensemble_members(choice, list(snakemake.input.candidates))
    tables = predict_fold(
        checkpoints,
        cohort,
        read_tsv(snakemake.input.folds),
        int(snakemake.wildcards.fold),
        snakemake.params.grid_dt,
        resolve_transforms(snakemake.params.transforms, list(cohort.measurement_names)),
        mixed_model_max_patients=snakemake.params.mixed_model_max_patients,
        selection=read_tsv(snakemake.input.selection)
        if "selection" in snakemake.input.keys()
        else None,
        multivariate=load_fit(snakemake.input.multivariate),
    )
    for key, table in tables.items():
        write_tsv(table, snakemake.output[key])


run_script(snakemake, main)
