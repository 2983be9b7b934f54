"""Leases in Redis, so work that N replicas of a gateway could all do runs on one of them at a time.

A lease is one string key whose value is the holder's instance token (random per running process) and
whose expiry is the lease's time to live. Taking, renewing and releasing are each one Lua script
(``Script.LEASE_*``), a compare-and-set on the token, so a replica can only extend or delete its own lease.
:func:`run_while_leased` runs a long-lived coroutine only while its lease is held, renews it every
``renew_every_s``, and cancels the coroutine as soon as it cannot be sure it still holds it (a renewal
refused, or Redis unreachable until the lease would have run out). A holder that dies stops renewing, so
another replica takes the work over within the time to live plus one retry interval.

**A lease only avoids duplicate work.** Two holders can still overlap briefly (a holder stalled past its
time to live, a Redis failover losing the last renewal), and the vendor KMS and foreign KMSs could not
check a fencing token anyway; so no invariant depends on a lease. Every at-most-once rule stays in the
atomic scripts of the state the work writes, and a lease's key shares that state's hash tag
(:class:`relay.pool.keys.Keyspace`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from relay.pool.connection import RedisBackend
from relay.pool.errors import PoolUnavailable
from relay.pool.scripts import Script

log = logging.getLogger(__name__)

TTL_MS = 3000  # a dead holder's work is taken over within this, plus one retry interval
RENEW_EVERY_S = 1.0  # a third of the time to live: two renewals may fail before the lease runs out
RELEASE_TIMEOUT_S = 1.0  # at shutdown: a Redis that does not answer lets the lease run out instead


@dataclass
class LeaseMetrics:
    """Which leases this process holds, by label, and how often it took or lost one."""

    held: dict[str, bool] = field(default_factory=dict)
    taken: int = 0
    lost: int = 0


class Lease:
    """One lease ``name`` (a Redis key) as seen by ``holder``; ``held`` is what this process last learned."""

    def __init__(
        self,
        backend: RedisBackend,
        name: str,
        holder: str,
        ttl_ms: int = TTL_MS,
        *,
        label: str | None = None,
        metrics: LeaseMetrics | None = None,
    ) -> None:
        if ttl_ms < 1 or not holder:
            raise ValueError("a lease needs a positive time to live and a holder token")
        self.name = name
        self.holder = holder
        self.ttl_ms = ttl_ms
        self.label = label or name  # for logs and metrics
        self.held = False
        self._backend = backend
        self._metrics = metrics

    async def try_acquire(self) -> bool:
        """Take the lease if it is free, or extend it if we hold it already; True if we hold it now."""
        held = bool(await self._backend.run(Script.LEASE_ACQUIRE, [self.name], [self.holder, self.ttl_ms]))
        self._learned(held, "taken by another replica or run out")
        return held

    async def renew(self) -> bool:
        """Extend the lease if we still hold it; False (lost) if it ran out or someone else holds it."""
        held = bool(await self._backend.run(Script.LEASE_RENEW, [self.name], [self.holder, self.ttl_ms]))
        self._learned(held, "renewal refused")
        return held

    async def release(self) -> None:
        """Give the lease up now, if we hold it, so another replica need not wait for it to run out."""
        await self._backend.run(Script.LEASE_RELEASE, [self.name], [self.holder])
        self._learned(False, "released", lost=False)

    def given_up(self, reason: str) -> None:
        """Stop counting on the lease without asking Redis (it could not be renewed in time)."""
        self._learned(False, reason)

    def _learned(self, held: bool, reason: str, *, lost: bool = True) -> None:
        if held and not self.held:
            log.info("replica %s took lease %s", self.holder, self.label)
            if self._metrics is not None:
                self._metrics.taken += 1
        elif self.held and not held:
            log.info("replica %s no longer holds lease %s: %s", self.holder, self.label, reason)
            if self._metrics is not None and lost:
                self._metrics.lost += 1
        self.held = held
        if self._metrics is not None:
            self._metrics.held[self.label] = held


async def run_while_leased(
    lease: Lease,
    work: Callable[[], Awaitable[None]],
    *,
    renew_every_s: float = RENEW_EVERY_S,
    retry_every_s: float | None = None,
) -> None:
    """Forever: take ``lease`` (tried every ``retry_every_s``, default ``renew_every_s``), run ``work()``
    while it is held, renewing it every ``renew_every_s``; cancel the work when the lease is lost. Cancel
    this task to stop; the lease is then released."""
    if not 0 < renew_every_s * 1000 < lease.ttl_ms:
        raise ValueError("renew_every_s must be positive and shorter than the lease's time to live")
    loop = asyncio.get_running_loop()
    try:
        while True:
            asked_at = loop.time()
            if await _answered(lease.try_acquire):
                await _hold(lease, work, renew_every_s, asked_at + lease.ttl_ms / 1000)
            await _sleep(renew_every_s if retry_every_s is None else retry_every_s)
    finally:
        if lease.held:
            with contextlib.suppress(PoolUnavailable, TimeoutError):
                async with asyncio.timeout(RELEASE_TIMEOUT_S):
                    await lease.release()


async def _hold(lease: Lease, work: Callable[[], Awaitable[None]], renew_every_s: float, expires_at: float) -> None:
    """Run the work until the lease is lost (or the work ends on its own); the work never outlives this.

    ``expires_at`` is when the lease runs out in Redis at the earliest (measured from before the request
    that took or renewed it, in this process's monotonic clock): the work is cancelled before the next
    renewal would come later than that.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(_as_coroutine(work), name=f"leased {lease.label}")
    try:
        while True:
            await asyncio.wait({task}, timeout=renew_every_s)
            if task.done():
                _report_end(lease, task)
                return
            asked_at = loop.time()
            renewed = await _answered(lease.renew, timeout_s=max(expires_at - asked_at, 0.001))
            if renewed is None:
                if loop.time() + renew_every_s < expires_at:
                    continue
                lease.given_up("Redis unavailable until the lease would run out")
                return
            if not renewed:
                return
            expires_at = asked_at + lease.ttl_ms / 1000
    finally:
        task.cancel()
        await asyncio.wait({task})


async def _as_coroutine(work: Callable[[], Awaitable[None]]) -> None:
    await work()


def _report_end(lease: Lease, task: asyncio.Task[None]) -> None:
    """The work is meant to run forever; if it stopped, say why (no stack trace), and it restarts later."""
    exc = None if task.cancelled() else task.exception()
    log.error("work under lease %s stopped (%r); restarting it while the lease is held", lease.label, exc)


async def _answered(ask: Callable[[], Awaitable[bool]], *, timeout_s: float | None = None) -> bool | None:
    """Redis's answer, or None when it could not give one (in time)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await ask()
    except (PoolUnavailable, TimeoutError) as exc:
        _stop_if_cancelled()  # a cancellation can surface as the client's own timeout (see relay.aio)
        log.debug("lease request unanswered: %s", exc)
        return None


async def _sleep(seconds: float) -> None:
    _stop_if_cancelled()
    await asyncio.sleep(seconds)


def _stop_if_cancelled() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
