"""QKD key exhaustion without any QBER alarm: the load simply outruns the simulated 2 kbit/s link.

Small QKD pools and vendor links without backlog, and both QKD links spending a one-time pad per key
(``qkd_use: otp``; with ``hkdf`` one QKD key seals a frame of up to 512 keys and six SAEs never outrun
the link): the require-qkd GW2-GW3 lane runs dry and requests to region 3 answer 503 (never rerouted onto
the pqc-only link); the qkd+pqc GW1-GW2 hops degrade to pqc-only and are counted. When the load stops,
the fillers catch up and keys flow again by themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relay.gateway.config import GatewaySettings
from relay.kms_sim.config import SimSettings
from relay.pki.layout import KeyDirectory
from relay.pool import QkdPoolSettings
from relay.pool.watermarks import Watermarks
from tests.support.local_testbed import LocalTestbed, default_document, running_testbed
from tests.support.redis_servers import RedisServer
from tests.support.sae_load import Figures, SaeLoad, check_delivery

PAIRS = [("SAE-R1-A", "SAE-R3-A"), ("SAE-R2-A", "SAE-R3-B"), ("SAE-R1-B", "SAE-R3-B")]
SETTINGS = GatewaySettings(prerelay=False, qkd_pool=QkdPoolSettings(watermarks=Watermarks(low=2, high=8)))


def one_time_pads(document: dict[str, Any]) -> dict[str, Any]:
    for link in document["links"]:
        if "qkd_link" in link:
            link["qkd_use"] = "otp"
    return document


@pytest.fixture
async def testbed(topology_keys: KeyDirectory, private_redis: RedisServer) -> AsyncIterator[LocalTestbed]:
    async with running_testbed(
        topology_keys,
        private_redis.url,
        SETTINGS,
        sim=SimSettings(initial_key_count=8),
        document=one_time_pads(default_document()),
    ) as running:
        yield running


async def test_load_outrunning_the_qkd_link_answers_503_and_recovers_when_it_stops(testbed: LocalTestbed) -> None:
    gw1, gw2 = (testbed.gateways[g].metrics.counts for g in ("GW1", "GW2"))
    started = time.monotonic()
    # 48 SAEs: keys wait for QKD key, so the load outruns the link only once it asks for more than the
    # link distils before the keys' deadlines (a few dozen keys); then requests are refused at once
    async with SaeLoad(testbed.sae, PAIRS, concurrency=48) as load:
        exhausted_s = await load.wait_failures(started, count=10, containing="require-qkd", timeout_s=15)
        await asyncio.sleep(2.0)  # sustained: the link keeps delivering a trickle the load fights over
    stopped_at = time.monotonic()
    async with SaeLoad(testbed.sae, PAIRS[:1], concurrency=1) as probe:
        recovery_s = await probe.wait_success(stopped_at, timeout_s=15)
        await asyncio.sleep(0.5)

    stalled = sum(a.status == 503 for a in load.attempts)
    Figures(
        "QKD key exhaustion (load outruns the 2 kbit/s require-qkd link, no QBER)",
        load,
        faults=1,
        recovery_s=recovery_s,
        extra=f"exhausted {exhausted_s:.1f} s into the load; GW2 refused {gw2.qkd_exhausted} require-qkd hops; "
        f"GW1 degraded {gw1.qkd_fallbacks} qkd+pqc hops to pqc-only; recovery = a single SAE after the "
        f"load stopped ({len(probe.successes)}/{len(probe.attempts)} probe requests succeeded)",
    ).print()
    assert stalled > 0
    assert load.unexpected("require-qkd") == [] and probe.unexpected("require-qkd") == []
    assert gw2.qkd_exhausted > 0
    keys = load.keys_by_pair()
    for pair, more in probe.keys_by_pair().items():
        keys.setdefault(pair, []).extend(more)
    await check_delivery(testbed.sae, keys)
