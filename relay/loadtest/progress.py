"""A one-line text progress bar on stderr, redrawn in place on a terminal.

When the stream is not a terminal (a pipe, a log file, a test), only the finished line of each run is
written, so logs stay readable.
"""

from __future__ import annotations

import time
from typing import TextIO

BAR_WIDTH = 30
REDRAW_S = 0.1


class ProgressBar:
    def __init__(
        self, stream: TextIO, label: str, *, total: int | None, duration_s: float | None, live: bool | None = None
    ) -> None:
        self._stream = stream
        self._label = label
        self._total = total
        self._duration_s = duration_s
        self._live = stream.isatty() if live is None else live
        self._started = time.monotonic()
        self._drawn = 0.0
        self.done = 0
        self.errors = 0

    def update(self, ok: bool) -> None:
        self.done += 1
        self.errors += not ok
        now = time.monotonic()
        if self._live and now - self._drawn >= REDRAW_S:
            self._drawn = now
            self._stream.write("\r" + self.line(now))
            self._stream.flush()

    def finish(self) -> None:
        self._stream.write(("\r" if self._live else "") + self.line(time.monotonic(), finished=True) + "\n")
        self._stream.flush()

    def line(self, now: float, *, finished: bool = False) -> str:
        elapsed = now - self._started
        fractions = []
        if self._total:
            fractions.append(self.done / self._total)
        if self._duration_s:
            fractions.append(elapsed / self._duration_s)
        fraction = 1.0 if finished else min(1.0, max(fractions, default=0.0))
        filled = round(fraction * BAR_WIDTH)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return (
            f"{self._label} [{bar}] {fraction:4.0%} {self.done} req, {self.errors} err, "
            f"{rate:,.0f} req/s, {elapsed:.1f} s"
        )
