"""A real cohort's table(s), by the config's column map → long format (rule
``ingest_table``)."""

import pandas as pd

from odevae.data.cleaning import Drops
from odevae.data.ingest import ingest_table
from odevae.data.report import COLUMNS
from odevae.data.tables import write_tsv
from odevae.runner import run_script


def main(snakemake):
    notes, drops = [], Drops()
    visits, baseline = ingest_table(
        snakemake.params.table,
        snakemake.params.time_unit,
        snakemake.params.duplicates,
        snakemake.params.time_zero,
        notes,
        drops,
    )
    write_tsv(visits, snakemake.output.visits, digits=10)
    write_tsv(baseline, snakemake.output.baseline, digits=10)
    write_tsv(drops.table(), snakemake.output.drops)
    write_tsv(pd.DataFrame(notes, columns=COLUMNS), snakemake.output.notes)


run_script(snakemake, main)
