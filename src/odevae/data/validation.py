"""Reading user tables and checking their cells; errors name file, column and line.

Every reader (:mod:`~odevae.data.ingest`, :mod:`~odevae.data.registry`,
:mod:`~odevae.data.preprocess`) reads with :func:`read_table`, whose index is each
row's position in the file, so :func:`location` can name the line (row for Parquet)
of any cell. :func:`fail_at_first` is the one place that turns a mask of bad rows
into an :class:`~odevae.errors.InputError` at the first of them; the checks below
(ids, numbers, visit times, dates, baseline ids) are built on it.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from odevae.errors import InputError


def is_parquet(path: str | Path) -> bool:
    return Path(path).suffix.lower() in {".parquet", ".pq"}


def read_table(path: str | Path, id_col: str = "patient_id") -> pd.DataFrame:
    """Read a CSV, TSV (by extension) or Parquet table, ids as text ("01" stays "01").

    A missing or empty file, or one with a header only, is an :class:`InputError`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("the file does not exist", file=str(path))
    if is_parquet(path):
        try:
            table = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several types for bad files
            raise InputError(
                f"expected a Parquet file, found unreadable content ({err})",
                file=str(path),
            ) from None
        if id_col in table.columns:
            ids = table[id_col]
            table[id_col] = ids.astype(str).where(ids.notna(), None)
    else:
        table = _read_text_table(path, id_col)
    if table.empty:
        raise InputError("the file has a header but no rows", file=str(path))
    return table


def _read_text_table(path: Path, id_col: str) -> pd.DataFrame:
    """A CSV/TSV table whose index is each row's position in the file.

    Blank lines are dropped after reading, so that :func:`location` still names the
    right line; duplicated column names, undecodable bytes and ragged rows are
    input errors.
    """
    sep = "\t" if path.suffix.lower() in {".tsv", ".tab", ".txt"} else ","
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle, delimiter=sep), [])
        table = pd.read_csv(path, sep=sep, dtype={id_col: str}, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise InputError(
            "the file is empty, expected a header and rows", file=str(path)
        ) from None
    except UnicodeDecodeError as err:
        raise InputError(
            f"expected UTF-8 text, found undecodable bytes at byte {err.start} "
            "(save the file as UTF-8)",
            file=str(path),
        ) from None
    except pd.errors.ParserError as err:
        raise InputError(
            f"expected every row to have the header's {len(header)} fields, found "
            f"otherwise ({err})",
            file=str(path),
        ) from None
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise InputError(
            f"expected distinct column names, found {repeated} more than once",
            file=str(path),
            column=repeated[0],
        )
    return table[table.notna().any(axis=1)]


def location(file: str, index) -> dict:
    """The :class:`InputError` keywords that place a data row of ``file`` (its index
    = position in the file): ``line`` (the header is line 1), or ``row`` for
    Parquet files."""
    if is_parquet(file):
        return {"row": int(index) + 1}
    return {"line": int(index) + 2}


def place(file: str, index) -> str:
    """:func:`location` in words, e.g. ``line 5``."""
    return " ".join(f"{k} {v}" for k, v in location(file, index).items())


def fail_at_first(
    bad,
    message: str | Callable[[object], str],
    *,
    file: str,
    column: str | None = None,
    key: str | None = None,
    index: pd.Index | None = None,
) -> None:
    """Raise an :class:`InputError` at the first row where ``bad`` is true, if any.

    ``bad`` is a boolean Series indexed like the table read by :func:`read_table`
    (or a boolean array with the table's ``index``); ``message`` is the text, or a
    function of the first bad row's index label that returns it. The error names
    ``file``, ``column`` (and ``key``) and the row's line.
    """
    if index is None:
        index = bad.index
    mask = np.asarray(bad, dtype=bool)
    if not mask.any():
        return
    idx = index[mask][0]
    text = message(idx) if callable(message) else message
    raise InputError(text, file=file, column=column, key=key, **location(file, idx))


def cell(value) -> str:
    """A table cell as the user wrote it: numbers with ``%g``, text quoted, and an
    empty cell ``empty``."""
    if pd.isna(value):
        return "empty"
    if isinstance(value, float | int | np.number):
        return f"{value:g}"
    return repr(str(value))


def require_columns(
    table: pd.DataFrame, cols: list[str], file: str, key: str | None = None
) -> None:
    for col in cols:
        if col not in table.columns:
            raise InputError(
                f"column is missing; the file has columns {list(table.columns)}",
                file=file,
                column=col,
                key=key,
            )


def numeric(table: pd.DataFrame, cols: list[str], file: str) -> pd.DataFrame:
    """Columns as float; text or infinite values raise an error naming the cell."""
    out = pd.DataFrame(index=table.index)
    for col in cols:
        raw = table[col]
        num = pd.to_numeric(raw, errors="coerce")
        fail_at_first(
            num.isna() & raw.notna(),
            lambda idx, raw=raw: f"expected a number, found {raw.loc[idx]!r}",
            file=file,
            column=col,
        )
        fail_at_first(
            np.isinf(num.to_numpy(dtype=float)),
            lambda idx, raw=raw: (
                f"expected a finite number, found {_as_written(raw.loc[idx])!r}"
            ),
            file=file,
            column=col,
            index=table.index,
        )
        out[col] = num.astype(float)
    return out


def _as_written(value):
    return value if isinstance(value, str) else float(value)


def check_ids(ids: pd.Series, file: str, id_col: str) -> pd.Series:
    """Patient ids as text; an empty id cell is an error."""
    fail_at_first(
        ids.isna(),
        "expected a patient id, found an empty cell",
        file=file,
        column=id_col,
    )
    return ids.astype(str)


def check_times(
    t: pd.Series,
    file: str,
    column: str,
    raw: pd.Series | None = None,
    expected: str = "a visit time",
    negative: bool = False,
) -> None:
    """Visit times (numbers, ``t``) must be present and, unless ``negative``, not
    negative; ``raw`` are the cells as written (default ``t``), ``expected`` names
    what a time is."""
    raw = t if raw is None else raw
    bound = "" if negative else " >= 0"
    fail_at_first(
        t.isna(),
        f"expected {expected}{bound}, found an empty cell",
        file=file,
        column=column,
    )
    if negative:
        return
    fail_at_first(
        t < 0,
        lambda idx: (
            f"expected {expected} >= 0, found a negative time ({cell(raw.loc[idx])})"
        ),
        file=file,
        column=column,
    )


def parse_dates(raw: pd.Series, fmt: str | None, file: str, col: str) -> pd.Series:
    """Dates in format ``fmt`` (default ISO 8601); an unparsable or empty cell is an
    error naming it."""
    parsed = pd.to_datetime(raw, format=fmt or "ISO8601", errors="coerce")
    expected = f"a date in format {fmt}" if fmt else "an ISO date (YYYY-MM-DD)"

    def message(idx) -> str:
        value = raw.loc[idx]
        found = "an empty cell" if pd.isna(value) else repr(value)
        return f"expected {expected}, found {found}"

    fail_at_first(parsed.isna(), message, file=file, column=col)
    return parsed


def check_observed(table: pd.DataFrame, cols: list[str], file: str) -> None:
    """Every column of ``cols`` has at least one value."""
    for col in cols:
        if table[col].isna().all():
            raise InputError(
                "every value is missing; drop the column or provide values",
                file=file,
                column=col,
            )


def check_baseline_ids(
    ids: pd.Series, visit_ids, file: str, id_col: str, needed=None
) -> None:
    """One baseline row per patient with visits: no duplicates, no row for a patient
    without visits (``visit_ids``), and a row for every patient in ``needed``
    (default: ``visit_ids``). Errors name the baseline file's line."""
    visit_ids = list(dict.fromkeys(visit_ids))
    for bad, what in (
        (ids.duplicated(), "has more than one baseline row"),
        (~ids.isin(set(visit_ids)), "has a baseline row but no visits"),
    ):
        fail_at_first(
            bad,
            lambda idx, what=what: f"patient {ids.loc[idx]!r} {what}",
            file=file,
            column=id_col,
        )
    known = set(ids)
    needed = visit_ids if needed is None else needed
    missing = [pid for pid in needed if pid not in known]
    if missing:
        raise InputError(
            f"patient {missing[0]!r} has visits but no baseline row "
            f"({len(missing)} such patients)",
            file=file,
            column=id_col,
        )
