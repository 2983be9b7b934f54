"""A slave's keys are reserved, then committed or released; a reservation left open ends as a tombstone.

This is what lets the 014 front end give keys back when the slave has gone before its answer was
written, without ever letting a key be delivered twice: every test runs on a real Redis (standalone and
cluster), and the expiry tests wait for Redis's own clock.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from relay.crypto.at_rest import StorageCipher
from relay.pool.connection import RedisBackend
from relay.pool.errors import KeysBeingDelivered, KeysNotIssuedToSlave, RelayedKeysNotFound
from relay.pool.keys import Keyspace
from relay.pool.relayed_store import RelayedKeyStore, RelayedStoreSettings
from tests.support.pool_data import deliver_to_slave, make_keys

MASTER, SLAVE, OTHER = "SAE-M", "SAE-S", "SAE-O"


@pytest.fixture
def store(backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace) -> RelayedKeyStore:
    return RelayedKeyStore(backend, cipher, keyspace, RelayedStoreSettings())


def short_reservations(backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace) -> RelayedKeyStore:
    return RelayedKeyStore(backend, cipher, keyspace, RelayedStoreSettings(reservation_ttl_s=0.2))


async def test_a_committed_reservation_is_delivered_once(store: RelayedKeyStore) -> None:
    keys = make_keys(3)
    await store.put_for_slave(MASTER, SLAVE, keys)
    reservation = await store.reserve_for_slave(SLAVE, MASTER, [keys[2].key_id, keys[0].key_id])
    assert [(k.key_id, k.key) for k in reservation.keys] == [(k.key_id, k.key) for k in (keys[2], keys[0])]
    await reservation.commit()
    with pytest.raises(RelayedKeysNotFound) as caught:
        await store.reserve_for_slave(SLAVE, MASTER, [keys[0].key_id])
    assert caught.value.key_ids == (keys[0].key_id,)
    assert await store.put_for_slave(MASTER, SLAVE, keys[:1]) == []  # tombstoned: a retried hop cannot revive it
    assert store.metrics.delivered == 2


async def test_a_released_reservation_is_deliverable_again(store: RelayedKeyStore) -> None:
    keys = make_keys(2)
    await store.put_for_slave(MASTER, SLAVE, keys)
    ids = [k.key_id for k in keys]
    await (await store.reserve_for_slave(SLAVE, MASTER, ids)).release()
    again = await store.reserve_for_slave(SLAVE, MASTER, ids)
    assert [(k.key_id, k.key) for k in again.keys] == [(k.key_id, k.key) for k in keys]
    await again.commit()
    assert (store.metrics.released, store.metrics.delivered, store.metrics.reservations_expired) == (2, 2, 0)


async def test_a_reserved_key_is_neither_handed_out_nor_voided_meanwhile(store: RelayedKeyStore) -> None:
    keys = make_keys(2)
    await store.put_for_slave(MASTER, SLAVE, keys)
    reservation = await store.reserve_for_slave(SLAVE, MASTER, [keys[0].key_id])
    with pytest.raises(KeysBeingDelivered) as caught:
        await store.reserve_for_slave(SLAVE, MASTER, [keys[1].key_id, keys[0].key_id])
    assert caught.value.key_ids == (keys[0].key_id,)
    with pytest.raises(KeysBeingDelivered):
        await deliver_to_slave(store, SLAVE, MASTER, [keys[0].key_id])
    assert await store.void_for_slave(MASTER, SLAVE, []) == [keys[1].key_id]  # the reserved key may be on the wire
    await reservation.release()
    assert [k.key for k in await deliver_to_slave(store, SLAVE, MASTER, [keys[0].key_id])] == [keys[0].key]
    assert store.metrics.in_delivery == 2


async def test_refusals_keep_the_014_order_and_reserve_nothing(store: RelayedKeyStore) -> None:
    mine, theirs, unknown = make_keys(1), make_keys(1), make_keys(1)
    await store.put_for_slave(MASTER, SLAVE, mine)
    await store.put_for_slave(MASTER, OTHER, theirs)
    held = await store.reserve_for_slave(OTHER, MASTER, [theirs[0].key_id])
    with pytest.raises(RelayedKeysNotFound):
        await store.reserve_for_slave(SLAVE, MASTER, [mine[0].key_id, unknown[0].key_id])
    with pytest.raises(KeysNotIssuedToSlave):  # another slave's key, even reserved, is 401 for this one
        await store.reserve_for_slave(SLAVE, MASTER, [mine[0].key_id, theirs[0].key_id])
    await held.commit()
    assert len((await store.reserve_for_slave(SLAVE, MASTER, [mine[0].key_id])).keys) == 1


async def test_an_expired_reservation_becomes_a_tombstone_never_a_key_again(
    backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace
) -> None:
    """The process holding the reservation died: nothing commits or releases it."""
    store = short_reservations(backend, cipher, keyspace)
    keys = make_keys(2)
    await store.put_for_slave(MASTER, SLAVE, keys)
    await store.reserve_for_slave(SLAVE, MASTER, [keys[0].key_id])  # abandoned
    with pytest.raises(KeysBeingDelivered):
        await store.reserve_for_slave(SLAVE, MASTER, [keys[0].key_id])
    await asyncio.sleep(0.3)
    with pytest.raises(RelayedKeysNotFound) as caught:
        await store.reserve_for_slave(SLAVE, MASTER, [keys[0].key_id])
    assert caught.value.key_ids == (keys[0].key_id,)
    assert await store.put_for_slave(MASTER, SLAVE, keys[:1]) == []  # its tombstone refuses it back
    assert len((await store.reserve_for_slave(SLAVE, MASTER, [keys[1].key_id])).keys) == 1  # others unaffected


async def test_a_release_after_expiry_gives_nothing_back(
    backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace
) -> None:
    """A process frozen past the reservation's deadline wakes up and releases: the tombstone stands."""
    store = short_reservations(backend, cipher, keyspace)
    keys = make_keys(1)
    await store.put_for_slave(MASTER, SLAVE, keys)
    late = await store.reserve_for_slave(SLAVE, MASTER, [keys[0].key_id])
    await asyncio.sleep(0.3)
    await late.release()
    with pytest.raises(RelayedKeysNotFound):
        await deliver_to_slave(store, SLAVE, MASTER, [keys[0].key_id])
    assert (store.metrics.released, store.metrics.reservations_expired) == (0, 1)


async def test_a_release_restores_the_keys_own_expiry(
    backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace
) -> None:
    """A released key lives until its original deadline: no longer (reservation TTL) and no shorter."""
    settings = RelayedStoreSettings(ready_ttl_s=0.1, waiting_ttl_s=0.6, retired_ttl_s=2.0, reservation_ttl_s=0.2)
    store = RelayedKeyStore(backend, cipher, keyspace, settings)
    keys = make_keys(1)
    await store.put_for_slave(MASTER, SLAVE, keys)
    await (await store.reserve_for_slave(SLAVE, MASTER, [keys[0].key_id])).release()
    await asyncio.sleep(0.3)  # past the reservation's deadline, before the key's own
    held = await store.reserve_for_slave(SLAVE, MASTER, [keys[0].key_id])
    await held.release()
    await asyncio.sleep(0.4)  # past the key's own deadline
    with pytest.raises(RelayedKeysNotFound):
        await deliver_to_slave(store, SLAVE, MASTER, [keys[0].key_id])


async def test_competing_reservations_hand_each_key_to_one_caller_at_a_time(store: RelayedKeyStore) -> None:
    """Five callers per key; each winner releases once, then commits: every key is delivered exactly once."""
    keys = make_keys(100)
    await store.put_for_slave(MASTER, SLAVE, keys)
    released: set[str] = set()

    async def attempt(key_id: str) -> str | None:
        for _ in range(50):
            try:
                reservation = await store.reserve_for_slave(SLAVE, MASTER, [key_id])
            except KeysBeingDelivered:
                await asyncio.sleep(0.01)
                continue
            except RelayedKeysNotFound:
                return None
            if key_id not in released:
                released.add(key_id)
                await reservation.release()
                continue
            await reservation.commit()
            return key_id
        raise AssertionError(f"{key_id} stayed reserved")

    results = await asyncio.gather(*(attempt(k.key_id) for k in keys for _ in range(5)))
    delivered = Counter(r for r in results if r is not None)
    assert set(delivered) == {k.key_id for k in keys} and set(delivered.values()) == {1}


def test_a_reservation_lasts_a_positive_time() -> None:
    with pytest.raises(ValueError, match="reservation_ttl_s"):
        RelayedStoreSettings(reservation_ttl_s=0)
