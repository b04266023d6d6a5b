"""Reading and writing the workflow's TSV tables (patient ids always as text)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd


def read_tsv(path: str | Path) -> pd.DataFrame:
    """A TSV table written by the workflow, ``patient_id`` kept as text."""
    return pd.read_csv(path, sep="\t", dtype={"patient_id": str})


def read_tsvs(paths: Iterable[str | Path], **equal) -> pd.DataFrame:
    """Several TSV tables of the same layout, stacked (e.g. one per fold); with
    ``column=value`` pairs, only each table's rows that have those values (kept
    file by file: a large cohort's predictions in both units need not fit in
    memory at once)."""
    tables = []
    for path in paths:
        table = read_tsv(path)
        for column, value in equal.items():
            table = table[table[column] == value]
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def write_tsv(table: pd.DataFrame, path: str | Path, digits: int = 6) -> None:
    """Write ``table`` as TSV with ``digits`` significant digits (byte-stable)."""
    table.to_csv(path, sep="\t", index=False, float_format=f"%.{digits}g")


def read_fold_metrics(folds: Iterable[int], paths: Iterable[str | Path]) -> dict:
    """Each fold's Lightning ``metrics.csv``, keyed by fold."""
    return {fold: pd.read_csv(path) for fold, path in zip(folds, paths, strict=True)}
