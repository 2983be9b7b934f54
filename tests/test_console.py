"""Operator tables and the load test's progress: plain text off a terminal, rich on a real pseudo-terminal."""

from __future__ import annotations

import io
import os
import select
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import pytest

from relay.console import Column, Table, render_plain, show
from relay.loadtest.progress import ProgressBar


def sample_table() -> Table:
    table = Table([Column("LINK"), Column("STORED bits", "right")], notes=["K9: admin unreachable"])
    table.add_row("QKD-GW1-GW2", "4096")
    table.add_row("Q", "8")
    return table


@contextmanager
def terminal() -> Iterator[tuple[TextIO, int]]:
    """The writing end of a real pseudo-terminal, and the descriptor to read what was drawn."""
    reader, writer = os.openpty()
    stream = open(writer, "w", encoding="utf-8")
    try:
        yield stream, reader
    finally:
        stream.close()
        os.close(reader)


def drawn(reader: int) -> str:
    """Everything written to the terminal so far."""
    chunks = []
    while select.select([reader], [], [], 0)[0]:
        chunks.append(os.read(reader, 1 << 16))
    return b"".join(chunks).decode()


def test_plain_columns_are_as_wide_as_their_widest_cell_and_numbers_align_right() -> None:
    assert render_plain(["heading", sample_table()]).splitlines() == [
        "heading",
        "",
        "LINK         STORED bits",
        "QKD-GW1-GW2         4096",
        "Q                      8",
        "K9: admin unreachable",
    ]


def test_a_row_must_fill_every_column() -> None:
    with pytest.raises(ValueError, match="2 columns was given 1 cells"):
        sample_table().add_row("only one")


def test_show_writes_plain_text_off_a_terminal_and_a_rich_table_on_one() -> None:
    captured = io.StringIO()
    show(["heading", sample_table()], captured)
    assert captured.getvalue() == render_plain(["heading", sample_table()]) + "\n"
    with terminal() as (stream, reader):
        show(["heading", sample_table()], stream)
        stream.flush()
        screen = drawn(reader)
    assert "┃" in screen and "QKD-GW1-GW2" in screen and "4096" in screen and "K9: admin unreachable" in screen


def test_progress_off_a_terminal_writes_only_the_finished_line() -> None:
    captured = io.StringIO()
    progress = ProgressBar(captured, "run c=2", total=4, duration_s=None)
    for ok in (True, False, True, True):
        progress.update(ok)
    assert captured.getvalue() == ""
    progress.finish()
    (line,) = captured.getvalue().splitlines()
    assert line.startswith("run c=2 [" + "#" * 30 + "] 100% 4 req, 1 err, ")


def test_progress_on_a_terminal_is_a_live_bar_with_rate_and_errors() -> None:
    with terminal() as (stream, reader):
        progress = ProgressBar(stream, "run c=2", total=4, duration_s=None)
        for ok in (True, False, True, True):
            progress.update(ok)
        progress.finish()
        stream.flush()
        screen = drawn(reader)
    assert "run c=2" in screen and "100%" in screen and "4 req, 1 err" in screen and "req/s" in screen
    assert "\r" in screen  # redrawn in place


def test_a_cell_is_shown_as_written_and_never_read_as_rich_markup() -> None:
    table = Table([Column("ERROR")])
    table.add_row("ClientConnectorError [Connection refused] [/bold]")
    with terminal() as (stream, reader):
        show([table], stream)
        stream.flush()
        screen = drawn(reader)
    assert "ClientConnectorError [Connection refused] [/bold]" in screen
