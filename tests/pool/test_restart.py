"""Redis going away and coming back: AOF keeps every unused key and every tombstone; outages are typed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from relay.crypto.at_rest import StorageCipher
from relay.pool.connection import RedisBackend, RedisConfig
from relay.pool.errors import KeyAlreadyUsed, PoolUnavailable, RelayedKeysNotFound
from relay.pool.keys import Keyspace
from relay.pool.qkd_pool import QkdPool, QkdPoolSettings, Role
from relay.pool.relayed_store import RelayedKeyStore, RelayedStoreSettings
from relay.pool.status import pool_status
from tests.support.pool_data import deliver_to_slave, make_keys
from tests.support.ports import free_port
from tests.support.redis_servers import RedisServer, redis_server


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path / "redis", appendonly=True) as server:
        yield server


@pytest.fixture
async def private_backend(aof_redis: RedisServer) -> AsyncIterator[RedisBackend]:
    async with RedisBackend.connect(RedisConfig(aof_redis.admin_url, connect_timeout_s=0.5)) as backend:
        yield backend


async def test_a_crash_with_aof_loses_no_key_and_resurrects_no_used_one(
    aof_redis: RedisServer, private_backend: RedisBackend, cipher: StorageCipher
) -> None:
    space = Keyspace("gw")
    pool = QkdPool(private_backend, cipher, space, "L-aof", Role.MASTER, QkdPoolSettings())
    relayed = RelayedKeyStore(private_backend, cipher, space, RelayedStoreSettings())
    keys, for_slave = make_keys(100), make_keys(2)
    await pool.put(keys)
    await relayed.put_for_slave("A", "B", for_slave)
    used = {(await pool.take(1))[0].key_id for _ in range(40)}
    for key in [k for k in keys if k.key_id not in used][:10]:
        used.add((await pool.take_named([key.key_id]))[0].key_id)
    await deliver_to_slave(relayed, "B", "A", [for_slave[0].key_id])

    aof_redis.kill()  # SIGKILL: only what appendfsync=always wrote survives
    aof_redis.start()

    assert await pool.level() == 50
    for key_id in list(used)[:5]:
        with pytest.raises(KeyAlreadyUsed):
            await pool.take_named([key_id])
    assert await pool.put([k for k in keys if k.key_id in used]) == []
    remaining = {(await pool.take(1))[0].key_id for _ in range(50)}
    assert remaining == {k.key_id for k in keys} - used
    with pytest.raises(RelayedKeysNotFound):
        await deliver_to_slave(relayed, "B", "A", [for_slave[0].key_id])
    assert (await deliver_to_slave(relayed, "B", "A", [for_slave[1].key_id]))[0].key == for_slave[1].key


async def test_unavailable_redis_is_a_clear_typed_error_and_service_recovers(
    aof_redis: RedisServer, private_backend: RedisBackend, cipher: StorageCipher
) -> None:
    pool = QkdPool(private_backend, cipher, Keyspace("gw"), "L-down", Role.MASTER, QkdPoolSettings())
    keys = make_keys(2)
    await pool.put(keys)
    aof_redis.stop()
    with pytest.raises(PoolUnavailable, match=f"unavailable \\(Redis at redis://127.0.0.1:{aof_redis.port}/0\\)"):
        await pool.take(1)
    with pytest.raises(PoolUnavailable):
        await pool_status([pool])
    assert private_backend.metrics.unavailable == 2
    aof_redis.start()
    assert (await pool.take(1))[0].key_id in {k.key_id for k in keys}
    assert await pool.level() == 1


async def test_unreachable_cluster_is_pool_unavailable(cipher: StorageCipher) -> None:
    config = RedisConfig(f"redis://127.0.0.1:{free_port()}/0", cluster=True, connect_timeout_s=0.5)
    async with RedisBackend.connect(config) as backend:
        pool = QkdPool(backend, cipher, Keyspace("gw"), "L-x", Role.MASTER, QkdPoolSettings())
        with pytest.raises(PoolUnavailable, match="Redis Cluster at"):
            await pool.level()
