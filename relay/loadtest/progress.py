"""The progress of one load-test run: a rich live bar with rate and errors on a terminal, one line elsewhere.

When the stream is not a terminal (a pipe, a log file, a test), only the finished line of each run is
written, so logs stay readable. Either way the numbers are the same: requests done, errors, requests per
second and elapsed time; the fraction done is the larger of requests over the planned count and elapsed
time over the planned duration.
"""

from __future__ import annotations

import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

BAR_WIDTH = 30
REDRAW_S = 0.1


class ProgressBar:
    def __init__(self, stream: TextIO, label: str, *, total: int | None, duration_s: float | None) -> None:
        self._stream = stream
        self._label = label
        self._total = total
        self._duration_s = duration_s
        self._started = time.monotonic()
        self._drawn = 0.0
        self.done = 0
        self.errors = 0
        self._live: Progress | None = None
        if stream.isatty():
            self._live = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[done]} req, {task.fields[errors]} err, {task.fields[rate]:,.0f} req/s"),
                TimeElapsedColumn(),
                console=Console(file=stream),
                auto_refresh=False,
            )
            self._task = self._live.add_task(label, total=1.0, done=0, errors=0, rate=0.0)
            self._live.start()

    def update(self, ok: bool) -> None:
        self.done += 1
        self.errors += not ok
        now = time.monotonic()
        if self._live is not None and now - self._drawn >= REDRAW_S:
            self._drawn = now
            self._redraw(self._live, now, finished=False)

    def finish(self) -> None:
        now = time.monotonic()
        if self._live is None:
            self._stream.write(self.line(now, finished=True) + "\n")
            self._stream.flush()
            return
        self._redraw(self._live, now, finished=True)
        self._live.stop()

    def line(self, now: float, *, finished: bool = False) -> str:
        fraction, rate, elapsed = self._figures(now, finished=finished)
        filled = round(fraction * BAR_WIDTH)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        return (
            f"{self._label} [{bar}] {fraction:4.0%} {self.done} req, {self.errors} err, "
            f"{rate:,.0f} req/s, {elapsed:.1f} s"
        )

    def _redraw(self, live: Progress, now: float, *, finished: bool) -> None:
        fraction, rate, _ = self._figures(now, finished=finished)
        live.update(self._task, completed=fraction, done=self.done, errors=self.errors, rate=rate)
        live.refresh()

    def _figures(self, now: float, *, finished: bool) -> tuple[float, float, float]:
        """The fraction done, requests per second and seconds elapsed at ``now``."""
        elapsed = now - self._started
        fractions = []
        if self._total:
            fractions.append(self.done / self._total)
        if self._duration_s:
            fractions.append(elapsed / self._duration_s)
        fraction = 1.0 if finished else min(1.0, max(fractions, default=0.0))
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return fraction, rate, elapsed
