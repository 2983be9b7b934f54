"""How long each step of bringing the compose testbed up or down took, for the report at the end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class StepTimes:
    """Steps in the order they ran, each with its wall-clock duration in seconds."""

    steps: list[tuple[str, float]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.steps.append((name, time.monotonic() - started))

    def render(self) -> str:
        return "\n".join(f"  {name:<36}{seconds:>8.1f} s" for name, seconds in self.steps)
