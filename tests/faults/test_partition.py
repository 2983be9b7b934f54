"""A partition between region 1 and region 2 (their gRPC port blackholed both ways) under load, then healed.

While the link is cut, SAE-R1-A -> SAE-R3-A reroutes over the pqc-only GW1-GW3 link and SAE-R1-B -> SAE-R2-A
over GW1-GW3-GW2 (cost 4); requests caught by the cut answer 503. After healing, SAE-R1-A -> SAE-R3-A
crosses GW2 again (GW2 forwards hops to GW3) without intervention.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from relay.gateway.config import GatewaySettings
from relay.pki.layout import KeyDirectory
from tests.support.local_testbed import PLENTY_OF_QKD_KEY, LocalTestbed, running_testbed
from tests.support.redis_servers import RedisServer
from tests.support.sae_load import Figures, SaeLoad, check_delivery
from tests.support.waiting import wait_until

TO_R3, TO_R2 = ("SAE-R1-A", "SAE-R3-A"), ("SAE-R1-B", "SAE-R2-A")
CUT_S = 7.0  # longer than link_down_s (5 s): GW1 probes the blackholed link once more


@pytest.fixture
async def testbed(topology_keys: KeyDirectory, private_redis: RedisServer) -> AsyncIterator[LocalTestbed]:
    settings = GatewaySettings(prerelay=False, hop_timeout_s=2.0)
    async with running_testbed(
        topology_keys, private_redis.url, settings, sim=PLENTY_OF_QKD_KEY, proxied_links=[("GW1", "GW2")]
    ) as running:
        yield running


async def test_partition_between_two_regions_reroutes_or_503s_and_heals(testbed: LocalTestbed) -> None:
    gw2 = testbed.gateways["GW2"].metrics.counts
    async with SaeLoad(testbed.sae, [TO_R3, TO_R2], concurrency=6) as load:
        await asyncio.sleep(1.5)
        assert load.succeeded_between(0, time.monotonic(), pair=TO_R2) > 0, load.messages()
        sent_to_gw3_at_cut = gw2.hops_sent
        testbed.cut("GW1", "GW2")
        cut_at = time.monotonic()
        await asyncio.sleep(CUT_S)
        testbed.heal("GW1", "GW2")
        healed_at = time.monotonic()
        sent_to_gw3_at_heal = gw2.hops_sent
        recovery_s = await wait_until(
            lambda: gw2.hops_sent > sent_to_gw3_at_heal, timeout_s=15, what="SAE-R1-A -> SAE-R3-A crossing GW2 again"
        )
        await asyncio.sleep(0.5)

    cut_hops_sent = sent_to_gw3_at_heal - sent_to_gw3_at_cut
    rerouted = {pair: load.succeeded_between(cut_at, healed_at, pair=pair) for pair in (TO_R3, TO_R2)}
    Figures(
        "partition GW1|GW2 (gRPC blackholed both ways)",
        load,
        faults=1,
        recovery_s=recovery_s,
        extra=f"cut {CUT_S:.0f} s; while cut {rerouted[TO_R3]} keys to SAE-R3-A over GW1-GW3 and "
        f"{rerouted[TO_R2]} to SAE-R2-A over GW1-GW3-GW2; recovery = R1->R3 crossing GW2 again",
    ).print()

    assert load.unexpected("did not answer", "no working route") == []
    assert all(rerouted.values()), "nothing was rerouted around the partition"
    assert cut_hops_sent <= 12, "GW2 kept forwarding R1 -> R3 traffic while cut off from GW1"  # in flight at the cut
    assert load.max_latency() < 10
    checked = await check_delivery(testbed.sae, load.keys_by_pair())
    assert checked == sum(len(a.keys) for a in load.successes)
