"""Replay guards, in memory and in Redis, alone and behind open_hop."""

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio

from relay.crypto.errors import ReplayedMessage
from relay.crypto.replay import MemoryReplayGuard, RedisReplayGuard
from tests.support.crypto_identities import Link, ManualClock
from tests.support.redis_servers import RedisServer, redis_server


async def test_memory_guard_remembers_until_ttl() -> None:
    clock = ManualClock()
    guard = MemoryReplayGuard(clock)
    transfer = os.urandom(16)
    assert await guard.check_and_remember(transfer, 1, 1_000)
    assert not await guard.check_and_remember(transfer, 1, 1_000)
    assert await guard.check_and_remember(transfer, 2, 1_000)
    clock.advance(1_000)
    assert await guard.check_and_remember(transfer, 1, 1_000)


@pytest.fixture(scope="module")
def replay_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private server: these tests used the machine's Redis on 6379 and were skipped where none ran."""
    with redis_server(tmp_path_factory.mktemp("replay-redis")) as server:
        yield server


@pytest.fixture
async def redis_client(replay_redis: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(replay_redis.admin_url)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_guard(redis_client: redis.asyncio.Redis) -> AsyncIterator[RedisReplayGuard]:
    """A guard under a unique prefix; its keys are deleted afterwards."""
    prefix = f"test-crypto-{uuid.uuid4().hex}"
    yield RedisReplayGuard(redis_client.execute_command, prefix)
    keys = [key async for key in redis_client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await redis_client.delete(*keys)


def test_redis_key_names_hold_only_public_identifiers() -> None:
    guard = RedisReplayGuard(redis.asyncio.Redis().execute_command, "gw1")
    assert guard.key_name(bytes(range(16)), 3) == "gw1:{replay}:000102030405060708090a0b0c0d0e0f:3"


async def test_redis_guard_set_nx_with_ttl(redis_client: redis.asyncio.Redis, redis_guard: RedisReplayGuard) -> None:
    transfer = os.urandom(16)
    assert await redis_guard.check_and_remember(transfer, 1, 240_000)
    assert not await redis_guard.check_and_remember(transfer, 1, 240_000)
    assert await redis_guard.check_and_remember(transfer, 2, 240_000)
    ttl = await redis_client.pttl(redis_guard.key_name(transfer, 1))
    assert 0 < ttl <= 240_000


async def test_redis_guard_forgets_after_ttl(redis_client: redis.asyncio.Redis, redis_guard: RedisReplayGuard) -> None:
    transfer = os.urandom(16)
    assert await redis_guard.check_and_remember(transfer, 1, 1)
    await redis_client.delete(redis_guard.key_name(transfer, 1))  # as if PX had elapsed
    assert await redis_guard.check_and_remember(transfer, 1, 1)


async def test_open_hop_refuses_replay_through_redis(
    link: Link, redis_client: redis.asyncio.Redis, redis_guard: RedisReplayGuard
) -> None:
    message = link.seal(os.urandom(32)).message
    await link.open(message, replay=redis_guard)
    with pytest.raises(ReplayedMessage):
        await link.open(message, replay=redis_guard)
    ttl = await redis_client.pttl(redis_guard.key_name(message.header.transfer_id, message.header.hop))
    assert 110_000 < ttl <= 120_001  # remembered as long as the timestamp stays fresh (window + 1 ms)
