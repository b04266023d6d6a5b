"""Figure: local ODE solutions between visits of held-out patients (arXiv
2311.16286, Fig. 3), each patient predicted by its fold's model."""

import numpy as np
import pandas as pd

from odevae.data.cohort import Cohort
from odevae.data.folds import fold_members
from odevae.data.tables import read_tsv, write_tsv
from odevae.figures.paper_figures import (
    local_solution_table,
    pick_patients,
    plot_local_solutions,
)
from odevae.figures.plots import use_figure_style
from odevae.model.trained import load_trained
from odevae.runner import run_script


def main(snakemake):
    use_figure_style()
    cohort = Cohort.load(snakemake.input.cohort)
    folds = read_tsv(snakemake.input.folds)
    tables, held = [], []
    for fold, checkpoint in enumerate(snakemake.input.checkpoints):
        model = load_trained(checkpoint)
        _, held_ids = fold_members(folds, fold)
        table = local_solution_table(model, cohort.subset(cohort.index_of(held_ids)))
        table.insert(1, "fold", fold)
        tables.append(table)
        held.append(held_ids)
    table = pd.concat(tables, ignore_index=True)
    params = snakemake.params
    shown = pick_patients(cohort, np.concatenate(held), params.patients, params.seed)
    write_tsv(table, snakemake.output.table)
    plot_local_solutions(table, params.time_unit, shown).savefig(
        snakemake.output.figure, dpi=params.dpi
    )


run_script(snakemake, main)
