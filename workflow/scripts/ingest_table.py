"""A real cohort's table(s), by the config's column map → long format (rule
``ingest_table``)."""

import pandas as pd

from odevae.ingest import ingest_table
from odevae.preprocess import Drops
from odevae.report import COLUMNS
from odevae.runner import run_script
from odevae.tables import write_tsv


def main(snakemake):
    notes = []
    visits, baseline = ingest_table(
        snakemake.params.table,
        snakemake.params.time_unit,
        snakemake.params.duplicates,
        snakemake.params.time_zero,
        notes,
    )
    write_tsv(visits, snakemake.output.visits, digits=10)
    write_tsv(baseline, snakemake.output.baseline, digits=10)
    write_tsv(Drops().table(), snakemake.output.drops)
    write_tsv(pd.DataFrame(notes, columns=COLUMNS), snakemake.output.notes)


run_script(snakemake, main)
