"""GW2's clock jumps 200 s ahead, beyond the 120 s replay window of hop messages, under load; then returns.

Every hop into GW2 is refused as stale (INVALID_ARGUMENT, final), so requests crossing GW2 answer 503; no
key is delivered for them and none that was handed out is lost. Once the clock is right, traffic flows
again by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from relay.crypto import DEFAULT_WINDOW_MS
from relay.gateway.config import GatewaySettings
from relay.pki.layout import KeyDirectory
from tests.support.local_testbed import PLENTY_OF_QKD_KEY, LocalTestbed, SkewedClock, running_testbed
from tests.support.redis_servers import RedisServer
from tests.support.sae_load import Figures, SaeLoad, check_delivery

TO_R3, TO_R2 = ("SAE-R1-A", "SAE-R3-A"), ("SAE-R1-B", "SAE-R2-A")
SKEW_MS = 200_000
SKEW_S = 3.0
GW2_CLOCK = SkewedClock()


@pytest.fixture
async def testbed(topology_keys: KeyDirectory, private_redis: RedisServer) -> AsyncIterator[LocalTestbed]:
    GW2_CLOCK.offset_ms = 0
    async with running_testbed(
        topology_keys,
        private_redis.url,
        GatewaySettings(prerelay=False),
        sim=PLENTY_OF_QKD_KEY,
        clocks={"GW2": GW2_CLOCK},
    ) as running:
        yield running


async def test_clock_skew_beyond_the_replay_window_answers_503_and_recovers(testbed: LocalTestbed) -> None:
    assert SKEW_MS > DEFAULT_WINDOW_MS
    async with SaeLoad(testbed.sae, [TO_R3, TO_R2], concurrency=6) as load:
        await asyncio.sleep(1.5)
        GW2_CLOCK.offset_ms = SKEW_MS
        skewed_at = time.monotonic()
        await load.wait_failures(skewed_at, count=4, containing="StaleMessage", timeout_s=5)
        await asyncio.sleep(SKEW_S)
        GW2_CLOCK.offset_ms = 0
        fixed_at = time.monotonic()
        recovery_s = max([await load.wait_success(fixed_at, pair=pair, timeout_s=10) for pair in (TO_R3, TO_R2)])
        await asyncio.sleep(0.5)

    late = [a for a in load.successes if skewed_at + 0.5 < a.started and a.ended < fixed_at]
    Figures(
        f"clock skew +{SKEW_MS // 1000} s at GW2 (window {DEFAULT_WINDOW_MS // 1000} s)",
        load,
        faults=1,
        recovery_s=recovery_s,
        extra=f"skewed {fixed_at - skewed_at:.1f} s; {len(late)} keys delivered across GW2 while skewed",
    ).print()
    assert load.unexpected("StaleMessage") == []
    assert late == [], "a hop outside the replay window was accepted"
    assert load.max_latency() < 5
    await check_delivery(testbed.sae, load.keys_by_pair())
