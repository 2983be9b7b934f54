"""A status view of pool levels, for the gateway's status endpoint, the CLI and metrics exporters."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from relay.pool.watermarks import PoolState, Watermarks


class PoolGauge(Protocol):
    """Anything with a name, watermarks and a level: a QKD pool lane or an SAE pair's ready pool."""

    @property
    def name(self) -> str: ...

    @property
    def watermarks(self) -> Watermarks: ...

    async def level(self) -> int: ...


@dataclass(frozen=True)
class PoolStatus:
    name: str
    level: int
    low: int
    high: int
    state: PoolState


async def pool_status(gauges: Iterable[PoolGauge]) -> list[PoolStatus]:
    """Levels of every pool, read concurrently; raises PoolUnavailable if Redis cannot answer."""
    gauges = list(gauges)
    levels = await asyncio.gather(*(gauge.level() for gauge in gauges))
    return [
        PoolStatus(g.name, level, g.watermarks.low, g.watermarks.high, g.watermarks.state(level))
        for g, level in zip(gauges, levels, strict=True)
    ]
