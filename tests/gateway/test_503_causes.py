"""Every 503 names its real cause, end to end over three real gateways (real gRPC, TLS, Redis, KMSs).

A require-qkd lane also runs dry because its far end is gone (nothing refills it then): the SAE must be
told the gateway is down, not that QKD key is exhausted; a lane that is really dry says so, naming the link.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from relay.etsi014.client import KmeError
from relay.etsi014.models import KeyRequest
from relay.gateway.config import GatewaySettings
from relay.pki.layout import KeyDirectory
from tests.support.local_testbed import LocalTestbed, running_testbed
from tests.support.redis_servers import RedisServer

ON_DEMAND = GatewaySettings(prerelay=False)


@pytest.fixture
async def testbed(topology_keys: KeyDirectory, private_redis: RedisServer) -> AsyncIterator[LocalTestbed]:
    async with running_testbed(topology_keys, private_redis.url, ON_DEMAND) as running:
        yield running


async def drain_gw2_to_gw3(testbed: LocalTestbed) -> None:
    """Empty GW2's require-qkd lane to GW3 and halt its vendor link, so nothing refills it."""
    testbed.kms["KMS-R2"].kms.set_qber("QKD-GW2-GW3", 0.3)
    lane = testbed.gateways["GW2"].qkd_lanes.outbound("GW3")
    while await lane.level():
        await lane.take(1)


async def refusal(testbed: LocalTestbed, master: str, slave: str) -> str:
    async with testbed.sae(master) as client:
        with pytest.raises(KmeError) as refused:
            await client.get_key(slave, KeyRequest())
    assert refused.value.status == 503
    return refused.value.error.message


async def test_a_down_final_gateway_behind_a_dry_lane_is_reported_down_not_exhausted(testbed: LocalTestbed) -> None:
    await drain_gw2_to_gw3(testbed)
    await testbed.stop_gateway("GW3")
    for master in ("SAE-R2-A", "SAE-R1-A"):
        message = await refusal(testbed, master, "SAE-R3-A")
        assert "exhausted" not in message, message
        assert "GW3" in message and ("did not answer" in message or "down" in message or "unreachable" in message)
    again = await refusal(testbed, "SAE-R2-A", "SAE-R3-A")  # GW2 now knows both links of GW3 down
    assert "gateway GW3 is unreachable" in again or "GW3 did not answer" in again, again


async def test_a_dry_require_qkd_lane_is_named_with_its_policy(testbed: LocalTestbed) -> None:
    await drain_gw2_to_gw3(testbed)
    message = await refusal(testbed, "SAE-R2-A", "SAE-R3-A")
    assert "QKD-GW2-GW3" in message and "exhausted" in message and "require-qkd" in message, message


async def test_no_route_names_the_links_down(testbed: LocalTestbed) -> None:
    await testbed.stop_gateway("GW2")
    first = await refusal(testbed, "SAE-R1-A", "SAE-R2-A")
    message = first if "no working route" in first else await refusal(testbed, "SAE-R1-A", "SAE-R2-A")
    assert "no working route from GW1 to GW2: gateway GW2 is unreachable (links down: GW1-GW2" in message, message
