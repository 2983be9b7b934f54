"""Downstream scarcity does not burn upstream QKD key or other flows' protection (issue 15, section 3).

The require-qkd GW2-GW3 lane is dry and stays dry (the vendor halts that link) while region 1 keeps
asking for region-3 keys in a closed loop; meanwhile one SAE pair region 1 -> region 2 asks at 5 keys/s,
below the 3 kbit/s GW1-GW2 link's ~11 keys/s. GW2's refusals report the dry lane upstream, so GW1 refuses
region-3 requests itself before sealing a hop: the GW1-GW2 lane is not emptied for transfers bound to
fail, and region 1 -> region 2 keeps QKD protection. (The fair share is made generous here, so what is
measured is the lane knowledge alone, as in every testbed of :func:`default_document`; ``lane_fresh_s``
near 0 gives the behaviour before it.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from relay.gateway.config import GatewaySettings
from relay.pki.layout import KeyDirectory
from tests.support.local_testbed import LocalTestbed, running_testbed
from tests.support.redis_servers import RedisServer
from tests.support.sae_load import Figures, SaeLoad, SteadyPair, check_delivery

REGION3 = [("SAE-R1-A", "SAE-R3-A"), ("SAE-R1-A", "SAE-R3-B")]
REGION2 = ("SAE-R1-B", "SAE-R2-A")
LOAD_S = 4.0
REGION2_INTERVAL_S = 0.2
SETTINGS = GatewaySettings(prerelay=False)


@pytest.fixture
async def testbed(topology_keys: KeyDirectory, private_redis: RedisServer) -> AsyncIterator[LocalTestbed]:
    async with running_testbed(topology_keys, private_redis.url, SETTINGS) as running:
        yield running


async def test_region3_load_on_a_dry_lane_leaves_gw1_gw2_key_and_region2_protection(testbed: LocalTestbed) -> None:
    gw1, gw2 = testbed.gateways["GW1"], testbed.gateways["GW2"]
    testbed.kms["KMS-R2"].kms.set_qber("QKD-GW2-GW3", 0.3)  # the vendor halts the link: nothing refills it
    dry = gw2.qkd_lanes.outbound("GW3")
    while await dry.level():
        await dry.take_any()
    upstream = gw1.qkd_lanes.outbound("GW2")
    start_level = await upstream.level()
    lowest = start_level

    fallbacks, wasted = gw1.metrics.counts.qkd_fallbacks, gw2.metrics.counts.sae.qkd_exhausted
    async with (
        SteadyPair(testbed.sae, REGION2, REGION2_INTERVAL_S) as region2,
        SaeLoad(testbed.sae, REGION3, concurrency=4) as load,
    ):
        ends = time.monotonic() + LOAD_S
        while time.monotonic() < ends:
            lowest = min(lowest, await upstream.level())
            await asyncio.sleep(0.1)
    fallbacks = gw1.metrics.counts.qkd_fallbacks - fallbacks
    wasted = gw2.metrics.counts.sae.qkd_exhausted - wasted  # region-3 hops that spent GW1-GW2 key in vain
    not_started = gw1.metrics.counts.sae.not_started

    Figures(
        "Downstream scarcity (require-qkd GW2-GW3 dry, region 1 -> region 3 closed loop)",
        load,
        faults=1,
        recovery_s=0.0,
        extra=f"GW1-GW2 lane {start_level} -> lowest {lowest}; {wasted} region-3 transfers spent GW1-GW2 key "
        f"and were refused at GW2, {not_started} refused at GW1 before spending any; region 1 -> region 2: "
        f"{len(region2.keys)} keys, {fallbacks} hops sealed pqc-only, {len(region2.failures)} failures",
    ).print()
    assert load.successes == [] and load.unexpected("require-qkd") == []
    assert not_started > 10 * max(1, wasted)  # refused at GW1, nearly all of them
    assert wasted <= 16  # the first answers, before GW2's report of the dry lane reached GW1
    assert lowest >= start_level // 2, (start_level, lowest)
    assert fallbacks == 0 and region2.failures == []
    assert len(region2.keys) >= LOAD_S / REGION2_INTERVAL_S / 2
    await check_delivery(testbed.sae, {REGION2: region2.keys})
