"""Token buckets in a real Redis (single and cluster): all or nothing, atomic across callers, per SAE pair.

Rates are either negligible (0.001 token/s, so nothing refills while a test runs) or the test waits for
the refill instead of timing it.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from relay.pool import Bucket, Keyspace, RedisBackend, TokenBuckets
from tests.support.waiting import wait_until

SLOW = 0.001  # tokens per second: no refill within a test


def bucket(name: str, capacity: float, cost: float, per_s: float = SLOW) -> Bucket:
    return Bucket(name, capacity, per_s, cost)


async def test_a_request_pays_every_bucket_or_none(backend: RedisBackend, keyspace: Keyspace) -> None:
    buckets = TokenBuckets(backend, keyspace)
    assert await buckets.take("A", "B", [bucket("keys", 10, 2), bucket("qkd:Q", 3, 2)]) is None
    short = await buckets.take("A", "B", [bucket("keys", 10, 2), bucket("qkd:Q", 3, 2)])
    assert short is not None and short.bucket.name == "qkd:Q"
    assert short.retry_after_s is not None and short.retry_after_s > 100  # 1 token at 0.001/s
    assert await buckets.take("A", "B", [bucket("keys", 10, 8)]) is None  # the refused request took nothing
    assert await buckets.take("A", "B", [bucket("keys", 10, 1)]) is not None


async def test_a_cost_above_the_capacity_can_never_be_paid(backend: RedisBackend, keyspace: Keyspace) -> None:
    short = await TokenBuckets(backend, keyspace).take("A", "B", [bucket("qkd:Q", 16384, 32768)])
    assert short is not None and short.retry_after_s is None


async def test_each_pair_has_its_own_buckets(backend: RedisBackend, keyspace: Keyspace) -> None:
    buckets = TokenBuckets(backend, keyspace)
    assert await buckets.take("A", "B", [bucket("keys", 4, 4)]) is None
    assert await buckets.take("A", "B", [bucket("keys", 4, 1)]) is not None
    assert await buckets.take("A", "C", [bucket("keys", 4, 4)]) is None
    assert await buckets.take("C", "B", [bucket("keys", 4, 4)]) is None


async def test_replicas_of_a_gateway_share_one_budget(standalone_backend: RedisBackend, keyspace: Keyspace) -> None:
    """Two replicas (two connections to one Redis), twenty requests of one token from a bucket of ten: ten
    pass. On one Redis: the cluster harness drops connections under a burst of fresh ones, and redis-py
    then retries a script whose reply was lost, charging twice (fail-safe, but not an exact count)."""
    config = dataclasses.replace(standalone_backend.config, max_in_flight=20)  # all at once, no client queueing
    async with RedisBackend.connect(config) as first, RedisBackend.connect(config) as second:
        replicas = [TokenBuckets(first, keyspace), TokenBuckets(second, keyspace)]
        outcomes = await asyncio.gather(*(replicas[i % 2].take("A", "B", [bucket("keys", 10, 1)]) for i in range(20)))
    assert sum(outcome is None for outcome in outcomes) == 10


async def test_a_drained_bucket_refills_at_its_rate(backend: RedisBackend, keyspace: Keyspace) -> None:
    buckets = TokenBuckets(backend, keyspace)
    assert await buckets.take("A", "B", [bucket("keys", 5, 5, per_s=50)]) is None

    async def paid() -> bool:
        return await buckets.take("A", "B", [bucket("keys", 5, 5, per_s=50)]) is None

    await wait_until(paid, timeout_s=10, interval_s=0.02, what="a refilled bucket")


def test_a_bucket_needs_a_positive_capacity_and_rate() -> None:
    with pytest.raises(ValueError, match="positive"):
        Bucket("keys", 0, 1, 1)
