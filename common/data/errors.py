"""Errors in a site's data: each names the file, and where it can, the column and the row."""

from __future__ import annotations


class DataError(ValueError):
    """Bad site data. Nothing from a folder that raises this is used."""

    def __init__(
        self,
        file: str,
        problem: str,
        column: str | None = None,
        row: int | None = None,
        patient: str | None = None,
    ) -> None:
        where = file
        if column is not None:
            where += f", column {column!r}"
        if row is not None:
            where += f", row {row}"
        if patient is not None:
            where += f" (patient {patient!r})"
        super().__init__(f"{where}: {problem}")
        self.file, self.column, self.row, self.patient = file, column, row, patient
