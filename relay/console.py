"""Tables for the operator's terminal, described once and shown two ways.

A command builds a :class:`Screen` (lines of text and :class:`Table` blocks, every cell already a string)
and hands it to :func:`show`: on a terminal it is drawn with ``rich``; anywhere else (a pipe, a log
file, a test capturing output) it is written as plain fixed-width text, whose columns are as wide as
their widest cell, so scripts and tests read the same words either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, TextIO

from rich.console import Console, Group, RenderableType
from rich.table import Table as RichTable
from rich.text import Text

COLUMN_GAP = "  "


@dataclass(frozen=True)
class Column:
    header: str
    align: Literal["left", "right"] = "left"


@dataclass
class Table:
    """Rows of pre-formatted cells under ``columns``; ``notes`` are lines shown under the table."""

    columns: Sequence[Column]
    rows: list[Sequence[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_row(self, *cells: str) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"a row of {len(self.columns)} columns was given {len(cells)} cells")
        self.rows.append(cells)


Screen = Sequence[str | Table]
"""What a command shows, top to bottom: text blocks and tables, one empty line between two blocks."""


def render_plain(screen: Screen) -> str:
    return "\n\n".join(block if isinstance(block, str) else _plain_table(block) for block in screen)


def show(screen: Screen, stream: TextIO) -> None:
    """Draw ``screen`` with rich on a terminal, or write :func:`render_plain` text otherwise."""
    if not stream.isatty():
        stream.write(render_plain(screen) + "\n")
        return
    console = Console(file=stream)
    for position, block in enumerate(screen):
        if position:
            console.print()
        console.print(Text(block) if isinstance(block, str) else _rich_table(block))


def _plain_table(table: Table) -> str:
    widths = [max([len(c.header), *(len(row[i]) for row in table.rows)]) for i, c in enumerate(table.columns)]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(width) if column.align == "right" else cell.ljust(width)
            for cell, width, column in zip(cells, widths, table.columns, strict=True)
        )
        return COLUMN_GAP.join(padded).rstrip()

    return "\n".join([line([c.header for c in table.columns]), *(line(row) for row in table.rows), *table.notes])


def _rich_table(table: Table) -> RenderableType:
    drawn = RichTable(header_style="bold")
    for column in table.columns:
        drawn.add_column(column.header, justify=column.align)
    for row in table.rows:
        drawn.add_row(*(Text(cell) for cell in row))  # Text: a cell is shown as written, never read as markup
    return Group(drawn, *(Text(note) for note in table.notes)) if table.notes else drawn
