"""Key_IDs we mint (UUIDv7) are time-bound in the relayed stores: refused once their window has closed,
tombstoned only until it does; foreign key_IDs keep their tombstone for ``retired_ttl_s`` (real Redis)."""

from __future__ import annotations

import os
import uuid

import pytest

from relay.crypto.at_rest import StorageCipher
from relay.domain import Key, check_key_id, new_key_id
from relay.pool.connection import RedisBackend
from relay.pool.errors import RelayedKeysNotFound
from relay.pool.keys import Keyspace
from relay.pool.qkd_pool import QkdPool, QkdPoolSettings, Role
from relay.pool.relayed_store import RelayedKeyStore, RelayedStoreSettings
from relay.pool.store import Lifetimes
from tests.support.pool_data import deliver_to_slave
from tests.support.waiting import wait_until

A, B = "SAE-A", "SAE-B"
# A window of 0.8 s: the edge test waits for it to close once, and nothing else sleeps.
SHORT = RelayedStoreSettings(ready_ttl_s=0.3, waiting_ttl_s=0.6, retired_ttl_s=1200.0, clock_skew_s=0.2)
LONG = RelayedStoreSettings(waiting_ttl_s=300.0, retired_ttl_s=86_400.0, clock_skew_s=30.0)


def stamp_ms(key_id: str) -> int:
    """The creation time a UUIDv7 carries (its first 48 bits)."""
    return uuid.UUID(key_id).int >> 80


def our_key(now_ms: int | None = None) -> Key:
    return Key(new_key_id(now_ms), os.urandom(32))


async def redis_now_ms(backend: RedisBackend) -> int:
    seconds, micros = await backend.command("TIME")
    return int(seconds) * 1000 + int(micros) // 1000


async def tombstone_until(backend: RedisBackend, keyspace: Keyspace, key_id: str) -> float | None:
    return await backend.command("ZSCORE", keyspace.waiting_for_slaves(A).retired, key_id)


def test_new_key_ids_are_uuidv7_carrying_their_creation_time() -> None:
    key_id = new_key_id(1_796_000_000_123)
    parsed = uuid.UUID(key_id)
    assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, key_id)
    assert stamp_ms(key_id) == 1_796_000_000_123
    assert check_key_id(key_id) == key_id
    assert len({new_key_id(5) for _ in range(1000)}) == 1000  # same millisecond, still distinct
    with pytest.raises(ValueError, match="48 bits"):
        new_key_id(1 << 48)


async def test_a_key_id_just_past_its_window_is_refused_even_after_its_tombstone_expired(
    backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace
) -> None:
    store = RelayedKeyStore(backend, cipher, keyspace, SHORT)
    key = our_key()
    assert await store.put_for_slave(A, B, [key]) == [key.key_id]
    assert len(await deliver_to_slave(store, B, A, [key.key_id])) == 1
    window_ms = round(SHORT.id_window_s * 1000)
    assert await tombstone_until(backend, keyspace, key.key_id) == stamp_ms(key.key_id) + window_ms
    assert await store.put_for_slave(A, B, [key]) == []  # the tombstone refuses it

    async def tombstone_gone() -> bool:
        await store.void_for_slave(A, B, [])  # any store call prunes expired tombstones
        return await tombstone_until(backend, keyspace, key.key_id) is None

    await wait_until(tombstone_gone, timeout_s=10, interval_s=0.05, what="the tombstone expired with the window")
    assert await store.put_for_slave(A, B, [key]) == []  # now the window refuses it
    assert await store.put_ready(A, B, [key]) == []
    assert await tombstone_until(backend, keyspace, key.key_id) is None  # and no tombstone is needed again
    with pytest.raises(RelayedKeysNotFound):
        await deliver_to_slave(store, B, A, [key.key_id])
    assert await backend.command("EXISTS", keyspace.waiting_for_slaves(A).material(key.key_id)) == 0


async def test_the_window_admits_key_ids_inside_it_and_refuses_those_outside(
    backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace
) -> None:
    """Stamps relative to Redis time, far from the edges (30 s skew margin, 330 s window): no timing."""
    store = RelayedKeyStore(backend, cipher, keyspace, LONG)
    now = await redis_now_ms(backend)
    inside = [our_key(now - 300_000), our_key(now + 20_000)]  # old but in the window; ahead within the skew
    outside = [our_key(now - 331_000), our_key(now + 40_000)]  # window closed; ahead beyond the skew
    assert await store.put_for_slave(A, B, inside + outside) == [k.key_id for k in inside]
    assert await store.put_ready(A, B, outside) == []
    await store.void_for_slave(A, B, [k.key_id for k in outside])  # named but out of window: no tombstone
    for key in outside:
        assert await tombstone_until(backend, keyspace, key.key_id) is None


async def test_tombstones_of_our_key_ids_end_with_the_window_and_foreign_ones_last_retired_ttl(
    backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace
) -> None:
    store = RelayedKeyStore(backend, cipher, keyspace, LONG)
    ours, foreign_uuid, foreign_token = our_key(), Key(str(uuid.uuid4()), b"f" * 32), Key("vendor-17", b"v" * 32)
    before = await redis_now_ms(backend)
    await store.put_for_slave(A, B, [ours, foreign_uuid, foreign_token])
    await deliver_to_slave(store, B, A, [ours.key_id, foreign_uuid.key_id, foreign_token.key_id])
    after = await redis_now_ms(backend)
    assert await tombstone_until(backend, keyspace, ours.key_id) == stamp_ms(ours.key_id) + 330_000
    for foreign in (foreign_uuid, foreign_token):
        until = await tombstone_until(backend, keyspace, foreign.key_id)
        assert until is not None and before + 86_400_000 <= until <= after + 86_400_000
    never_stored = our_key()
    await store.void_for_slave(A, B, [never_stored.key_id])  # a void ahead of a late hop
    assert await tombstone_until(backend, keyspace, never_stored.key_id) == stamp_ms(never_stored.key_id) + 330_000
    assert await store.put_for_slave(A, B, [never_stored]) == []


async def test_qkd_pools_treat_every_key_id_as_foreign(
    backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace
) -> None:
    """Vendor key_IDs may be UUIDv7 minted long ago by the vendor KMS: a pool without window stores them."""
    pool = QkdPool(backend, cipher, keyspace, "L1", Role.MASTER, QkdPoolSettings())
    old = our_key(await redis_now_ms(backend) - 7 * 86_400_000)
    assert await pool.put([old]) == [old.key_id]
    assert (await pool.take(1))[0].key_id == old.key_id
    until = await backend.command("ZSCORE", keyspace.qkd_pool("L1", Role.MASTER).retired, old.key_id)
    assert until is not None and until > await redis_now_ms(backend) + 86_000_000
    assert await pool.put([old]) == []


def test_lifetimes_refuse_negative_windows() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        Lifetimes(1.0, 2.0, id_window_s=-1.0)
    with pytest.raises(ValueError, match="must not be negative"):
        RelayedStoreSettings(clock_skew_s=-1.0)
    assert LONG.waiting.script_arguments == [86_400_000, 330_000, 30_000]
    assert Lifetimes(1.0, 2.0).script_arguments == [2000, 0, 0]
