"""Figure: the similarity batches of two reference training patients under a fold's
trained model (BJ 2022, Fig. 6)."""

from odevae.data.cohort import Cohort
from odevae.data.folds import fold_members
from odevae.data.tables import read_tsv
from odevae.figures.paper_figures import (
    neighbour_batches_of,
    plot_similarity_batches,
    reference_patients,
)
from odevae.figures.plots import use_figure_style
from odevae.model.trained import load_trained
from odevae.runner import run_script


def main(snakemake):
    use_figure_style()
    cohort = Cohort.load(snakemake.input.cohort)
    train_ids, _ = fold_members(read_tsv(snakemake.input.folds), 0)
    train = cohort.subset(cohort.index_of(train_ids))
    model = load_trained(snakemake.input.checkpoint)
    params = snakemake.params
    view = neighbour_batches_of(
        model, train, params.times, params.neighbours, params.bandwidth
    )
    group_of = read_tsv(snakemake.input.truth_patients).set_index("patient_id")
    groups = group_of.loc[train.patient_ids, "group"].to_numpy()
    references = reference_patients(train.patient_ids, groups)
    plot_similarity_batches(view, groups, params.times, references).savefig(
        snakemake.output.figure, dpi=params.dpi
    )


run_script(snakemake, main)
