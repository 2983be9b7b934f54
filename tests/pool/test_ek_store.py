"""The shared encapsulation keyring's Redis entries, on a single Redis and on a cluster: sealed at rest,
at most the two newest, expired ones gone, and a conditional publish that lets one of two rotations win."""

from __future__ import annotations

import os

import pytest

from relay.crypto.at_rest import StorageCipher
from relay.pool import RedisBackend, StoredKeyCorrupted
from relay.pool.ek_store import EncapsulationKeyStore, StoredEncapsulationKey
from relay.pool.keys import Keyspace

NOW = 1_800_000_000_000
LIFETIME = 600_000


def entry(not_after: int) -> StoredEncapsulationKey:
    return StoredEncapsulationKey(
        os.urandom(16), not_after, b"announcement " + os.urandom(32), bytearray(os.urandom(64))
    )


def opened(stored: StoredEncapsulationKey) -> tuple[bytes, int, bytes, bytes]:
    return stored.ek_id, stored.not_after_ms, stored.announcement, bytes(stored.seed)


@pytest.fixture
def store(backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace) -> EncapsulationKeyStore:
    return EncapsulationKeyStore(backend, cipher, keyspace.prefix)


async def test_entries_load_back_newest_first_and_only_the_two_newest_stay(
    store: EncapsulationKeyStore, backend: RedisBackend
) -> None:
    first, second, third = entry(NOW + LIFETIME), entry(NOW + LIFETIME + 1), entry(NOW + LIFETIME + 2)
    expected = [opened(first), opened(second), opened(third)]  # publish wipes nothing of the caller's
    for published in (first, second):
        assert await store.publish(published, now_ms=NOW)
    assert [opened(e) for e in await store.load(NOW)] == [expected[1], expected[0]]
    assert await store.publish(third, now_ms=NOW)
    assert [opened(e) for e in await store.load(NOW)] == [expected[2], expected[1]]
    assert await backend.command("EXISTS", store.entry_name(first.ek_id)) == 0


async def test_a_rotation_is_published_only_while_it_is_due(store: EncapsulationKeyStore) -> None:
    """Two replicas rotating at once both ask "unless a key lives until now + lifetime/2": one wins."""
    current = entry(NOW + LIFETIME)
    assert await store.publish(current, now_ms=NOW)
    later = NOW + LIFETIME // 2 + 1  # the current key is past half its lifetime
    mine, theirs = entry(later + LIFETIME), entry(later + LIFETIME)
    assert await store.publish(mine, now_ms=later, unless_held_until=later + LIFETIME // 2)
    assert not await store.publish(theirs, now_ms=later, unless_held_until=later + LIFETIME // 2)
    assert [e.ek_id for e in await store.load(later)] == [mine.ek_id, current.ek_id]


async def test_expired_entries_leave_redis(store: EncapsulationKeyStore, backend: RedisBackend) -> None:
    old = entry(NOW + 1_000)
    assert await store.publish(old, now_ms=NOW)
    assert await store.load(NOW + 2_000) == []
    assert await backend.command("EXISTS", store.entry_name(old.ek_id)) == 0
    assert await backend.command("EXISTS", store.index) == 0


async def test_the_seed_is_sealed_at_rest_and_opens_only_with_the_storage_key(
    store: EncapsulationKeyStore, backend: RedisBackend, keyspace: Keyspace
) -> None:
    stored = entry(NOW + LIFETIME)
    seed, announcement = bytes(stored.seed), stored.announcement
    await store.publish(stored, now_ms=NOW)
    raw = await backend.command("GET", store.entry_name(stored.ek_id))
    assert seed not in raw and seed.hex().encode() not in raw and announcement not in raw
    stranger = EncapsulationKeyStore(backend, StorageCipher(os.urandom(32)), keyspace.prefix)
    with pytest.raises(StoredKeyCorrupted, match="same storage key"):
        await stranger.load(NOW)
    assert [opened(e) for e in await store.load(NOW)] == [(stored.ek_id, NOW + LIFETIME, announcement, seed)]
