"""Long-format visit and baseline tables → the model's cohort (rule ``preprocess``).

Also writes the preprocessing report: drops of ingestion (when the source was
ingested) and of preprocessing, the kept cohort and its completeness.
"""

import pandas as pd

from odevae.data.preprocess import preprocess_tables
from odevae.data.report import cohort_report
from odevae.data.tables import write_tsv
from odevae.runner import run_script


def main(snakemake):
    result = preprocess_tables(
        snakemake.input.visits,
        snakemake.input.baseline,
        snakemake.params.options,
        time_unit=snakemake.params.time_unit,
        standardized=snakemake.params.standardized,
    )
    ingest = [pd.read_csv(path, sep="\t") for path in snakemake.input.drops]
    drops = pd.concat([*ingest, result.drops], ignore_index=True)
    notes = [pd.read_csv(path, sep="\t") for path in snakemake.input.notes]
    notes = [n for n in [*notes, result.notes] if not n.empty]
    notes = pd.concat(notes, ignore_index=True) if notes else None
    result.cohort.save(snakemake.output.cohort)
    write_tsv(result.cohort.summary(), snakemake.output.patients)
    write_tsv(cohort_report(drops, result.cohort, notes), snakemake.output.report)


run_script(snakemake, main)
