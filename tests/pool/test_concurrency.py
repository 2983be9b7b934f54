"""At-most-once delivery under contention: many coroutines, and several gateway processes on one Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from asyncio.subprocess import PIPE
from collections import Counter
from pathlib import Path

from relay.crypto.at_rest import StorageCipher, load_or_create_storage_key
from relay.domain import Key
from relay.pool.connection import RedisBackend
from relay.pool.errors import KeysBeingDelivered, PoolEmpty, RelayedKeysNotFound
from relay.pool.keys import Keyspace
from relay.pool.qkd_pool import QkdPool, QkdPoolSettings, Role
from relay.pool.relayed_store import RelayedKeyStore, RelayedStoreSettings
from tests.support.pool_data import deliver_to_slave, make_keys

REPO = Path(__file__).resolve().parents[2]


async def _put_all(pool: QkdPool, keys: list[Key]) -> None:
    for start in range(0, len(keys), 500):
        await pool.put(keys[start : start + 500])


async def _take_or_none(pool: QkdPool) -> Key | None:
    try:
        return (await pool.take(1))[0]
    except PoolEmpty:
        return None


async def test_a_thousand_concurrent_takers_each_key_exactly_once(
    backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace
) -> None:
    """1,200 takers on 1,000 keys, over 1,200 connections at once (no client-side queueing)."""
    config = dataclasses.replace(backend.config, max_in_flight=1200)
    async with RedisBackend.connect(config) as wide:
        pool = QkdPool(wide, cipher, keyspace, "L-c", Role.MASTER, QkdPoolSettings())
        keys = make_keys(1000)
        await _put_all(pool, keys)
        results = await asyncio.gather(*(_take_or_none(pool) for _ in range(1200)))
        assert await pool.level() == 0
    taken = [key for key in results if key is not None]
    assert len(taken) == 1000 and results.count(None) == 200
    assert {(k.key_id, k.key) for k in taken} == {(k.key_id, k.key) for k in keys}


async def test_competing_slaves_requests_deliver_each_key_once(
    backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace
) -> None:
    store = RelayedKeyStore(backend, cipher, keyspace, RelayedStoreSettings())
    keys = make_keys(200)
    await store.put_for_slave("A", "B", keys)

    async def attempt(key_id: str) -> str | None:
        try:
            return (await deliver_to_slave(store, "B", "A", [key_id]))[0].key_id
        except (RelayedKeysNotFound, KeysBeingDelivered):  # delivered by another call, or being delivered
            return None

    results = await asyncio.gather(*(attempt(k.key_id) for k in keys for _ in range(5)))
    delivered = Counter(r for r in results if r is not None)
    assert set(delivered) == {k.key_id for k in keys} and set(delivered.values()) == {1}


async def test_two_gateway_processes_share_a_pool_disjointly_and_completely(
    backend: RedisBackend, keyspace: Keyspace, tmp_path: Path
) -> None:
    storage_key = tmp_path / "storage.key"
    shared_cipher = StorageCipher(load_or_create_storage_key(storage_key))  # both processes share it
    pool = QkdPool(backend, shared_cipher, keyspace, "L-shared", Role.MASTER, QkdPoolSettings())
    keys = make_keys(2000)
    await _put_all(pool, keys)

    command = [sys.executable, "-m", "tests.support.pool_taker", "--url", backend.config.url,
               "--prefix", keyspace.prefix, "--link", "L-shared", "--storage-key", str(storage_key)]  # fmt: skip
    if backend.config.cluster:
        command.append("--cluster")
    processes = [await asyncio.create_subprocess_exec(*command, cwd=REPO, stdin=PIPE, stdout=PIPE) for _ in range(2)]
    try:
        for process in processes:
            assert await process.stdout.readline() == b"ready\n"  # type: ignore[union-attr]
        communicating = asyncio.gather(*(p.communicate(b"go\n") for p in processes))
        outputs = [out.decode() for out, _ in await asyncio.wait_for(communicating, 60)]
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert [p.returncode for p in processes] == [0, 0]
    taken = [out.split()[:-1] for out in outputs]
    assert all(out.split()[-1] == "done" for out in outputs)
    assert all(len(ids) > 100 for ids in taken), "both processes should have taken a share"
    assert set(taken[0]).isdisjoint(taken[1])
    assert sorted(taken[0] + taken[1]) == sorted(k.key_id for k in keys)
