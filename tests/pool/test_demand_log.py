"""The demand log on a real Redis (standalone and Cluster): counts per pair per bucket, read back per window."""

from __future__ import annotations

import math
import time

from relay.pool.connection import RedisBackend
from relay.pool.demand import DemandLog
from relay.pool.keys import Keyspace

A, B, FOREIGN_ID = ("SAE-1", "SAE-2"), ("SAE-1", "SAE-3"), ("SAE:{x}", "SAE 4")


def _bucket_start() -> float:
    """The start of the current 10 s bucket: buckets expire in Redis by the real clock."""
    return math.floor(time.time() / 10) * 10


async def test_counts_add_up_within_the_window_and_leave_it_with_their_bucket(
    backend: RedisBackend, keyspace: Keyspace
) -> None:
    log = DemandLog(backend, keyspace, bucket_s=10.0, buckets=3)
    t = _bucket_start()
    assert await log.exchange({}, now_s=t) == {}  # nothing asked: nothing kept
    assert await log.exchange({A: 2, FOREIGN_ID: 1}, now_s=t + 0.0) == {A: 2, FOREIGN_ID: 1}
    assert await log.exchange({A: 3, B: 1}, now_s=t + 11.0) == {A: 5, B: 1, FOREIGN_ID: 1}  # the next bucket
    assert await log.exchange({}, now_s=t + 25.0) == {A: 5, B: 1, FOREIGN_ID: 1}  # still within 3 buckets
    assert await log.exchange({}, now_s=t + 31.0) == {A: 3, B: 1}  # the first bucket has left the window
    assert await log.exchange({}, now_s=t + 60.0) == {}


async def test_a_bucket_expires_in_redis_once_out_of_the_window(backend: RedisBackend, keyspace: Keyspace) -> None:
    log = DemandLog(backend, keyspace, bucket_s=10.0, buckets=3)
    t = _bucket_start()
    await log.exchange({A: 1}, now_s=t)
    expires_at_ms = await backend.command("PEXPIRETIME", keyspace.demand(round(t / 10)))
    assert expires_at_ms == (t + 40) * 1000  # the bucket 1000-1010 s counts until 1030 s; kept one bucket longer
