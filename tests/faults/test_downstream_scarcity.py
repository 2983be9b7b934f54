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

from collections.abc import AsyncIterator

import pytest

from relay.gateway.config import GatewaySettings
from relay.pki.layout import KeyDirectory
from tests.support.local_testbed import LocalTestbed, running_testbed
from tests.support.redis_servers import RedisServer
from tests.support.scarcity import ScarcityOutcome, run_scarce_load

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
        await dry.take(1)
    fallbacks, wasted = gw1.metrics.counts.qkd_fallbacks, gw2.metrics.counts.sae.qkd_exhausted
    run = await run_scarce_load(testbed.sae, gw1.qkd_lanes.outbound("GW2").level)
    outcome = ScarcityOutcome(
        "Downstream scarcity (require-qkd GW2-GW3 dry, region 1 -> region 3 closed loop)",
        run,
        wasted=gw2.metrics.counts.sae.qkd_exhausted - wasted,
        not_started=gw1.metrics.counts.sae.not_started,
        fallbacks=gw1.metrics.counts.qkd_fallbacks - fallbacks,
    )
    outcome.print()
    assert outcome.wasted <= 16  # the first answers, before GW2's report of the dry lane reached GW1
    await outcome.check(testbed.sae)
