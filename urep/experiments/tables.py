"""A small table type rendered to Markdown and CSV, so every report table is written the same way."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PValue", "Table", "format_cell", "format_p"]


class PValue(float):
    """A p-value: written `< 1e-4` or in scientific notation when small, never `0.0000`."""


def format_p(value: float) -> str:
    """`< 1e-4` below 1e-4, `3.2e-04` below 1e-3, else three decimals; `-` for NaN."""
    if math.isnan(value):
        return "-"
    if value < 1e-4:
        return "< 1e-4"
    if value < 1e-3:
        return f"{value:.1e}"
    return f"{value:.3f}"


def format_cell(value: Any, digits: int = 3) -> str:
    """Text of one cell: floats with `digits` decimals (or as integers when whole and large), `-` for None/NaN.

    A `(mean, std)` pair is written `mean ± std`.
    """
    if value is None:
        return "-"
    if isinstance(value, tuple) and len(value) == 2:
        mean, std = value
        if std is None or (isinstance(std, float) and math.isnan(std)):
            return format_cell(mean, digits)
        return f"{format_cell(mean, digits)} ± {format_cell(std, digits)}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, PValue):
        return format_p(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "inf"
        if abs(value) >= 1000 and value == int(value):
            return f"{int(value):,}"
        return f"{value:.{digits}f}"
    return str(value)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, tuple) and len(value) == 2:
        return _csv_cell(value[0])
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, PValue):
        return repr(float(value))  # full precision: a p of 3e-7 is not 0
    if isinstance(value, float):
        return repr(round(value, 6))
    return value


@dataclass
class Table:
    """A titled table.

    Attributes:
        name: file stem under `tables/` (`journal_table3`, `cost`, ...).
        title: heading of the Markdown file.
        columns: column headers.
        rows: cells; floats, ints, strings, None (written `-`), or `(mean, std)` pairs.
        notes: lines printed under the Markdown table.
        digits: decimals of float cells in Markdown.
    """

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    digits: int = 3

    def add(self, *cells: Any) -> None:
        """Append a row; its length must match the columns."""
        if len(cells) != len(self.columns):
            raise ValueError(f"table {self.name!r} has {len(self.columns)} columns, row has {len(cells)}: {cells}")
        self.rows.append(list(cells))

    def to_markdown(self) -> str:
        """The table as GitHub Markdown with its title and notes."""
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join("---" for _ in self.columns) + "|"]
        for row in self.rows:
            lines.append("| " + " | ".join(format_cell(c, self.digits) for c in row) + " |")
        if self.notes:
            lines.append("")
            lines.extend(self.notes)
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """The table as CSV; `(mean, std)` pairs become two columns `X` and `X std`."""
        pairs = [any(isinstance(r[i], tuple) for r in self.rows) for i in range(len(self.columns))]
        header = []
        for column, is_pair in zip(self.columns, pairs, strict=True):
            header.append(column)
            if is_pair:
                header.append(f"{column} std")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        for row in self.rows:
            cells = []
            for cell, is_pair in zip(row, pairs, strict=True):
                cells.append(_csv_cell(cell))
                if is_pair:
                    cells.append(_csv_cell(cell[1]) if isinstance(cell, tuple) else "")
            writer.writerow(cells)
        return buffer.getvalue()
