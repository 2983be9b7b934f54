"""Writes confirmed by a Redis replica (``WAIT``) on real servers: a hung replica, a killed Cluster master.

With ``wait_replicas`` a take returns only once a replica holds it, so when the master dies and its
replica is promoted, nothing a caller was given comes back; while no replica confirms, callers get
:class:`PoolUnavailable` (the gateway's 503), never a hang or another error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from relay.crypto.at_rest import StorageCipher
from relay.domain import gateway_key_prefix
from relay.pki.layout import KeyDirectory
from relay.pki.redis_access import read_credentials
from relay.pool.connection import RedisBackend, RedisConfig
from relay.pool.errors import PoolEmpty, PoolUnavailable, WriteNotConfirmed
from relay.pool.keys import Keyspace, StoreKeys
from relay.pool.qkd_pool import QkdPool, QkdPoolSettings, Role
from relay.pool.store import MAX_BATCH
from tests.support.pool_data import make_keys
from tests.support.redis_servers import RedisServer, redis_cluster, redis_replicated, redis_server
from tests.support.waiting import wait_until

LINK = "L-1"
GATEWAY = "GW1"
TAKES_BEFORE_KILL = TAKES_AFTER_PROMOTION = 40
TAKER_PAUSE_S = 0.005  # between one taker's calls: a steady load that leaves keys for after the failover
HANG_GUARD_S = 10.0  # far beyond any WAIT timeout here: reaching it means a call hung


def _lane(backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace) -> QkdPool:
    return QkdPool(backend, cipher, keyspace, LINK, Role.MASTER, QkdPoolSettings())


def _names(keyspace: Keyspace) -> StoreKeys:
    return keyspace.qkd_pool(LINK, Role.MASTER)


def _where(server: RedisServer, names: StoreKeys, key_ids: Sequence[str]) -> dict[str, tuple[bool, bool]]:
    """key_ID -> (still in the lane's index, tombstoned), as ``server`` holds them."""
    with server.client() as client, client.pipeline(transaction=False) as pipeline:
        for key_id in key_ids:
            pipeline.zscore(names.index, key_id)
            pipeline.zscore(names.retired, key_id)
        scores = pipeline.execute()
    return {key_id: (scores[2 * i] is not None, scores[2 * i + 1] is not None) for i, key_id in enumerate(key_ids)}


@pytest.mark.parametrize(
    "options",
    [
        {"wait_replicas": -1},
        {"wait_replicas": 1, "wait_timeout_ms": 0},
        {"wait_replicas": 1, "wait_timeout_ms": 2000, "socket_timeout_s": 2.0},
    ],
)
def test_invalid_wait_settings_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="wait_"):
        RedisConfig(**options)


def test_the_wait_timeout_is_not_checked_when_nothing_waits() -> None:
    """A short socket timeout (tests, the lease runner's) needs no WAIT timeout below it when WAIT is off."""
    assert RedisConfig(socket_timeout_s=0.5).wait_replicas == 0


async def test_a_hung_replica_turns_writes_into_unavailable_until_it_resumes(
    tmp_path: Path, topology_keys: KeyDirectory, cipher: StorageCipher
) -> None:
    """As a gateway's own Redis user (its ACL grants WAIT): writes wait for the replica, reads do not."""
    keyspace = Keyspace(gateway_key_prefix(GATEWAY))
    password = read_credentials(topology_keys, GATEWAY).password
    with redis_replicated(tmp_path, keys=topology_keys, gateways=(GATEWAY,)) as (master, replica):
        config = RedisConfig(master.url, username=GATEWAY, password=password, wait_replicas=1, wait_timeout_ms=300)
        async with RedisBackend.connect(config) as backend:
            lane = _lane(backend, cipher, keyspace)
            keys = make_keys(4)
            assert await lane.put(keys) == [key.key_id for key in keys]
            (first,) = await lane.take(1)
            assert _where(replica, _names(keyspace), [first.key_id]) == {first.key_id: (False, True)}
            marker = f"{keyspace.prefix}:marker"
            await backend.command("SET", marker, "1", "PX", 60_000)

            replica.pause()
            try:
                async with asyncio.timeout(HANG_GUARD_S):
                    with pytest.raises(WriteNotConfirmed, match="write not confirmed by 1 Redis replica within 300 ms"):
                        await lane.take(1)
                    with pytest.raises(WriteNotConfirmed, match=r"\(0 did; Redis at redis://127\.0\.0\.1:\d+/0\)"):
                        await backend.command("SET", marker, "2", "PX", 60_000)
                    assert await backend.command("GET", marker) == b"2"  # a read waits for nobody
            finally:
                replica.resume()
            assert (backend.metrics.unconfirmed, backend.metrics.unavailable) == (2, 0)

            (after,) = await lane.take(1)  # the replica catches up within the WAIT timeout
            assert _where(replica, _names(keyspace), [after.key_id]) == {after.key_id: (False, True)}
            assert await lane.level() == 1  # the unconfirmed take burnt its key: never handed out
            assert backend.metrics.unconfirmed == 2


async def test_without_wait_replicas_no_wait_is_sent(tmp_path: Path, cipher: StorageCipher, keyspace: Keyspace) -> None:
    """0 (the default) keeps a write one command; 1 on a Redis without replicas can never be confirmed."""
    with redis_server(tmp_path / "redis") as server:
        async with RedisBackend.connect(RedisConfig(server.admin_url)) as backend:
            lane = _lane(backend, cipher, keyspace)
            await lane.put(make_keys(3))
            await lane.take(1)
        stats = server.info("commandstats")
        assert "cmdstat_evalsha" in stats
        assert "cmdstat_wait" not in stats

        loads = stats["cmdstat_script|load"]["calls"]
        with server.client() as client:
            client.script_flush()  # as on a replica promoted since the scripts were loaded
        config = RedisConfig(server.admin_url, wait_replicas=1, wait_timeout_ms=50)
        async with RedisBackend.connect(config) as backend:
            with pytest.raises(WriteNotConfirmed, match=r"within 50 ms \(0 did"):
                await _lane(backend, cipher, keyspace).take(1)
        stats = server.info("commandstats")
        # WAIT twice: once behind the EVALSHA that met NOSCRIPT, once behind the one that ran after SCRIPT LOAD
        assert (stats["cmdstat_wait"]["calls"], stats["cmdstat_script|load"]["calls"]) == (2, loads + 1)


async def test_killed_cluster_master_loses_no_acknowledged_take(
    tmp_path: Path, cipher: StorageCipher, keyspace: Keyspace
) -> None:
    """SIGKILL of the master holding a lane while takers run, its replica lagging (SIGSTOP until the kill):
    the takes it did not get were refused, and during the failover takers get PoolUnavailable only; once
    the replica is promoted and has a replica again (the killed node, restarted) takes succeed again. No
    key_ID is handed out twice, every key the takers were given is gone (tombstoned) on the promoted
    replica, every other key is still there or burnt by a take that was refused."""
    with redis_cluster(tmp_path, replicas_per_master=1) as cluster:
        config = RedisConfig(cluster.admin_url, cluster=True, wait_replicas=1, wait_timeout_ms=300)
        async with RedisBackend.connect(config) as backend:
            lane = _lane(backend, cipher, keyspace)
            keys = make_keys(2 * MAX_BATCH)
            for batch in (keys[:MAX_BATCH], keys[MAX_BATCH:]):
                assert len(await lane.put(batch)) == len(batch)
            master = cluster.master_of(_names(keyspace).index)
            replica = cluster.replica_of(master)

            given: list[str] = []
            refused = 0
            under_way, stop = asyncio.Event(), asyncio.Event()

            async def taker() -> None:
                nonlocal refused
                while not stop.is_set():
                    try:
                        given.extend(key.key_id for key in await lane.take(1))
                    except PoolUnavailable:
                        refused += 1
                    except PoolEmpty:
                        return
                    await asyncio.sleep(TAKER_PAUSE_S)
                    if len(given) >= TAKES_BEFORE_KILL:
                        under_way.set()

            async def failover() -> None:
                await under_way.wait()
                replica.pause()  # the replica falls behind: what the master does now, it does not get
                with master.client() as client:
                    client.client_kill_filter(_type="replica")  # nor what is left to send: its link is cut
                try:
                    await wait_until(lambda: backend.metrics.unconfirmed, timeout_s=HANG_GUARD_S, what="a refusal")
                    master.kill()
                finally:
                    replica.resume()
                killed_at = len(given)
                await asyncio.to_thread(cluster.wait_promoted, replica)
                # The promoted master has no replica: WAIT 1 refuses its writes until the killed node is back
                await asyncio.to_thread(cluster.rejoin, master)
                await wait_until(
                    lambda: len(given) >= killed_at + TAKES_AFTER_PROMOTION, timeout_s=HANG_GUARD_S, what="recovery"
                )
                stop.set()

            await asyncio.gather(failover(), *(taker() for _ in range(8)))

        assert refused > 0, "the failover went unnoticed: no call was refused"
        assert len(set(given)) == len(given), "a key_ID was handed out twice"
        where = _where(replica, _names(keyspace), [key.key_id for key in keys])
        assert all(where[key_id] == (False, True) for key_id in given), "an acknowledged take reappeared"
        assert all(present != tombstoned for present, tombstoned in where.values()), "a key is unaccounted for"
        assert backend.metrics.unavailable + backend.metrics.unconfirmed == refused
