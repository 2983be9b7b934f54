"""QKD-aware routing over real gateways: with a second QKD route GW1-GW3 (qkd+pqc, costlier than the two
hops over GW2), keys for region 3 go over GW2 while its require-qkd lane holds key, and over GW1-GW3,
still QKD-protected, once GW2 reports that lane dry; never over the dry lane, and no SAE sees a 503."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from relay.etsi014.models import KeyRequest
from relay.gateway.config import GatewaySettings
from relay.pki.layout import KeyDirectory
from tests.support.local_testbed import LocalTestbed, default_document, running_testbed
from tests.support.redis_servers import RedisServer

ON_DEMAND = GatewaySettings(prerelay=False)


def with_qkd_gw1_gw3() -> dict[str, Any]:
    """The testbed topology with a QKD channel on GW1-GW3 (the KMS-R1 network reaching GW3 too)."""
    document = default_document()
    document["qkd_links"].append(
        {
            "id": "QKD-GW1-GW3",
            "kms": "KMS-R1",
            "rate_bps": 3000,
            "endpoints": [{"sae": "GW1", "kme": "KME-R1-A"}, {"sae": "GW3", "kme": "KME-R1-B"}],
        }
    )
    document["links"] = [
        link if set(link["gateways"]) != {"GW1", "GW3"} else {**link, "policy": "qkd+pqc", "qkd_link": "QKD-GW1-GW3"}
        for link in document["links"]
    ]
    return document


@pytest.fixture
async def testbed(topology_keys: KeyDirectory, private_redis: RedisServer) -> AsyncIterator[LocalTestbed]:
    async with running_testbed(topology_keys, private_redis.url, ON_DEMAND, document=with_qkd_gw1_gw3()) as running:
        yield running


async def test_keys_take_the_qkd_route_that_holds_key(testbed: LocalTestbed) -> None:
    gw1, gw2, gw3 = (testbed.gateways[g] for g in ("GW1", "GW2", "GW3"))
    direct = gw1.qkd_lanes.outbound("GW3")
    async with testbed.sae("SAE-R1-A") as master, testbed.sae("SAE-R3-A") as slave:
        await master.get_key("SAE-R3-A", KeyRequest())
        assert gw2.metrics.counts.hops_received == 1  # cheapest: over GW2

        testbed.kms["KMS-R2"].kms.set_qber("QKD-GW2-GW3", 0.3)  # the vendor halts GW2-GW3: nothing refills it
        dry = gw2.qkd_lanes.outbound("GW3")
        while await dry.level():
            await dry.take(1)
        direct_before, via_gw2_before = direct.metrics.taken, gw2.metrics.counts.hops_received
        issued = [key for _ in range(5) for key in (await master.get_key("SAE-R3-A", KeyRequest())).keys]
        fetched = await slave.get_key_with_ids("SAE-R1-A", [key.key_id for key in issued])

    assert [key.key for key in fetched.keys] == [key.key for key in issued]
    assert gw2.metrics.counts.hops_received - via_gw2_before <= 1  # the one refused, that reported the dry lane
    assert gw2.metrics.counts.sae.qkd_exhausted <= 1
    assert direct.metrics.taken - direct_before == 5  # five hops GW1-GW3, each sealed with QKD key
    assert gw1.metrics.counts.qkd_fallbacks == 0 and gw3.metrics.counts.hops_received >= 6
