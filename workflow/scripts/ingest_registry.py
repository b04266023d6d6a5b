"""A SMArtCARE registry export → long format for the chosen test (rule
``ingest_registry``)."""

import pandas as pd

from odevae.data.registry import read_registry
from odevae.data.report import COLUMNS
from odevae.data.tables import write_tsv
from odevae.runner import run_script


def main(snakemake):
    visits, baseline, drops = read_registry(
        snakemake.input.visits,
        snakemake.input.baseline,
        snakemake.params.registry,
        snakemake.params.time_unit,
        snakemake.params.min_visits,
        snakemake.params.duplicates,
    )
    write_tsv(visits, snakemake.output.visits, digits=10)
    write_tsv(baseline, snakemake.output.baseline, digits=10)
    write_tsv(drops, snakemake.output.drops)
    # covariates come from the baseline table: nothing varies between visits
    write_tsv(pd.DataFrame(columns=COLUMNS), snakemake.output.notes)


run_script(snakemake, main)
