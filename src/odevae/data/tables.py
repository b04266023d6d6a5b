"""Reading and writing the workflow's TSV tables (patient ids always as text)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from pandas.api.types import union_categoricals

#: Columns of few distinct labels, read as categories where rows are filtered.
LABELS = ("horizon", "method", "variable", "units")

#: Rows read at a time where only some are kept (:func:`read_tsvs`).
CHUNK_ROWS = 500_000


def read_tsv(path: str | Path) -> pd.DataFrame:
    """A TSV table written by the workflow, ``patient_id`` kept as text."""
    return pd.read_csv(path, sep="\t", dtype={"patient_id": str})


def read_tsvs(paths: Iterable[str | Path], **equal) -> pd.DataFrame:
    """Several TSV tables of the same layout, stacked (e.g. one per fold); with
    ``column=value`` pairs, only each table's rows that have those values, read
    in chunks with the :data:`LABELS` columns as categories (a large cohort's
    predictions in both units need not fit in memory at once)."""
    paths = list(paths)
    if not equal or not paths:
        return pd.concat([read_tsv(path) for path in paths], ignore_index=True)
    chunks = []
    for path in paths:
        reader = pd.read_csv(
            path,
            sep="\t",
            dtype={"patient_id": str} | dict.fromkeys(LABELS, "category"),
            chunksize=CHUNK_ROWS,
        )
        for chunk in reader:
            for column, value in equal.items():
                chunk = chunk[chunk[column] == value]
            chunks.append(chunk)
    columns = list(chunks[0].columns)
    # each chunk has its own categories: stacked into one shared, sorted set
    labels = {
        column: union_categoricals(
            [chunk.pop(column) for chunk in chunks], sort_categories=True
        )
        for column in LABELS
        if column in columns
    }
    table = pd.concat(chunks, ignore_index=True)
    for column, values in labels.items():
        table[column] = values
    return table[columns]


def write_tsv(table: pd.DataFrame, path: str | Path, digits: int = 6) -> None:
    """Write ``table`` as TSV with ``digits`` significant digits (byte-stable)."""
    table.to_csv(path, sep="\t", index=False, float_format=f"%.{digits}g")


def read_fold_metrics(folds: Iterable[int], paths: Iterable[str | Path]) -> dict:
    """Each fold's Lightning ``metrics.csv``, keyed by fold."""
    return {fold: pd.read_csv(path) for fold, path in zip(folds, paths, strict=True)}
