"""Every 503 names its real cause, end to end over three real gateways (real gRPC, TLS, Redis, KMSs).

A require-qkd lane also runs dry because its far end is gone (nothing refills it then): the SAE must be
told the gateway is down, not that QKD key is exhausted; a lane that is really dry says so, naming the link.
"""

from __future__ import annotations

import asyncio
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


async def test_a_require_qkd_lane_that_refills_makes_keys_wait_not_fail(
    topology_keys: KeyDirectory, private_redis: RedisServer
) -> None:
    """A require-qkd lane found empty is not refused at once: its keys wait (up to ``qkd_wait_s``) for the
    link to distil more, so a busy slow link serves frames instead of 503s. Here the vendor resumes the
    halted link while a request waits on the drained lane; the request is answered with its key."""
    settings = GatewaySettings(prerelay=False, qkd_wait_s=10.0)
    async with running_testbed(topology_keys, private_redis.url, settings) as testbed:
        await drain_gw2_to_gw3(testbed)
        gw2 = testbed.gateways["GW2"]
        exhausted = gw2.metrics.counts.sae.qkd_exhausted
        async with testbed.sae("SAE-R2-A") as master, testbed.sae("SAE-R3-A") as slave:
            request = asyncio.create_task(master.get_key("SAE-R3-A", KeyRequest(number=4)))
            await asyncio.sleep(0.5)
            assert not request.done()  # waiting on the lane, not refused
            testbed.kms["KMS-R2"].kms.set_qber("QKD-GW2-GW3", 0.02)  # the vendor resumes: the lane refills
            issued = (await request).keys
            fetched = await slave.get_key_with_ids("SAE-R2-A", [key.key_id for key in issued])
        assert [key.key for key in fetched.keys] == [key.key for key in issued] and len(issued) == 4
        assert gw2.metrics.counts.sae.qkd_exhausted == exhausted
