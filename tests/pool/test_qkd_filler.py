"""Filling both gateways' QKD pools from a real vendor KMS over mutual TLS, end to end.

The master gateway's pools live on the standalone Redis and the slave gateway's on the cluster (two Redis
deployments, two key spaces); the master's announcer calls the slave's real AnnouncementReceiver directly,
where production uses gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import pytest

from relay.crypto.at_rest import StorageCipher
from relay.gateway.qkd_announce import AnnouncementReceiver
from relay.gateway.qkd_filler import FillerSettings, QkdFiller
from relay.kms_sim.config import SimSettings
from relay.pool.connection import RedisBackend
from relay.pool.errors import KeyAlreadyUsed, PoolEmpty
from relay.pool.keys import Keyspace
from relay.pool.qkd_pool import QkdPool, QkdPoolSettings, Role, link_pools
from relay.pool.watermarks import Watermarks
from tests.support.pool_data import LINK, MASTER_SAE, SLAVE_SAE, Vendor, make_keys

SETTINGS = QkdPoolSettings(watermarks=Watermarks(low=5, high=20))


class DirectAnnouncer:
    """The in-process transport: hands the announcement to the peer's receiver, optionally meddling."""

    def __init__(self, receiver: AnnouncementReceiver) -> None:
        self.receiver = receiver
        self.calls = 0

    async def announce(self, link_id: str, sender: Role, key_ids: Sequence[str]) -> Sequence[str]:
        assert link_id == self.receiver.link_id
        self.calls += 1
        return await self.receiver.accept_announced(sender, key_ids)


class Gateways:
    def __init__(self, vendor: Vendor, master: dict[Role, QkdPool], slave: dict[Role, QkdPool]) -> None:
        self.master, self.slave = master, slave
        self.receiver = AnnouncementReceiver(LINK, MASTER_SAE, vendor.slave_kme, slave)
        self.announcer = DirectAnnouncer(self.receiver)
        self.filler = QkdFiller(LINK, SLAVE_SAE, vendor.master_kme, master, self.announcer, FillerSettings())


@pytest.fixture
def gateways(
    vendor: Vendor, standalone_backend: RedisBackend, cluster_backend: RedisBackend, keyspace: Keyspace
) -> Gateways:
    master = link_pools(standalone_backend, StorageCipher(b"m" * 32), keyspace, LINK, SETTINGS)
    slave = link_pools(cluster_backend, StorageCipher(b"s" * 32), keyspace, LINK, SETTINGS)
    return Gateways(vendor, master, slave)


async def _ids(pool: QkdPool) -> set[str]:
    """Drain a lane, returning its key_IDs."""
    ids = set()
    while True:
        try:
            ids.add((await pool.take(1))[0].key_id)
        except PoolEmpty:
            return ids


async def test_both_gateways_hold_the_same_keys_in_both_lanes(gateways: Gateways) -> None:
    assert await gateways.filler.fill_once() == 40
    for role in Role:
        assert await gateways.master[role].level() == 20
        assert await gateways.slave[role].level() == 20
    # master sends, slave receives the same key_ID and the same bytes; and the other way round
    (sent,) = await gateways.master[Role.MASTER].take(1)
    (received,) = await gateways.slave[Role.MASTER].take_named([sent.key_id])
    assert received.key == sent.key
    (sent,) = await gateways.slave[Role.SLAVE].take(1)
    assert (await gateways.master[Role.SLAVE].take_named([sent.key_id]))[0].key == sent.key
    with pytest.raises(KeyAlreadyUsed):
        await gateways.master[Role.SLAVE].take_named([sent.key_id])
    assert await _ids(gateways.master[Role.MASTER]) == await _ids(gateways.slave[Role.MASTER])
    metrics = gateways.filler.metrics
    assert (metrics.batches, metrics.keys_fetched, metrics.keys_stored, metrics.keys_lost) == (2, 40, 40, 0)


async def test_a_full_pool_is_not_refilled_and_a_drained_one_is_topped_up(gateways: Gateways) -> None:
    await gateways.filler.fill_once()
    assert await gateways.filler.fill_once() == 0
    for _ in range(7):
        await gateways.master[Role.MASTER].take(1)
    assert await gateways.filler.fill_once() == 7
    assert await gateways.master[Role.MASTER].level() == 20
    assert await gateways.slave[Role.MASTER].level() == 27  # the 7 the slave never received a hop for


@pytest.mark.parametrize("vendor_settings", [SimSettings(initial_key_count=20, max_key_count=1000)])
async def test_scarce_vendor_key_is_shared_evenly_and_never_overdrawn(gateways: Gateways) -> None:
    await gateways.master[Role.MASTER].put(make_keys(8))  # the master's lane is ahead by 8
    assert await gateways.filler.fill_once() == 20  # all the vendor holds: 8 to catch up, then 6 each
    assert [await gateways.master[role].level() for role in Role] == [14, 14]
    assert await gateways.filler.fill_once() == 0 and gateways.filler.metrics.kms_errors == 0


async def test_keys_the_peer_turns_down_are_not_used_on_either_side(gateways: Gateways) -> None:
    original = gateways.receiver.accept_announced

    async def accept_half(sender: Role, key_ids: Sequence[str]) -> list[str]:
        return await original(sender, key_ids[: len(key_ids) // 2])

    gateways.receiver.accept_announced = accept_half  # type: ignore[method-assign]
    assert await gateways.filler.fill_once() == 20
    for role in Role:
        assert await gateways.master[role].level() == 10
        assert await _ids(gateways.master[role]) == await _ids(gateways.slave[role])
    assert gateways.filler.metrics.keys_lost == 20


async def test_announcing_after_the_vendor_timeout_stores_nothing_on_the_master_lane(
    gateways: Gateways, vendor: Vendor
) -> None:
    original = gateways.receiver.accept_announced

    async def late(sender: Role, key_ids: Sequence[str]) -> list[str]:
        vendor.clock.advance(11)  # the vendor's availability timeout is 10 s
        return await original(sender, key_ids)

    gateways.receiver.accept_announced = late  # type: ignore[method-assign]
    assert await gateways.filler.fill_once() == 0
    for role in Role:
        assert await gateways.master[role].level() == 0
        assert await gateways.slave[role].level() == 0
    assert gateways.filler.metrics.keys_lost == 40


async def test_a_failing_transport_keeps_only_receiver_side_copies(gateways: Gateways) -> None:
    async def broken(link_id: str, sender: Role, key_ids: Sequence[str]) -> Sequence[str]:
        raise ConnectionError("peer gateway unreachable")

    gateways.announcer.announce = broken  # type: ignore[method-assign]
    assert await gateways.filler.fill_once() == 20
    # the master receives on the slave's lane: those copies stay (they can only go unused);
    # the master never sends with a key the slave may lack
    assert await gateways.master[Role.SLAVE].level() == 20
    assert await gateways.master[Role.MASTER].level() == 0
    assert gateways.filler.metrics.announce_errors == 2


async def test_a_halted_link_delivers_nothing_and_the_filler_carries_on(gateways: Gateways, vendor: Vendor) -> None:
    vendor.running.kms.set_qber(LINK, 0.3)
    assert await gateways.filler.fill_once() == 0
    vendor.running.kms.set_qber(LINK, 0.02)
    assert await gateways.filler.fill_once() == 40


async def test_a_replayed_announcement_stores_nothing(gateways: Gateways) -> None:
    await gateways.filler.fill_once()
    ids = list(await _ids(gateways.slave[Role.MASTER]))[:3]
    assert await gateways.receiver.accept_announced(Role.MASTER, ids) == []


async def _run_filler(gateways: Gateways, vendor: Vendor) -> asyncio.Task[None]:
    filler = QkdFiller(
        LINK, SLAVE_SAE, vendor.master_kme, gateways.master, gateways.announcer, FillerSettings(interval_s=0.01)
    )
    return asyncio.create_task(filler.run())


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _wait_for_level(pool: QkdPool, level: int) -> None:
    for _ in range(300):
        if await pool.level() == level:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{pool.name} stayed at {await pool.level()}, expected {level}")


async def test_the_filler_runs_in_the_background(gateways: Gateways, vendor: Vendor) -> None:
    task = await _run_filler(gateways, vendor)
    try:
        await _wait_for_level(gateways.slave[Role.SLAVE], 20)
        await gateways.master[Role.MASTER].take(1)
        await _wait_for_level(gateways.master[Role.MASTER], 20)
    finally:
        await _stop(task)


@pytest.mark.slow
@pytest.mark.parametrize("vendor_settings", [SimSettings(initial_key_count=40, max_key_count=1000)])
async def test_soak_hops_in_both_directions_while_filling(gateways: Gateways, vendor: Vendor) -> None:
    """Senders on both sides take keys as fast as the link distils them; every hop's receiver finds its key."""
    hops = {Role.MASTER: 0, Role.SLAVE: 0}

    async def hop_loop(sender: Role, stop: asyncio.Event) -> None:
        sending = gateways.master if sender is Role.MASTER else gateways.slave
        receiving = gateways.slave if sender is Role.MASTER else gateways.master
        while not stop.is_set():
            try:
                (key,) = await sending[sender].take(1)
            except PoolEmpty:
                await asyncio.sleep(0.005)
                continue
            assert (await receiving[sender].take_named([key.key_id]))[0].key == key.key
            hops[sender] += 1

    stop = asyncio.Event()
    filler = await _run_filler(gateways, vendor)
    hoppers = [asyncio.create_task(hop_loop(role, stop)) for role in Role for _ in range(4)]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while loop.time() < deadline:
        vendor.clock.advance(0.1)  # 2560 bit/s: one 256-bit key per 0.1 s of link time
        await asyncio.sleep(0.005)
    stop.set()
    await asyncio.gather(*hoppers)
    await _stop(filler)
    assert min(hops.values()) > 100
    assert gateways.filler.metrics.keys_lost == 0


async def test_no_vendor_key_is_fetched_while_the_peer_cannot_take_its_copies(
    gateways: Gateways, vendor: Vendor
) -> None:
    before = await vendor.master_kme.get_status(SLAVE_SAE)
    filler = QkdFiller(
        LINK,
        SLAVE_SAE,
        vendor.master_kme,
        gateways.master,
        gateways.announcer,
        FillerSettings(),
        peer_reachable=lambda: False,
    )
    assert await filler.fill_once() == 0
    assert filler.metrics.rounds_peer_unreachable == 1 and filler.metrics.keys_fetched == 0
    assert (await vendor.master_kme.get_status(SLAVE_SAE)).stored_key_count == before.stored_key_count
    assert gateways.announcer.calls == 0
