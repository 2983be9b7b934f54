"""Keys relayed across regions by three real gateways in one event loop (real gRPC, TLS, Redis, KMSs)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from relay.etsi014.models import KeyRequest
from relay.gateway.config import GatewaySettings
from relay.pki.layout import KeyDirectory
from tests.gateway.testbed import LocalTestbed, running_testbed
from tests.redis_harness import RedisServer

ON_DEMAND = GatewaySettings(prerelay=False)


@pytest.fixture
async def testbed(topology_keys: KeyDirectory, private_redis: RedisServer) -> AsyncIterator[LocalTestbed]:
    async with running_testbed(topology_keys, private_redis.url, ON_DEMAND) as running:
        yield running


async def test_sae_in_region1_and_region3_get_identical_keys(testbed: LocalTestbed) -> None:
    async with testbed.sae("SAE-R1-A") as master, testbed.sae("SAE-R3-A") as slave:
        issued = await master.get_key("SAE-R3-A", KeyRequest(number=3))
        fetched = await slave.get_key_with_ids("SAE-R1-A", [k.key_id for k in issued.keys])
    assert [(k.key_id, k.key) for k in fetched.keys] == [(k.key_id, k.key) for k in issued.keys]
    assert len({k.key for k in issued.keys}) == 3 and all(len(k.key) == 32 for k in issued.keys)
