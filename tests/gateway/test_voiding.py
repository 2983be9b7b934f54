"""The production void path end to end (three real gateways, gRPC, TLS, Redis, KMS simulators): a relay
that fails half way is voided by its origin's signed void along the route the keys took, and a void of
"all" keys of one of the origin's own masters never takes a released key nor leaves a ready key without
its slave copy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from relay.etsi014.client import KmeError
from relay.etsi014.models import KeyRequest
from relay.gateway.config import GatewaySettings
from relay.pki.layout import KeyDirectory
from tests.support.local_testbed import PLENTY_OF_QKD_KEY, LocalTestbed, default_document, running_testbed
from tests.support.redis_servers import RedisServer
from tests.support.waiting import wait_until

ON_DEMAND = GatewaySettings(prerelay=False)


@pytest.fixture
async def testbed(topology_keys: KeyDirectory, private_redis: RedisServer) -> AsyncIterator[LocalTestbed]:
    async with running_testbed(topology_keys, private_redis.url, ON_DEMAND) as running:
        yield running


def one_time_pad_on(document: dict[str, Any], gateways: list[str]) -> dict[str, Any]:
    """The topology with ``qkd_use: otp`` on the link between ``gateways``."""
    for link in document["links"]:
        if sorted(link["gateways"]) == sorted(gateways):
            link["qkd_use"] = "otp"
    return document


async def test_a_half_failed_request_is_voided_at_the_target_gateway(
    topology_keys: KeyDirectory, private_redis: RedisServer
) -> None:
    """Two keys over GW1-GW2-GW3 in one frame, with two QKD keys left on the require-qkd GW2-GW3 link that
    spends a one-time pad per key: they cover the frame's key and one pad, so one key reaches GW3 and the
    other is refused (503, never a partial pad), and GW1's signed void withdraws the one that arrived."""
    document = one_time_pad_on(default_document(), ["GW2", "GW3"])
    async with running_testbed(topology_keys, private_redis.url, ON_DEMAND, document=document) as testbed:
        gw2, gw3 = testbed.gateways["GW2"], testbed.gateways["GW3"]
        testbed.kms["KMS-R2"].kms.set_qber("QKD-GW2-GW3", 0.3)  # the vendor halts the link: no refill
        lane = gw2.qkd_lanes.outbound("GW3")
        while await lane.level() > 2:
            await lane.take(1)
        async with testbed.sae("SAE-R1-A") as master:
            with pytest.raises(KmeError) as refused:
                await master.get_key("SAE-R3-A", KeyRequest(number=2))
        assert refused.value.status == 503
        assert await lane.level() == 0
        assert gw3.store.metrics.slave_stored == 1  # the key that got through, never given to the master
        await wait_until(lambda: gw3.store.metrics.voided == 1, timeout_s=15, what="the stored key voided at GW3")
        assert gw3.metrics.counts.keys_voided == 1


async def test_voiding_all_of_an_own_masters_keys_spares_released_keys_and_the_ready_pool(
    topology_keys: KeyDirectory, private_redis: RedisServer
) -> None:
    settings = GatewaySettings(prerelay=True, prerelay_interval_s=0.05)
    async with running_testbed(topology_keys, private_redis.url, settings, sim=PLENTY_OF_QKD_KEY) as testbed:
        gw1 = testbed.gateways["GW1"]
        async with testbed.sae("SAE-R1-B") as master, testbed.sae("SAE-R3-B") as slave:

            async def three_ready() -> bool:
                return await gw1.store.ready_level("SAE-R1-B", "SAE-R3-B") >= 3

            await wait_until(three_ready, timeout_s=30, interval_s=0.05, what="three pre-relayed keys at GW1")
            [released] = (await master.get_key("SAE-R3-B", KeyRequest())).keys  # from the ready pool
            voided = await gw1.voiding.void("SAE-R1-B", "SAE-R3-B", [])
            assert len(voided) >= 2 and released.key_id not in voided
            for key_id in voided:  # withdrawn from the ready pool first: no master can get them now
                with pytest.raises(KmeError) as gone:
                    await slave.get_key_with_ids("SAE-R1-B", [key_id])
                assert gone.value.status == 400
            fetched = await slave.get_key_with_ids("SAE-R1-B", [released.key_id])
            assert fetched.keys[0].key == released.key
            after = (await master.get_key("SAE-R3-B", KeyRequest(number=2))).keys  # the pool, refilled
            fetched = await slave.get_key_with_ids("SAE-R1-B", [key.key_id for key in after])
            assert [key.key for key in fetched.keys] == [key.key for key in after]
