"""The downstream-scarcity scenario of issue 15, section 3, shared by its in-process and process tests.

Region 1 asks for region-3 keys in a closed loop while GW2's require-qkd lane to GW3 is dry, and one
pair region 1 -> region 2 asks at 5 keys/s, below the GW1-GW2 link's ~11 keys/s. :func:`run_scarce_load`
drives that load and watches GW1's lane towards GW2 however the test reads it; :class:`ScarcityOutcome`
prints the figures and checks what must hold: GW1 refuses the region-3 requests before spending GW1-GW2
key, the lane keeps at least half its level, and region 1 -> region 2 keeps its QKD protection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tests.support.sae_load import Figures, SaeClients, SaeLoad, SteadyPair, check_delivery

REGION3 = [("SAE-R1-A", "SAE-R3-A"), ("SAE-R1-A", "SAE-R3-B")]
REGION2 = ("SAE-R1-B", "SAE-R2-A")
LOAD_S = 4.0
REGION2_INTERVAL_S = 0.2
LANE_POLL_S = 0.1


@dataclass
class ScarceLoad:
    load: SaeLoad
    region2: SteadyPair
    start_level: float
    lowest: float


async def run_scarce_load(clients: SaeClients, upstream_level: Callable[[], Awaitable[float]]) -> ScarceLoad:
    """``LOAD_S`` of both flows; ``upstream_level``: GW1's QKD lane towards GW2 now."""
    start_level = lowest = await upstream_level()
    async with (
        SteadyPair(clients, REGION2, REGION2_INTERVAL_S) as region2,
        SaeLoad(clients, REGION3, concurrency=4) as load,
    ):
        ends = time.monotonic() + LOAD_S
        while time.monotonic() < ends:
            lowest = min(lowest, await upstream_level())
            await asyncio.sleep(LANE_POLL_S)
    return ScarceLoad(load, region2, start_level, lowest)


@dataclass(frozen=True)
class ScarcityOutcome:
    """What the load did, by the gateways' own counts over its run."""

    title: str
    run: ScarceLoad
    wasted: float  # region-3 transfers refused at GW2 after spending GW1-GW2 key
    not_started: float  # region-3 transfers GW1 refused before spending any QKD key
    fallbacks: float  # GW1 hops sealed pqc-only

    def print(self) -> None:
        run = self.run
        Figures(
            self.title,
            run.load,
            faults=1,
            recovery_s=0.0,
            extra=f"GW1-GW2 lane {run.start_level:.0f} -> lowest {run.lowest:.0f}; {self.wasted:.0f} region-3 "
            f"transfers refused at GW2 after spending GW1-GW2 key, {self.not_started:.0f} refused at GW1 before "
            f"spending any; region 1 -> region 2: {len(run.region2.keys)} keys, {self.fallbacks:.0f} hops sealed "
            f"pqc-only, {len(run.region2.failures)} failures",
        ).print()

    async def check(self, clients: SaeClients) -> None:
        run = self.run
        assert run.load.successes == [] and run.load.unexpected("require-qkd") == []
        assert self.not_started > 10 * max(1, self.wasted)  # refused at GW1, nearly all of them
        assert run.lowest >= run.start_level // 2, (run.start_level, run.lowest)
        assert self.fallbacks == 0 and run.region2.failures == []
        assert len(run.region2.keys) >= LOAD_S / REGION2_INTERVAL_S / 2
        await check_delivery(clients, {REGION2: run.region2.keys})
