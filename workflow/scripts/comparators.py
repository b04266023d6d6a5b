"""Comparators on one fold's held-out targets (rule ``comparators``): last
observation carried forward, a smoother of the patient's own past, the training
mean and the mixed models, each fitted on the fold's training patients; the
multivariate mixed model's fit is also written for rule ``predict``."""

import pandas as pd

from odevae.data.cohort import Cohort
from odevae.data.folds import fold_members
from odevae.data.tables import read_tsv, write_tsv
from odevae.data.transforms import resolve_transforms
from odevae.evaluate.prediction.comparators import comparator_predictions
from odevae.evaluate.prediction.multivariate_mixed import (
    fit_multivariate_mixed,
    save_fit,
)
from odevae.evaluate.prediction.targets import in_both_units
from odevae.runner import run_script


def main(snakemake):
    cohort = Cohort.load(snakemake.input.cohort)
    fold = int(snakemake.wildcards.fold)
    train_ids, held_ids = fold_members(read_tsv(snakemake.input.folds), fold)
    train = cohort.subset(cohort.index_of(train_ids))
    cap, seed = snakemake.params.mixed_model_max_patients, snakemake.params.seed + fold
    multivariate = fit_multivariate_mixed(train, max_patients=cap, seed=seed)
    table, info = comparator_predictions(
        train,
        cohort.subset(cohort.index_of(held_ids)),
        cap,
        seed,
        multivariate=multivariate,
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
    save_fit(multivariate, snakemake.output.multivariate)


run_script(snakemake, main)
