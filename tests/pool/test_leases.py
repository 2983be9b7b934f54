"""Leases in a real Redis: one holder at a time, taken over when the holder stops renewing, work that runs
only while its lease is held (and stops while Redis cannot confirm it)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from relay.pool.connection import RedisBackend, RedisConfig
from relay.pool.keys import Keyspace
from relay.pool.leases import Lease, LeaseMetrics, run_while_leased
from relay.pool.qkd_pool import Role
from tests.support.redis_servers import RedisServer, redis_server
from tests.support.waiting import wait_until

TTL_MS = 600
RENEW_S = 0.2


@dataclass
class Runs:
    """When each holder's work ran, in this process's monotonic clock; ``stop`` None while it runs."""

    spans: list[tuple[str, float, float | None]] = field(default_factory=list)

    def work(self, holder: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            loop = asyncio.get_running_loop()
            index = len(self.spans)
            self.spans.append((holder, loop.time(), None))
            try:
                await asyncio.Event().wait()  # long-lived work: until cancelled
            finally:
                self.spans[index] = (holder, self.spans[index][1], loop.time())

        return run

    def running(self, holder: str | None = None) -> list[str]:
        return [h for h, _, stop in self.spans if stop is None and holder in (None, h)]

    def overlaps(self) -> list[tuple[tuple[str, float, float | None], ...]]:
        """Pairs of spans that ran at the same time (a span still running ends at infinity)."""
        spans = sorted(self.spans, key=lambda span: span[1])
        return [
            (first, second)
            for i, first in enumerate(spans)
            for second in spans[i + 1 :]
            if second[1] < (first[2] if first[2] is not None else float("inf"))
        ]


def lease_name(keyspace: Keyspace) -> str:
    return keyspace.qkd_filler_lease(f"L-{uuid.uuid4().hex[:8]}")


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_one_holder_at_a_time_and_only_the_holder_renews_or_releases(
    backend: RedisBackend, keyspace: Keyspace
) -> None:
    name = lease_name(keyspace)
    a, b = Lease(backend, name, "replica-a", 10_000), Lease(backend, name, "replica-b", 10_000)
    assert await a.try_acquire()
    assert not await b.try_acquire()
    assert await a.try_acquire()  # ours already: extended, still ours
    assert not await b.renew()
    await b.release()  # not b's: left alone
    assert await a.renew() and a.held and not b.held
    await a.release()
    assert not a.held and not await a.renew()  # released: renewing does not take it back
    assert await b.try_acquire() and b.held
    assert not await a.try_acquire()


async def test_a_lease_runs_out_when_its_holder_stops_renewing(backend: RedisBackend, keyspace: Keyspace) -> None:
    name = lease_name(keyspace)
    silent, waiting = Lease(backend, name, "silent", TTL_MS), Lease(backend, name, "waiting", TTL_MS)
    assert await silent.try_acquire()
    await wait_until(waiting.try_acquire, timeout_s=5, interval_s=0.05, what="the other holder takes the lease")
    assert not await silent.renew() and not silent.held  # it ran out: a late renewal does not revive it


async def test_a_runner_takes_over_from_a_silent_holder_after_its_ttl(
    standalone_backend: RedisBackend, keyspace: Keyspace
) -> None:
    """A holder that stops renewing (dead, frozen) is replaced within its time to live plus one interval;
    not before it ran out."""
    name, runs = lease_name(keyspace), Runs()
    silent = Lease(standalone_backend, name, "silent", TTL_MS)
    assert await silent.try_acquire()
    taken_at = asyncio.get_running_loop().time()
    runner = asyncio.create_task(
        run_while_leased(Lease(standalone_backend, name, "runner", TTL_MS), runs.work("runner"), renew_every_s=RENEW_S)
    )
    try:
        await wait_until(runs.running, timeout_s=TTL_MS / 1000 + RENEW_S + 5, interval_s=0.02, what="takeover")
    finally:
        await stop(runner)
    assert runs.spans[0][1] - taken_at >= TTL_MS / 1000 - 0.05  # not while the silent holder's lease lived
    assert runs.running() == []  # cancelling the runner cancelled its work


async def test_work_is_cancelled_when_its_lease_is_lost_and_resumes_when_it_is_taken_again(
    standalone_backend: RedisBackend, standalone_redis: RedisServer, keyspace: Keyspace
) -> None:
    name, runs, metrics = lease_name(keyspace), Runs(), LeaseMetrics()
    lease = Lease(standalone_backend, name, "runner", TTL_MS, label="the work", metrics=metrics)
    runner = asyncio.create_task(run_while_leased(lease, runs.work("runner"), renew_every_s=RENEW_S))
    try:
        await wait_until(runs.running, timeout_s=5, interval_s=0.02, what="work started")
        assert metrics.held == {"the work": True}
        with standalone_redis.client() as admin:  # another replica took it (this one stalled, say)
            admin.set(name, "intruder", px=TTL_MS)
        await wait_until(lambda: not runs.running(), timeout_s=5, interval_s=0.02, what="work cancelled")
        assert metrics.held == {"the work": False} and metrics.lost == 1
        await wait_until(runs.running, timeout_s=5, interval_s=0.02, what="work resumed after the intruder's ttl")
    finally:
        await stop(runner)
    assert len(runs.spans) == 2 and metrics.taken == 2
    with standalone_redis.client() as admin:
        assert admin.get(name) is None  # released when the runner stopped


async def test_two_runners_never_run_the_work_at_the_same_time(
    standalone_backend: RedisBackend, standalone_redis: RedisServer, keyspace: Keyspace
) -> None:
    """While the holder renews, the other waits; a stopping holder releases, and the handover has no overlap.

    (A lease taken from a holder behind one renewal, as by the intruder above, can overlap by up to one
    renew interval: leases only avoid duplicate work, no invariant depends on them.)"""
    name, runs = lease_name(keyspace), Runs()
    runners = {
        holder: asyncio.create_task(
            run_while_leased(Lease(standalone_backend, name, holder, TTL_MS), runs.work(holder), renew_every_s=RENEW_S)
        )
        for holder in ("one", "two")
    }
    try:
        await wait_until(runs.running, timeout_s=5, interval_s=0.02, what="one runner started")
        first = runs.running()[0]
        await asyncio.sleep(3 * RENEW_S)  # renewals meanwhile: the other runner keeps waiting
        assert runs.running() == [first]
        await stop(runners[first])  # releases: the other takes over
        await wait_until(lambda: runs.running(next(h for h in runners if h != first)), timeout_s=5, what="takeover")
    finally:
        for runner in runners.values():
            await stop(runner)
    assert {holder for holder, _, _ in runs.spans} == {"one", "two"}
    assert runs.overlaps() == []


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """Stopped and restarted by the test: not the session's shared server."""
    with redis_server(tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def own_backend(own_redis: RedisServer) -> AsyncIterator[RedisBackend]:
    config = RedisConfig(own_redis.admin_url, socket_timeout_s=0.5, connect_timeout_s=0.5)
    async with RedisBackend.connect(config) as backend:
        yield backend


async def test_work_stops_while_redis_is_unavailable_and_resumes_after(
    own_backend: RedisBackend, own_redis: RedisServer, keyspace: Keyspace
) -> None:
    """Without Redis the runner cannot know the lease is still its own: the work stops before the lease
    would have run out, and starts again once Redis is back and the lease taken anew."""
    runs = Runs()
    ttl_ms = 1500
    lease = Lease(own_backend, lease_name(keyspace), "runner", ttl_ms)
    runner = asyncio.create_task(run_while_leased(lease, runs.work("runner"), renew_every_s=0.3))
    try:
        await wait_until(runs.running, timeout_s=5, interval_s=0.02, what="work started")
        own_redis.stop()
        stopped_at = asyncio.get_running_loop().time()
        await wait_until(lambda: not runs.running(), timeout_s=10, interval_s=0.02, what="work stopped")
        assert runs.spans[0][2] is not None and runs.spans[0][2] - stopped_at < ttl_ms / 1000  # before it ran out
        assert not lease.held
        own_redis.start()
        await wait_until(runs.running, timeout_s=15, interval_s=0.05, what="work resumed")
    finally:
        await stop(runner)
    assert len(runs.spans) == 2


def test_lease_names_share_the_hash_tag_of_the_state_they_guard(keyspace: Keyspace) -> None:
    def tag(name: str) -> str:
        return name[name.index("{") : name.index("}") + 1]

    assert tag(keyspace.qkd_filler_lease("L #1")) == tag(keyspace.qkd_pool("L #1", Role.MASTER).index)
    assert tag(keyspace.prerelay_lease("SAE 1", "SAE:2")) == tag(keyspace.ready("SAE 1", "SAE:2").index)
    assert tag(keyspace.ack_retries_lease()) == tag(keyspace.ack_retries() + "due")
