"""Comparators on one fold's held-out targets (rule ``comparators``): last
observation carried forward, a smoother of the patient's own past, the training
mean and a linear mixed model, each fitted on the fold's training patients."""

import pandas as pd

from odevae.data.cohort import Cohort
from odevae.data.folds import fold_members
from odevae.data.tables import read_tsv, write_tsv
from odevae.data.transforms import resolve_transforms
from odevae.evaluate.prediction.comparators import comparator_predictions
from odevae.evaluate.prediction.targets import in_both_units
from odevae.runner import run_script


def main(snakemake):
    cohort = Cohort.load(snakemake.input.cohort)
    fold = int(snakemake.wildcards.fold)
    train_ids, held_ids = fold_members(read_tsv(snakemake.input.folds), fold)
    table, info = comparator_predictions(
        cohort.subset(cohort.index_of(train_ids)),
        cohort.subset(cohort.index_of(held_ids)),
        snakemake.params.mixed_model_max_patients,
        snakemake.params.seed + fold,
    )
    spec = resolve_transforms(
        snakemake.params.transforms, list(cohort.measurement_names)
    )
    table = in_both_units(table, spec)
    table.insert(0, "fold", fold)
    write_tsv(table, snakemake.output.predictions)
    fits = pd.DataFrame(info).rename_axis("variable").reset_index()
    fits.insert(0, "fold", fold)
    write_tsv(fits, snakemake.output.fits)


run_script(snakemake, main)
