"""A power loss of the Redis host: nothing acknowledged is lost, nothing is delivered twice.

The review cut the AOF's unsynced tail after a SIGKILL (what a power loss leaves when the page cache
dies with the machine) and, with ``appendfsync everysec``, one key was delivered twice and one its master
held was gone. With ``appendfsync always`` every write is on disk before its command is answered, so what
a power loss can cut is only writes no SAE was answered for. The test reproduces that: keys handed out
and fetched with their answers read; then more requests whose answers are never read (they die with
the power) while Redis writes for them; SIGKILL; the AOF's current file cut back to the middle of the
writes made after the last read answer (a torn last record included); restart on it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.etsi014.client import KmeError
from relay.etsi014.models import KeyRequest
from relay.gateway.config import GatewaySettings
from relay.pki.layout import KeyDirectory
from relay.pool import RelayedStoreSettings
from tests.support.local_testbed import LocalTestbed, running_testbed
from tests.support.redis_servers import DEFAULT_GATEWAYS, RedisServer, redis_server

# A dec_keys reservation whose commit the power loss undid keeps its key "being delivered" (503) until the
# reservation runs out into a tombstone; a short reservation lifetime keeps that wait within the test's.
ON_DEMAND = GatewaySettings(prerelay=False, relayed_store=RelayedStoreSettings(reservation_ttl_s=2.0))
MASTER, SLAVE = "SAE-R1-A", "SAE-R3-A"  # GW1 -> GW2 -> GW3


@pytest.fixture
def aof_redis(tmp_path: Path, topology_keys: KeyDirectory) -> Iterator[RedisServer]:
    with redis_server(tmp_path / "redis", appendonly=True, keys=topology_keys, gateways=DEFAULT_GATEWAYS) as server:
        yield server


async def _fetch(testbed: LocalTestbed, key_id: str) -> bytes | None:
    """The slave's dec_keys after the restart: the key, or None when the gateway has none to give."""
    deadline = time.monotonic() + 20
    async with testbed.sae(SLAVE) as slave:
        while True:
            try:
                return (await slave.get_key_with_ids(MASTER, [key_id])).keys[0].key
            except KmeError as exc:
                if exc.status == 503 and time.monotonic() < deadline:  # still reconnecting to Redis
                    await asyncio.sleep(0.2)
                    continue
                assert exc.status == 400, exc
                return None


async def test_a_power_loss_cutting_the_unsynced_tail_delivers_nothing_twice_and_loses_nothing(
    aof_redis: RedisServer, topology_keys: KeyDirectory
) -> None:
    async with running_testbed(topology_keys, aof_redis.url, ON_DEMAND) as testbed:
        async with testbed.sae(MASTER) as master, testbed.sae(SLAVE) as slave:
            handed_out = {k.key_id: k.key for k in (await master.get_key(SLAVE, KeyRequest(number=6))).keys}
            fetched = list(handed_out)[:3]
            for key_id in fetched:
                await slave.get_key_with_ids(MASTER, [key_id])
            waiting = [k for k in handed_out if k not in fetched]
            with aof_redis.client() as admin:  # the premise of the cut below: answered means fsynced
                assert admin.config_get("appendfsync") == {"appendfsync": "always"}
            acknowledged_size = aof_redis.aof_tail().stat().st_size  # every answer read so far is below this

            unanswered = [
                asyncio.create_task(master.get_key(SLAVE, KeyRequest(number=2))),
                asyncio.create_task(slave.get_key_with_ids(MASTER, [waiting[0]])),
            ]
            deadline = time.monotonic() + 10
            while aof_redis.aof_tail().stat().st_size < acknowledged_size + 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            aof_redis.kill()
            for task in unanswered:
                task.cancel()  # their answers, if any, die with the power: no SAE holds those keys
            await asyncio.gather(*unanswered, return_exceptions=True)

    tail = aof_redis.aof_tail()
    written = tail.stat().st_size
    assert written > acknowledged_size, "the unanswered requests wrote nothing before the kill"
    with tail.open("r+b") as aof:
        aof.truncate(acknowledged_size + (written - acknowledged_size) // 2)  # lost, torn mid-record
    aof_redis.start()

    # The power loss took the whole site down, gateways included: their in-flight hops and retries die
    # with them (a gateway that outlived its Redis would resend a hop whose QKD key take the cut undid).
    async with running_testbed(topology_keys, aof_redis.url, ON_DEMAND) as testbed:
        for key_id in fetched:  # delivered before the power loss: never again
            assert await _fetch(testbed, key_id) is None
        for key_id in waiting[1:]:  # handed out to the master, not yet fetched: there, once
            assert await _fetch(testbed, key_id) == handed_out[key_id]
            assert await _fetch(testbed, key_id) is None
        first = await _fetch(testbed, waiting[0])  # its fetch was never answered: at most once, and genuine
        assert first in (None, handed_out[waiting[0]])
        assert await _fetch(testbed, waiting[0]) is None
        assert "loaded anyway because aof-load-truncated is enabled" in aof_redis.log_file.read_text()
        async with testbed.sae(MASTER) as master:  # and the relay works on the restarted Redis
            key = (await master.get_key(SLAVE, KeyRequest(number=1))).keys[0]
        assert await _fetch(testbed, key.key_id) == key.key
