"""When open-loop requests are due: a fixed target rate with uniform or Poisson inter-arrival times.

The schedule is fixed before the run, independent of how fast the gateway answers; latency is measured
from each request's scheduled time, so a request that waited for a free worker is charged for the wait
(no coordinated omission).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from enum import StrEnum


class Arrival(StrEnum):
    UNIFORM = "uniform"
    POISSON = "poisson"


def arrival_offsets(rate: float, arrival: Arrival, *, seed: int | None = None) -> Iterator[float]:
    """Seconds after the start at which successive requests are due (endless; the caller stops)."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    if arrival is Arrival.UNIFORM:
        index = 0
        while True:
            yield index / rate
            index += 1
    rng = random.Random(seed)
    offset = 0.0
    while True:
        yield offset
        offset += rng.expovariate(rate)
