"""Replay guards: each signed message ID (a frame's frame_id, a void's nonce) is accepted at most once
while its timestamp is still fresh.

:func:`relay.crypto.frame.open_frame` and :func:`relay.crypto.void.verify_void` ask the guard only after
the signature verified (so forged messages cannot burn IDs) and pass how long the message could still pass
the freshness check; the guard must remember the ID at least that long. After that the time window alone
refuses the message. Frame IDs are 16 bytes and void nonces 32, so the two never share an ID.

Redis key names are ``<prefix>:{replay}:<message ID hex>`` (the prefix is the gateway's namespace, as in
``relay.pool.keys``): public identifiers only, never secrets.
"""

import heapq
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from relay.crypto.clock import Clock


class ReplayGuard(Protocol):
    async def check_and_remember(self, message_id: bytes, ttl_ms: int) -> bool:
        """True the first time an ID is seen (and remember it for ``ttl_ms``); False on a replay."""
        ...


class MemoryReplayGuard:
    """Process-local guard for tests and single-process deployments; expired pairs are purged lazily."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._seen: set[bytes] = set()
        self._expiries: list[tuple[int, bytes]] = []  # heap, one entry per member of _seen

    async def check_and_remember(self, message_id: bytes, ttl_ms: int) -> bool:
        now = self._clock()
        while self._expiries and self._expiries[0][0] <= now:
            _, old = heapq.heappop(self._expiries)
            self._seen.discard(old)
        if message_id in self._seen:
            return False
        self._seen.add(message_id)
        heapq.heappush(self._expiries, (now + max(ttl_ms, 1), message_id))
        return True


class RedisReplayGuard:
    """Guard shared by every process of a gateway: an atomic ``SET NX PX`` per ID.

    ``command`` runs one Redis command, e.g. ``redis.asyncio.Redis.execute_command`` or the gateway's
    gated ``RedisBackend.command``, so the guard shares the pools' connection limit and error mapping.
    """

    def __init__(self, command: Callable[..., Awaitable[Any]], prefix: str = "qkdr") -> None:
        self._command = command
        self._prefix = prefix

    def key_name(self, message_id: bytes) -> str:
        return f"{self._prefix}:{{replay}}:{message_id.hex()}"

    async def check_and_remember(self, message_id: bytes, ttl_ms: int) -> bool:
        stored = await self._command("SET", self.key_name(message_id), b"1", "NX", "PX", max(ttl_ms, 1))
        return bool(stored)
