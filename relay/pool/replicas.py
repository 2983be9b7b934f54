"""Which replicas of a gateway are running, so one can tell a dead replica's unfinished work from a live one's.

Every running replica has an instance token (:class:`ReplicaInstance`, random, new at each start; the
holder token of its leases too) and keeps ``<prefix>:replica:<token>`` alive in the gateway's Redis
(:class:`ReplicaLiveness`: ``SET ... PX`` every second, a few seconds to live). When the key is gone the
replica is dead, or stalled for longer than that; either way its unfinished attempts may be resolved by
another replica. Liveness is advice only: whatever depends on it (the transfer log's claims) is decided by
a compare-and-set on the state itself, so a replica that was taken for dead and wakes up loses cleanly.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from relay.aio import repeat_until_cancelled
from relay.pool.connection import RedisBackend
from relay.pool.errors import PoolUnavailable

log = logging.getLogger(__name__)

LIVENESS_TTL_MS = 5_000
BEAT_INTERVAL_S = 1.0


@dataclass(frozen=True)
class ReplicaInstance:
    """One run of one replica; create once per start with :meth:`new`."""

    token: str

    @classmethod
    def new(cls) -> ReplicaInstance:
        return cls(os.urandom(8).hex())


class ReplicaLiveness:
    """Keeps this replica's liveness key alive and reads others'."""

    def __init__(
        self, backend: RedisBackend, prefix: str, instance: ReplicaInstance, *, ttl_ms: int = LIVENESS_TTL_MS
    ) -> None:
        if ttl_ms <= 0:
            raise ValueError("ttl_ms must be positive")
        self.instance = instance
        self._backend = backend
        self._prefix = prefix
        self._ttl_ms = ttl_ms

    def key_name(self, token: str) -> str:
        return f"{self._prefix}:replica:{token}"

    async def beat(self) -> None:
        """Say this replica is alive for the next ``ttl_ms``."""
        await self._backend.command("SET", self.key_name(self.instance.token), b"1", "PX", self._ttl_ms)

    async def run(self, interval_s: float = BEAT_INTERVAL_S) -> None:
        """Beat until cancelled; a Redis outage skips beats (others may then take us for dead: safe)."""
        await repeat_until_cancelled(self._beat_unless_unavailable, interval_s)

    async def _beat_unless_unavailable(self) -> None:
        try:
            await self.beat()
        except PoolUnavailable as exc:
            log.debug("replica liveness not refreshed: %s", exc)

    async def is_alive(self, token: str) -> bool:
        return bool(await self._backend.command("EXISTS", self.key_name(token)))

    async def retire(self) -> None:
        """At a clean stop, once our attempts ended: others need not wait for the key to expire."""
        await self._backend.command("DEL", self.key_name(self.instance.token))
