"""QKD pool lanes on a real Redis and a real Redis Cluster: atomic single use, tombstones, TTL, sealing."""

from __future__ import annotations

import asyncio

import pytest

from relay.crypto.at_rest import StorageCipher
from relay.pool.connection import RedisBackend
from relay.pool.errors import KeyAlreadyUsed, KeyNotFound, PoolEmpty, StoredKeyCorrupted
from relay.pool.keys import Keyspace
from relay.pool.qkd_pool import QkdPool, QkdPoolSettings, Role, link_pools
from relay.pool.store import Lifetimes
from tests.support.pool_data import make_keys


@pytest.fixture
def pools(backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace) -> dict[Role, QkdPool]:
    return link_pools(backend, cipher, keyspace, "L-1", QkdPoolSettings())


async def test_take_hands_out_each_key_once_oldest_first(pools: dict[Role, QkdPool]) -> None:
    pool = pools[Role.MASTER]
    first, second = make_keys(3), make_keys(2)
    assert await pool.put(first) == [k.key_id for k in first]
    await asyncio.sleep(0.005)  # a later put expires later
    await pool.put(second)
    assert await pool.level() == 5
    taken = [(await pool.take(1))[0] for _ in range(5)]
    assert {k.key_id for k in taken[:3]} == {k.key_id for k in first}
    assert {(k.key_id, k.key) for k in taken} == {(k.key_id, k.key) for k in first + second}
    with pytest.raises(PoolEmpty, match="qkd:L-1:master-sends holds fewer than 1 keys"):
        await pool.take(1)
    assert (pool.metrics.stored, pool.metrics.taken, pool.metrics.empty) == (5, 5, 1)


async def test_take_is_all_or_none(pools: dict[Role, QkdPool]) -> None:
    """A frame's one-time pads are taken whole: asking for more than the lane holds takes nothing."""
    pool = pools[Role.MASTER]
    await pool.put(make_keys(3))
    with pytest.raises(PoolEmpty, match="fewer than 4 keys"):
        await pool.take(4)
    assert await pool.level() == 3
    assert len({key.key_id for key in await pool.take(3)}) == 3
    assert await pool.level() == 0


async def test_take_named_returns_that_key_once(pools: dict[Role, QkdPool]) -> None:
    pool = pools[Role.SLAVE]
    keys = make_keys(3)
    await pool.put(keys)
    (got,) = await pool.take_named([keys[1].key_id])
    assert (got.key_id, got.key) == (keys[1].key_id, keys[1].key)
    with pytest.raises(KeyAlreadyUsed):
        await pool.take_named([keys[1].key_id])
    with pytest.raises(KeyNotFound):
        await pool.take_named([make_keys(1)[0].key_id])
    with pytest.raises(KeyNotFound):  # all or none: the known key stays when another is unknown
        await pool.take_named([keys[0].key_id, make_keys(1)[0].key_id])
    remaining = {(await pool.take(1))[0].key_id for _ in range(2)}
    assert remaining == {keys[0].key_id, keys[2].key_id}


async def test_a_used_key_id_is_never_stored_again(pools: dict[Role, QkdPool]) -> None:
    pool = pools[Role.MASTER]
    keys = make_keys(2)
    await pool.put(keys)
    (used,) = await pool.take(1)
    unused = next(k for k in keys if k.key_id != used.key_id)
    assert await pool.put([used, unused]) == []  # one tombstoned, one still present
    assert await pool.level() == 1
    with pytest.raises(KeyAlreadyUsed):
        await pool.take_named([used.key_id])


async def test_lanes_are_separate(pools: dict[Role, QkdPool]) -> None:
    key = make_keys(1)[0]
    await pools[Role.MASTER].put([key])
    with pytest.raises(KeyNotFound):
        await pools[Role.SLAVE].take_named([key.key_id])
    with pytest.raises(PoolEmpty):
        await pools[Role.SLAVE].take(1)
    assert (await pools[Role.MASTER].take_named([key.key_id]))[0].key == key.key


async def test_keys_of_the_wrong_size_are_refused(pools: dict[Role, QkdPool]) -> None:
    with pytest.raises(ValueError, match="256-bit"):
        await pools[Role.MASTER].put(make_keys(1, size_bytes=16))


async def test_discarded_keys_are_never_handed_out(pools: dict[Role, QkdPool]) -> None:
    pool = pools[Role.SLAVE]
    keys = make_keys(3)
    await pool.put(keys)
    await pool.discard([keys[0].key_id, keys[1].key_id])
    assert await pool.level() == 1 and pool.metrics.discarded == 2
    with pytest.raises(KeyAlreadyUsed):
        await pool.take_named([keys[0].key_id])


async def test_keys_expire_and_stay_tombstoned_for_the_tombstone_ttl(
    backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace
) -> None:
    settings = QkdPoolSettings(lifetimes=Lifetimes(ttl_s=0.2, retired_ttl_s=0.6))
    pool = QkdPool(backend, cipher, keyspace, "L-ttl", Role.MASTER, settings)
    keys = make_keys(2)
    await pool.put(keys)
    material = keyspace.qkd_pool("L-ttl", "master").material(keys[0].key_id)
    await asyncio.sleep(0.3)
    assert await backend.client.exists(material) == 0  # Redis itself dropped the expired material
    assert await pool.level() == 0
    with pytest.raises(PoolEmpty):
        await pool.take(1)
    with pytest.raises(KeyAlreadyUsed):  # expired keys are tombstoned like used ones
        await pool.take_named([keys[0].key_id])
    assert await pool.put(keys) == []
    await asyncio.sleep(0.7)  # tombstones are bounded: after retired_ttl_s the key_ID is forgotten
    assert len(await pool.put(keys)) == 2


async def test_redis_holds_only_sealed_material_under_non_secret_names(
    backend: RedisBackend, pools: dict[Role, QkdPool], keyspace: Keyspace
) -> None:
    keys = make_keys(5)
    await pools[Role.MASTER].put(keys)
    await pools[Role.MASTER].take(1)
    names = [name async for name in backend.client.scan_iter(match=f"{keyspace.prefix}:*")]
    assert names
    dump = b"".join(names)
    for name in names:
        if await backend.client.type(name) == b"hash":
            dump += b"".join(await backend.client.hvals(name))
        else:
            dump += b"".join(await backend.client.zrange(name, 0, -1))
    for key in keys:
        assert key.key not in dump and key.key.hex().encode() not in dump


async def test_tampered_material_is_destroyed_not_returned(
    backend: RedisBackend, pools: dict[Role, QkdPool], keyspace: Keyspace
) -> None:
    pool = pools[Role.MASTER]
    victim, donor = make_keys(2)
    await pool.put([victim, donor])
    names = keyspace.qkd_pool("L-1", "master")
    blob = await backend.client.hget(names.material(donor.key_id), "b")
    await backend.client.hset(names.material(victim.key_id), "b", blob)  # move a sealed blob to another key_ID
    with pytest.raises(StoredKeyCorrupted):
        await pool.take_named([victim.key_id])
    with pytest.raises(KeyAlreadyUsed):
        await pool.take_named([victim.key_id])
    assert (await pool.take(1))[0].key == donor.key
