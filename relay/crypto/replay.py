"""Replay guards: each (transfer_id, hop) is accepted at most once while its timestamp is still fresh.

:func:`relay.crypto.hop.open_hop` asks the guard only after the signature verified (so forged messages
cannot burn transfer IDs) and passes how long the message could still pass the freshness check; the
guard must remember the pair at least that long. After that the time window alone refuses the message.

Redis key names are ``<prefix>:{replay}:<transfer_id hex>:<hop>`` (the prefix is the gateway's namespace,
as in ``relay.pool.keys``): public identifiers only, never secrets.
"""

import heapq
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from relay.crypto.clock import Clock


class ReplayGuard(Protocol):
    async def check_and_remember(self, transfer_id: bytes, hop: int, ttl_ms: int) -> bool:
        """True the first time a pair is seen (and remember it for ``ttl_ms``); False on a replay."""
        ...


class MemoryReplayGuard:
    """Process-local guard for tests and single-process deployments; expired pairs are purged lazily."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._seen: set[tuple[bytes, int]] = set()
        self._expiries: list[tuple[int, bytes, int]] = []  # heap, one entry per member of _seen

    async def check_and_remember(self, transfer_id: bytes, hop: int, ttl_ms: int) -> bool:
        now = self._clock()
        while self._expiries and self._expiries[0][0] <= now:
            _, old_transfer, old_hop = heapq.heappop(self._expiries)
            self._seen.discard((old_transfer, old_hop))
        if (transfer_id, hop) in self._seen:
            return False
        self._seen.add((transfer_id, hop))
        heapq.heappush(self._expiries, (now + max(ttl_ms, 1), transfer_id, hop))
        return True


class RedisReplayGuard:
    """Guard shared by every process of a gateway: an atomic ``SET NX PX`` per pair.

    ``command`` runs one Redis command, e.g. ``redis.asyncio.Redis.execute_command`` or the gateway's
    gated ``RedisBackend.command``, so the guard shares the pools' connection limit and error mapping.
    """

    def __init__(self, command: Callable[..., Awaitable[Any]], prefix: str = "qkdr") -> None:
        self._command = command
        self._prefix = prefix

    def key_name(self, transfer_id: bytes, hop: int) -> str:
        return f"{self._prefix}:{{replay}}:{transfer_id.hex()}:{hop}"

    async def check_and_remember(self, transfer_id: bytes, hop: int, ttl_ms: int) -> bool:
        stored = await self._command("SET", self.key_name(transfer_id, hop), b"1", "NX", "PX", max(ttl_ms, 1))
        return bool(stored)
