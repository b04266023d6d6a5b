"""User-facing input errors: one clear message naming file, column, row or key."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (a table or a config value).

    The message names where the problem is (file, column and line — row for Parquet
    files —, or config key), what was expected and what was found. Workflow scripts
    print it without a traceback.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        column: str | None = None,
        line: int | None = None,
        row: int | None = None,
        key: str | None = None,
    ) -> None:
        where = []
        if file is not None:
            where.append(f"file {file}")
        if column is not None:
            where.append(f"column '{column}'")
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"row {row}")
        if key is not None:
            where.append(f"config key '{key}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.file, self.column, self.line, self.key = file, column, line, key
        self.row = row
