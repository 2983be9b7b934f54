"""Replay guards by message ID (a frame's frame_id, a void's nonce), in memory and in Redis, alone and behind
open_frame and verify_void."""

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio

from relay.crypto.errors import ReplayedMessage
from relay.crypto.replay import MemoryReplayGuard, RedisReplayGuard
from relay.crypto.void import new_void_order, sign_void, verify_void
from tests.support.crypto_identities import Identities, Link, ManualClock
from tests.support.redis_servers import RedisServer, redis_server


async def test_memory_guard_remembers_until_ttl() -> None:
    clock = ManualClock()
    guard = MemoryReplayGuard(clock)
    frame_id, other = os.urandom(16), os.urandom(16)
    assert await guard.check_and_remember(frame_id, 1_000)
    assert not await guard.check_and_remember(frame_id, 1_000)
    assert await guard.check_and_remember(other, 2_000)
    clock.advance(999)
    assert not await guard.check_and_remember(frame_id, 1_000)
    clock.advance(1)
    assert await guard.check_and_remember(frame_id, 1_000)
    assert not await guard.check_and_remember(other, 2_000)  # its own, longer TTL still runs


async def test_memory_guard_keeps_ids_apart_by_every_byte() -> None:
    """A void nonce (32 bytes) never collides with a frame_id (16 bytes), not even one it starts with."""
    guard = MemoryReplayGuard(ManualClock())
    frame_id = os.urandom(16)
    assert await guard.check_and_remember(frame_id, 1_000)
    assert await guard.check_and_remember(frame_id + bytes(16), 1_000)
    assert await guard.check_and_remember(frame_id[:-1] + bytes([frame_id[-1] ^ 1]), 1_000)


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
    assert guard.key_name(bytes(range(16))) == "gw1:{replay}:000102030405060708090a0b0c0d0e0f"


async def test_redis_guard_set_nx_with_ttl(redis_client: redis.asyncio.Redis, redis_guard: RedisReplayGuard) -> None:
    frame_id = os.urandom(16)
    assert await redis_guard.check_and_remember(frame_id, 240_000)
    assert not await redis_guard.check_and_remember(frame_id, 240_000)
    assert await redis_guard.check_and_remember(os.urandom(16), 240_000)
    ttl = await redis_client.pttl(redis_guard.key_name(frame_id))
    assert 0 < ttl <= 240_000


async def test_redis_guard_forgets_after_ttl(redis_client: redis.asyncio.Redis, redis_guard: RedisReplayGuard) -> None:
    frame_id = os.urandom(16)
    assert await redis_guard.check_and_remember(frame_id, 1)
    await redis_client.delete(redis_guard.key_name(frame_id))  # as if PX had elapsed
    assert await redis_guard.check_and_remember(frame_id, 1)


async def test_redis_guard_never_passes_a_ttl_below_one_ms(redis_guard: RedisReplayGuard) -> None:
    """A message at the very edge of its window asks for TTL <= 0, which Redis's PX refuses as an error."""
    for ttl_ms in (0, -5):
        assert await redis_guard.check_and_remember(os.urandom(16), ttl_ms)


async def test_open_frame_refuses_replay_through_redis(
    link: Link, redis_client: redis.asyncio.Redis, redis_guard: RedisReplayGuard
) -> None:
    message = link.seal(os.urandom(32), os.urandom(32)).message
    await link.open(message, replay=redis_guard)
    with pytest.raises(ReplayedMessage):
        await link.open(message, replay=redis_guard)
    ttl = await redis_client.pttl(redis_guard.key_name(message.header.frame_id))
    assert 110_000 < ttl <= 120_001  # remembered as long as the timestamp stays fresh (window + 1 ms)


async def test_open_frame_remembers_only_as_long_as_the_frame_stays_fresh(
    link: Link, redis_client: redis.asyncio.Redis, redis_guard: RedisReplayGuard
) -> None:
    message = link.seal(os.urandom(32)).message
    link.clock.advance(100_000)
    await link.open(message, replay=redis_guard)
    ttl = await redis_client.pttl(redis_guard.key_name(message.header.frame_id))
    assert 10_000 < ttl <= 20_001  # the 20 s of window left, + 1 ms


async def test_a_void_is_remembered_by_its_nonce(
    identities: Identities, redis_client: redis.asyncio.Redis, redis_guard: RedisReplayGuard
) -> None:
    clock = ManualClock()
    origin = identities.by_id["a-sender"]
    order = new_void_order((), "SAE-A", "SAE-B", (origin.gateway_id, "a-receiver"), clock=clock)
    signature = sign_void(order, origin)
    await verify_void(order, signature, trust=identities.trust, replay=redis_guard, clock=clock)
    assert await redis_client.exists(redis_guard.key_name(order.nonce))
    with pytest.raises(ReplayedMessage):
        await verify_void(order, signature, trust=identities.trust, replay=redis_guard, clock=clock)
