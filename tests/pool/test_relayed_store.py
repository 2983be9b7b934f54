"""Relayed keys: ready pools per SAE pair, keys waiting for slaves, all-or-nothing at-most-once delivery."""

from __future__ import annotations

import asyncio

import pytest

from relay.crypto.at_rest import StorageCipher
from relay.domain import Key
from relay.pool.connection import RedisBackend
from relay.pool.errors import KeysNotIssuedToSlave, RelayedKeysNotFound, StoredKeyCorrupted
from relay.pool.keys import Keyspace
from relay.pool.relayed_store import RelayedKeyStore, RelayedStoreSettings
from relay.pool.status import PoolStatus, pool_status
from relay.pool.watermarks import PoolState, Watermarks
from tests.support.pool_data import deliver_to_slave, make_keys
from tests.support.waiting import wait_until

A, B, C = "SAE-A", "SAE #B", "SAE-C"


@pytest.fixture
def store(backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace) -> RelayedKeyStore:
    return RelayedKeyStore(backend, cipher, keyspace, RelayedStoreSettings())


async def test_ready_keys_are_taken_in_whole_batches_or_not_at_all(store: RelayedKeyStore) -> None:
    keys = make_keys(5)
    assert await store.put_ready(A, B, keys) == [k.key_id for k in keys]
    first = await store.take_ready(A, B, 3)
    assert len(first) == 3
    assert await store.take_ready(A, B, 3) == []  # only 2 left: nothing handed out, both stay
    assert await store.ready_level(A, B) == 2
    rest = await store.take_ready(A, B, 2)
    assert {(k.key_id, k.key) for k in first + rest} == {(k.key_id, k.key) for k in keys}
    assert await store.take_ready(B, A, 1) == []  # the pair is ordered
    assert (store.metrics.ready_taken, store.metrics.ready_short) == (5, 2)


async def test_slave_gets_its_keys_exactly_once_in_request_order(store: RelayedKeyStore) -> None:
    keys = make_keys(3)
    await store.put_for_slave(A, B, keys)
    wanted = [keys[2].key_id, keys[0].key_id]
    got = await deliver_to_slave(store, B, A, wanted)
    assert [(k.key_id, k.key) for k in got] == [(keys[2].key_id, keys[2].key), (keys[0].key_id, keys[0].key)]
    with pytest.raises(RelayedKeysNotFound) as caught:
        await deliver_to_slave(store, B, A, [keys[0].key_id])
    assert caught.value.key_ids == (keys[0].key_id,)
    assert (await deliver_to_slave(store, B, A, [keys[1].key_id]))[0].key == keys[1].key


async def test_another_slave_is_refused_distinctly_and_takes_nothing(store: RelayedKeyStore) -> None:
    for_b, for_c = make_keys(1), make_keys(1)
    await store.put_for_slave(A, B, for_b)
    await store.put_for_slave(A, C, for_c)
    with pytest.raises(KeysNotIssuedToSlave) as caught:
        await deliver_to_slave(store, C, A, [for_c[0].key_id, for_b[0].key_id])
    assert caught.value.key_ids == (for_b[0].key_id,)
    assert (await deliver_to_slave(store, B, A, [for_b[0].key_id]))[0].key == for_b[0].key
    assert (await deliver_to_slave(store, C, A, [for_c[0].key_id]))[0].key == for_c[0].key
    assert (store.metrics.delivered, store.metrics.unauthorized) == (2, 1)


async def test_not_found_wins_over_unauthorized_and_nothing_is_delivered(store: RelayedKeyStore) -> None:
    mine, theirs, unknown = make_keys(1), make_keys(1), make_keys(1)
    await store.put_for_slave(A, B, mine)
    await store.put_for_slave(A, C, theirs)
    ids = [mine[0].key_id, theirs[0].key_id, unknown[0].key_id]
    with pytest.raises(RelayedKeysNotFound) as caught:
        await deliver_to_slave(store, B, A, ids)
    assert caught.value.key_ids == (unknown[0].key_id,)
    with pytest.raises(RelayedKeysNotFound):  # keys are stored per master: another master has none of them
        await deliver_to_slave(store, B, C, [mine[0].key_id])
    assert len(await deliver_to_slave(store, B, A, [mine[0].key_id])) == 1


async def test_a_retried_transfer_never_makes_a_delivered_key_available_again(store: RelayedKeyStore) -> None:
    keys = make_keys(1)
    assert await store.put_for_slave(A, B, keys) == [keys[0].key_id]
    assert await store.put_for_slave(A, B, keys) == []  # retry before delivery: already there
    await deliver_to_slave(store, B, A, [keys[0].key_id])
    assert await store.put_for_slave(A, B, keys) == []  # retry after delivery: tombstoned
    with pytest.raises(RelayedKeysNotFound):
        await deliver_to_slave(store, B, A, [keys[0].key_id])
    assert store.metrics.slave_refused == 2


async def test_duplicate_key_ids_in_one_request_are_refused(store: RelayedKeyStore) -> None:
    keys = make_keys(1)
    await store.put_for_slave(A, B, keys)
    with pytest.raises(ValueError, match="distinct"):
        await deliver_to_slave(store, B, A, [keys[0].key_id] * 2)


async def test_waiting_and_ready_keys_expire(backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace) -> None:
    settings = RelayedStoreSettings(ready_ttl_s=0.1, waiting_ttl_s=0.2, retired_ttl_s=0.4)
    store = RelayedKeyStore(backend, cipher, keyspace, settings)
    keys = make_keys(2)
    await store.put_for_slave(A, B, keys[:1])
    await store.put_ready(A, B, keys[1:])
    await asyncio.sleep(0.15)
    assert await store.take_ready(A, B, 1) == []  # the ready copy expires before the slave's copy
    assert len(await deliver_to_slave(store, B, A, [keys[0].key_id])) == 1
    await store.put_for_slave(A, C, keys[1:])
    await asyncio.sleep(0.25)
    with pytest.raises(RelayedKeysNotFound):
        await deliver_to_slave(store, C, A, [keys[1].key_id])


async def test_a_key_relabelled_for_another_slave_in_redis_does_not_open(
    backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace
) -> None:
    """The reservation that could not open it is never committed: the key runs out into a tombstone."""
    store = RelayedKeyStore(backend, cipher, keyspace, RelayedStoreSettings(reservation_ttl_s=0.2))
    keys = make_keys(1)
    await store.put_for_slave(A, B, keys)
    await backend.client.hset(keyspace.waiting_for_slaves(A).material(keys[0].key_id), "o", C)
    with pytest.raises(StoredKeyCorrupted):
        await deliver_to_slave(store, C, A, [keys[0].key_id])

    async def tombstoned() -> bool:
        try:
            await deliver_to_slave(store, B, A, [keys[0].key_id])
        except KeysNotIssuedToSlave:  # relabelled, and still held by the reservation that failed to open it
            return False
        except RelayedKeysNotFound:
            return True
        raise AssertionError("a relabelled key was delivered")

    await wait_until(tombstoned, timeout_s=10, interval_s=0.05, what="the unopenable key tombstoned")


async def test_ready_pool_status(store: RelayedKeyStore) -> None:
    await store.put_ready(A, B, make_keys(2))
    [status] = await pool_status([store.ready_gauge(A, B)])
    assert status == PoolStatus("ready:SAE-A->SAE #B", level=2, low=4, high=32, state=PoolState.LOW)


def test_settings_keep_ready_keys_shorter_lived_than_waiting_ones() -> None:
    with pytest.raises(ValueError):
        RelayedStoreSettings(ready_ttl_s=300, waiting_ttl_s=300)
    with pytest.raises(ValueError):
        RelayedStoreSettings(ready_ttl_s=10, waiting_ttl_s=300, retired_ttl_s=400)
    assert RelayedStoreSettings(ready_watermarks=Watermarks(1, 2)).ready_watermarks.high == 2


async def test_void_withdraws_only_undelivered_keys_of_that_slave(store: RelayedKeyStore) -> None:
    await store.put_for_slave("A", "B", [Key("k1", b"1" * 32), Key("k2", b"2" * 32)])
    await store.put_for_slave("A", "C", [Key("k3", b"3" * 32)])
    await deliver_to_slave(store, "B", "A", ["k1"])
    assert await store.void_for_slave("A", "B", ["k1", "k2", "k3"]) == ["k2"]
    with pytest.raises(RelayedKeysNotFound):
        await deliver_to_slave(store, "B", "A", ["k2"])
    assert [k.key for k in await deliver_to_slave(store, "C", "A", ["k3"])] == [b"3" * 32]


async def test_void_everything_between_a_pair(store: RelayedKeyStore) -> None:
    await store.put_for_slave("A", "B", [Key("k1", b"1" * 32), Key("k2", b"2" * 32)])
    await store.put_for_slave("A", "C", [Key("k3", b"3" * 32)])
    assert sorted(await store.void_for_slave("A", "B", [])) == ["k1", "k2"]
    assert await store.put_for_slave("A", "B", [Key("k1", b"1" * 32)]) == []  # tombstoned
    assert [k.key_id for k in await deliver_to_slave(store, "C", "A", ["k3"])] == ["k3"]


OVER_GW2, DIRECT = ("GW1", "GW2", "GW3"), ("GW1", "GW3")


async def test_a_void_withdraws_only_keys_relayed_along_its_path(store: RelayedKeyStore) -> None:
    await store.put_for_slave(A, B, [Key("k1", b"1" * 32)], path=OVER_GW2)
    await store.put_for_slave(A, B, [Key("k2", b"2" * 32)], path=DIRECT)
    assert await store.void_for_slave(A, B, [], path=("GW2", "GW3")) == []  # a path nothing came along
    assert await store.void_for_slave(A, B, ["k1", "k2"], path=DIRECT) == ["k2"]
    assert [k.key for k in await deliver_to_slave(store, B, A, ["k1"])] == [b"1" * 32]
    assert store.metrics.voided == 1


async def test_a_void_tombstones_named_keys_not_stored_yet(store: RelayedKeyStore) -> None:
    assert await store.void_for_slave(A, B, ["late"], path=OVER_GW2) == []
    assert await store.put_for_slave(A, B, [Key("late", b"1" * 32)], path=OVER_GW2) == []  # the late hop
    with pytest.raises(RelayedKeysNotFound):
        await deliver_to_slave(store, B, A, ["late"])


async def test_a_void_of_a_key_stored_along_another_path_neither_voids_nor_tombstones_it(
    store: RelayedKeyStore,
) -> None:
    await store.put_for_slave(A, B, [Key("k1", b"1" * 32)], path=DIRECT)
    assert await store.void_for_slave(A, B, ["k1"], path=OVER_GW2) == []
    assert [k.key_id for k in await deliver_to_slave(store, B, A, ["k1"])] == ["k1"]


async def test_a_key_given_another_path_in_redis_does_not_open(
    backend: RedisBackend, store: RelayedKeyStore, keyspace: Keyspace
) -> None:
    keys = make_keys(1)
    await store.put_for_slave(A, B, keys, path=OVER_GW2)
    await backend.client.hset(keyspace.waiting_for_slaves(A).material(keys[0].key_id), "p", '["GW2","GW3"]')
    with pytest.raises(StoredKeyCorrupted):
        await deliver_to_slave(store, B, A, [keys[0].key_id])


async def test_withdrawing_ready_keys_names_only_those_that_never_reach_the_master(store: RelayedKeyStore) -> None:
    first, second, never = make_keys(3)
    await store.put_ready(A, B, [first, second])
    [taken] = await store.take_ready(A, B, 1)
    live = second if taken.key_id == first.key_id else first
    withdrawn = await store.withdraw_ready(A, B, [taken.key_id, live.key_id, never.key_id])
    assert withdrawn == [live.key_id, never.key_id]  # the taken one may be with the master: not voidable
    assert await store.put_ready(A, B, [never]) == []  # a late put_ready cannot make it ready
    assert await store.ready_level(A, B) == 0
    await store.put_ready(A, B, make_keys(2))
    assert len(await store.withdraw_ready(A, B, [])) == 2 and await store.ready_level(A, B) == 0
