"""Pre-relay with three real gateways: it backs off while a require-qkd lane is dry, and refills once key is back;
a pair that starts asking gets a pool within seconds.

The vendor halts QKD-GW2-GW3 and GW2's lane towards GW3 is emptied, so every pre-relay towards GW3 (from GW1
through GW2, and from GW2) is refused for want of QKD key. Pre-relay must then wait with a growing,
bounded backoff and probe with one key at a time, rather than send a batch per SAE pair every round; once
the link delivers again, the ready pools towards GW3 fill up by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from relay.etsi014.models import KeyRequest
from relay.gateway.config import GatewaySettings
from relay.gateway.prerelay import FIRST_BACKOFF_S, MAX_BACKOFF_S
from relay.gateway.service import RunningGateway
from relay.pki.layout import KeyDirectory
from relay.pool import PoolEmpty, RelayedStoreSettings
from relay.pool.watermarks import Watermarks
from tests.support.local_testbed import PLENTY_OF_QKD_KEY, LocalTestbed, running_testbed
from tests.support.redis_servers import RedisServer

BATCH = 8
READY_HIGH = 8
SETTINGS = GatewaySettings(
    prerelay=True,
    prerelay_interval_s=0.05,
    prerelay_batch=BATCH,
    relayed_store=RelayedStoreSettings(ready_watermarks=Watermarks(low=2, high=READY_HIGH)),
)
DRY_S = 6.0
NEWLY_ACTIVE_S = 10.0  # a generous bound: one demand refresh and one pre-relay round are needed


def _probes_within(seconds: float) -> int:
    """Probes pre-relay sends to a dry destination in ``seconds``: one after each wait (0.5, 1, 2, 4, 4 s ...)."""
    elapsed, wait, probes = 0.0, FIRST_BACKOFF_S, 0
    while elapsed + wait <= seconds:
        elapsed, wait, probes = elapsed + wait, min(2 * wait, MAX_BACKOFF_S), probes + 1
    return probes


async def _eventually(condition: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> float:
    """Seconds until ``condition`` held; fails the test after ``timeout_s``."""
    started = time.monotonic()
    while not await condition():
        assert time.monotonic() - started < timeout_s, f"{what} not within {timeout_s} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def _prerelay_failures(gateway: RunningGateway) -> int:
    return gateway.metrics.counts.prerelay.relay_failures


async def _empty_ready_pools_towards(testbed: LocalTestbed, destination: str) -> None:
    slaves = [sae.id for sae in testbed.topology.saes if sae.gateway == destination]
    for running in testbed.gateways.values():
        for master in running.plan.local_saes:
            for slave in slaves:
                await running.store.take_ready(master, slave, READY_HIGH)


async def test_prerelay_backs_off_while_a_require_qkd_lane_is_dry_and_refills_once_key_is_back(
    topology_keys: KeyDirectory, private_redis: RedisServer
) -> None:
    async with running_testbed(topology_keys, private_redis.url, SETTINGS) as testbed:
        gw1, gw2 = testbed.gateways["GW1"], testbed.gateways["GW2"]
        store = gw1.store

        async def full() -> bool:
            return await store.ready_level("SAE-R1-A", "SAE-R3-A") == READY_HIGH

        view = gw1.metrics.sources
        assert view is not None and view.prerelay is not None

        async def routes_over_gw2() -> bool:  # start-up reports neighbours not yet listening as down for a while
            return not view.health.down_links()

        await _eventually(routes_over_gw2, 20, "GW1 reaching its neighbours after start-up")
        async with testbed.sae("SAE-R1-A") as master:  # a request makes the pair active (the others are pinned)
            await master.get_key("SAE-R2-A", KeyRequest())
        await _eventually(full, 20, "a full ready pool SAE-R1-A -> SAE-R3-A")
        await _eventually(routes_over_gw2, 20, "GW1 routing SAE-R1-A -> SAE-R3-A over GW2 again")

        at_start = {gw.plan.id: _prerelay_failures(gw) for gw in (gw1, gw2)}  # the lanes fill after start-up
        link = testbed.kms["KMS-R2"].kms
        link.set_qber("QKD-GW2-GW3", 0.3)  # the vendor halts the link: nothing refills the lanes
        lane = gw2.qkd_lanes.outbound("GW3")
        with contextlib.suppress(PoolEmpty):  # pre-relay may take the last key between a level and a take
            while True:
                await lane.take(1)
        await _empty_ready_pools_towards(testbed, "GW3")

        async def both_failed() -> bool:
            return all(_prerelay_failures(gw) > at_start[gw.plan.id] for gw in (gw1, gw2))

        await _eventually(both_failed, 10, "a failed pre-relay towards GW3 at GW1 and GW2")
        before = {gw.plan.id: _prerelay_failures(gw) for gw in (gw1, gw2)}
        sae_failures_before = gw1.metrics.counts.sae.relay_failures
        await asyncio.sleep(DRY_S)
        failed = {gw.plan.id: _prerelay_failures(gw) - before[gw.plan.id] for gw in (gw1, gw2)}
        waiting = {w.destination: w for w in view.prerelay.waiting()}

        # Without backoff by destination each of GW1's 4 pairs towards GW3 sent a batch of 8 every few
        # rounds (hundreds of failures in 6 s); now it is the rest of the first batch, then one probe per wait.
        assert all(count <= BATCH - 1 + _probes_within(DRY_S) for count in failed.values()), failed
        assert "GW3" in waiting and "exhausted" in waiting["GW3"].reason, (
            waiting,
            view.health.down_links(),
            view.health.liveness.counts,
            gw1.metrics.relay_failures,
        )
        assert 0 < waiting["GW3"].retry_in_s <= MAX_BACKOFF_S
        assert gw1.metrics.counts.sae.relay_failures == sae_failures_before  # no SAE asked: nothing failed for one
        other = ("SAE-R1-A", "SAE-R2-A")  # other destinations keep filling, to the target of their demand
        assert await store.ready_level(*other) == (await view.prerelay.demand.targets())[other] >= 2

        link.set_qber("QKD-GW2-GW3", 0.02)  # key flows again (the stock it kept is delivered at once)

        async def refilling() -> bool:
            return await store.ready_level("SAE-R1-A", "SAE-R3-A") > 0

        first_key_s = await _eventually(refilling, MAX_BACKOFF_S + 5, "a pre-relayed key towards GW3 once key is back")
        await _eventually(full, 30, "the ready pool SAE-R1-A -> SAE-R3-A full again")
        print(f"\npre-relay failures in {DRY_S:.0f} s dry: {failed}; first key back after {first_key_s:.1f} s")


async def test_a_pair_that_starts_asking_is_served_from_its_pool_within_seconds(
    topology_keys: KeyDirectory, private_redis: RedisServer
) -> None:
    """SAE-R2-A -> SAE-R1-A is not pinned: no pool until it asks; its first requests relay on demand, then
    pre-relay keeps its pool and the following ones are taken from it (the store's ``ready_taken``)."""
    master, slave = "SAE-R2-A", "SAE-R1-A"
    async with running_testbed(topology_keys, private_redis.url, SETTINGS, sim=PLENTY_OF_QKD_KEY) as testbed:
        gw2 = testbed.gateways["GW2"]
        view = gw2.metrics.sources
        assert view is not None and view.prerelay is not None
        assert (master, slave) not in view.prerelay.demand.kept_pairs()
        assert await gw2.store.ready_level(master, slave) == 0
        started, issued = time.monotonic(), 0
        async with testbed.sae(master) as client:
            while gw2.store.metrics.ready_taken == 0:
                assert time.monotonic() - started < NEWLY_ACTIVE_S, f"no pool-served key after {issued} requests"
                await client.get_key(slave, KeyRequest())
                issued += 1
                await asyncio.sleep(0.1)
        served_after_s = time.monotonic() - started
        assert (master, slave) in view.prerelay.demand.kept_pairs()
        print(f"\nfirst pool-served key of a newly active pair after {served_after_s:.2f} s ({issued} requests)")
