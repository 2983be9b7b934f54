"""Is the pools' Redis durable: does it fsync every write to its append-only file before answering?

A key is acknowledged (014 ``enc_keys`` answered, 020 ``relayed``, a hop confirmed) only after the
writes it depends on returned. That promise survives a power loss only if Redis wrote and fsynced them
first: ``appendonly yes`` with ``appendfsync always``. With ``everysec`` up to a second of acknowledged
writes vanish with the page cache, and the restarted Redis can hand out a key again or have lost one
its master already holds. Redis cannot be made to refuse the other settings, so the gateway reads them
at start-up (:func:`read_durability`) and warns loudly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors

from relay.pool.connection import RedisBackend

UNKNOWN = "unknown"


@dataclass(frozen=True)
class RedisDurability:
    appendonly: str
    appendfsync: str

    @property
    def durable(self) -> bool:
        return self.appendonly == "yes" and self.appendfsync == "always"

    def __str__(self) -> str:
        return f"appendonly {self.appendonly}, appendfsync {self.appendfsync}"


async def read_durability(backend: RedisBackend) -> RedisDurability:
    """``CONFIG GET`` both settings (on every node of a cluster: the least durable one counts).

    A Redis that refuses ``CONFIG GET`` (no permission, a managed service renaming it) cannot be verified
    and is reported as ``unknown``, which is not durable. An unreachable one raises ``PoolUnavailable``.
    """
    try:
        reply = await backend.command("CONFIG", "GET", "appendonly", "appendfsync")
    except redis_errors.ResponseError:
        return RedisDurability(UNKNOWN, UNKNOWN)
    nodes = [_settings(r) for r in reply.values()] if _is_per_node(reply) else [_settings(reply)]
    found = [RedisDurability(n.get("appendonly", UNKNOWN), n.get("appendfsync", UNKNOWN)) for n in nodes]
    return next((d for d in found if not d.durable), found[0])


def _is_per_node(reply: Any) -> bool:
    return isinstance(reply, Mapping) and any(not isinstance(v, (str, bytes)) for v in reply.values())


def _settings(reply: Mapping[Any, Any] | Sequence[Any]) -> dict[str, str]:
    pairs = list(reply.items()) if isinstance(reply, Mapping) else list(zip(reply[::2], reply[1::2], strict=True))
    return {_text(name): _text(value).lower() for name, value in pairs}


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
