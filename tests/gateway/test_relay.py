"""Keys relayed across regions by three real gateways in one event loop (real gRPC, TLS, Redis, KMSs)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from relay.etsi014.client import KmeError
from relay.etsi014.models import KeyRequest
from relay.gateway.config import GatewaySettings
from relay.pki.layout import KeyDirectory
from tests.support.local_testbed import PLENTY_OF_QKD_KEY, LocalTestbed, running_testbed
from tests.support.redis_servers import RedisServer
from tests.support.waiting import wait_until

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


async def test_pool_served_keys_were_relayed_before_the_request(
    topology_keys: KeyDirectory, private_redis: RedisServer
) -> None:
    """With the vendors' default 100 keys per link, pre-relay of all 16 SAE pairs drains the QKD lanes
    and a pair visited late in each round backs off for up to 32 rounds: plenty of QKD key, so this
    pair's ready pool fills in the first rounds however slow the machine is."""
    settings = GatewaySettings(prerelay=True, prerelay_interval_s=0.05)
    async with running_testbed(topology_keys, private_redis.url, settings, sim=PLENTY_OF_QKD_KEY) as testbed:
        gw1 = testbed.gateways["GW1"]
        async with testbed.sae("SAE-R1-B") as master, testbed.sae("SAE-R3-B") as slave:

            async def two_ready() -> bool:
                return (await master.get_status("SAE-R3-B")).stored_key_count >= 2

            await wait_until(two_ready, timeout_s=30, interval_s=0.05, what="two pre-relayed keys ready at GW1")
            status = await master.get_status("SAE-R3-B")
            assert status.stored_key_count >= 2 and status.target_kme_id == "GW3"
            taken_before = gw1.store.metrics.ready_taken
            issued = await master.get_key("SAE-R3-B", KeyRequest(number=2))
            assert gw1.store.metrics.ready_taken == taken_before + 2  # served from the ready pool
            fetched = await slave.get_key_with_ids("SAE-R1-B", [k.key_id for k in issued.keys])
        assert [k.key for k in fetched.keys] == [k.key for k in issued.keys]


async def test_wrong_slave_gets_401_and_a_used_key_id_400(testbed: LocalTestbed) -> None:
    async with (
        testbed.sae("SAE-R1-A") as master,
        testbed.sae("SAE-R3-A") as slave,
        testbed.sae("SAE-R3-B") as intruder,
    ):
        issued = await master.get_key("SAE-R3-A", KeyRequest())
        key_ids = [k.key_id for k in issued.keys]
        with pytest.raises(KmeError) as refused:
            await intruder.get_key_with_ids("SAE-R1-A", key_ids)
        assert refused.value.status == 401
        assert [k.key for k in (await slave.get_key_with_ids("SAE-R1-A", key_ids)).keys] == [issued.keys[0].key]
        with pytest.raises(KmeError) as reused:
            await slave.get_key_with_ids("SAE-R1-A", key_ids)
        assert reused.value.status == 400


async def test_qkd_pqc_hop_degrades_to_pqc_only_when_qkd_runs_out_and_counts_it(testbed: LocalTestbed) -> None:
    gw1 = testbed.gateways["GW1"]
    testbed.kms["KMS-R1"].kms.set_qber("QKD-GW1-GW2", 0.3)  # the vendor halts the link: no refill
    lane = gw1.qkd_lanes.outbound("GW2")
    while await lane.level():
        await lane.take(1)
    async with testbed.sae("SAE-R1-A") as master, testbed.sae("SAE-R2-A") as slave:
        issued = await master.get_key("SAE-R2-A", KeyRequest())
        fetched = await slave.get_key_with_ids("SAE-R1-A", [issued.keys[0].key_id])
    assert fetched.keys[0].key == issued.keys[0].key
    assert gw1.metrics.counts.qkd_fallbacks >= 1


async def test_a_cut_link_is_routed_around_or_answered_with_503(testbed: LocalTestbed) -> None:
    await testbed.stop_gateway("GW2")
    async with testbed.sae("SAE-R1-A") as master, testbed.sae("SAE-R3-A") as slave:
        issued = await master.get_key("SAE-R3-A", KeyRequest())
        fetched = await slave.get_key_with_ids("SAE-R1-A", [issued.keys[0].key_id])
        assert fetched.keys[0].key == issued.keys[0].key
        with pytest.raises(KmeError) as unreachable:
            await master.get_key("SAE-R2-A", KeyRequest())
    assert unreachable.value.status == 503
    assert "no working route" in unreachable.value.error.message


async def test_admin_status_reports_pool_levels_link_state_and_counters(testbed: LocalTestbed) -> None:
    admin = testbed.gateways["GW2"].sites["admin"]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{admin.host}:{admin.port}/status") as response:
            status = await response.json()
        async with session.get(f"http://{admin.host}:{admin.port}/healthz") as response:
            assert response.status == 200
    links = {link["neighbour"]: link for link in status["links"]}
    assert links["GW3"]["policy"] == "require-qkd" and links["GW1"]["policy"] == "qkd+pqc"
    assert all(pool["level"] > 0 for pool in links["GW3"]["qkd_pools"])  # filled before the test began
    assert links["GW1"]["reachable"] and status["relay"]["hops_sent"] == 0
    assert {pool["name"] for pool in status["ready_pools"]} >= {"ready:SAE-R2-A->SAE-R3-A"}
