"""One connection abstraction over a standalone Redis or a Redis Cluster, with one failure type.

Pool code runs Lua scripts through :class:`RedisBackend` and nothing else, so it neither knows nor cares
which kind of deployment it talks to, and every way Redis can fail to serve (refused connection, timeout,
AOF still loading, cluster down or resharding) surfaces as :class:`PoolUnavailable`, which the gateway
answers with 503. A semaphore bounds the commands in flight: a burst of a thousand SAE requests then
queues in the process instead of opening a thousand sockets (the cluster client refuses beyond its
per-node limit).

A gateway authenticates as its own Redis user (``username``/``password``; credentials in the URL win) and,
with a ``rediss://`` URL, over TLS: the server is verified against ``tls.ca_file`` and the gateway shows
its own certificate (``tls.cert_file``/``tls.key_file``) for servers that require client certificates.

With Redis replicas, ``wait_replicas`` > 0 makes every write (each script, each plain command but the
reads in :data:`READ_ONLY_COMMANDS`) wait until that many replicas hold it, at most ``wait_timeout_ms``
(:mod:`relay.pool.confirmed_writes`); otherwise the call fails with :class:`WriteNotConfirmed`, so a take
that returned cannot reappear when a replica is promoted. With 0 (the default) no ``WAIT`` is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript

from relay.pool.confirmed_writes import ConfirmedWrites
from relay.pool.errors import PoolUnavailable, WriteNotConfirmed
from relay.pool.scripts import Script

_UNAVAILABLE = (
    redis_errors.ConnectionError,  # includes BusyLoadingError (AOF loading after a restart)
    redis_errors.TimeoutError,
    redis_errors.ClusterError,  # CLUSTERDOWN (MasterDownError too), redirects exhausted
    redis_errors.AskError,  # includes MovedError: a slot in migration, or a MOVED that was not followed
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,
    redis_errors.RedisClusterException,  # no reachable startup node, slot not covered
    TimeoutError,
)
# Plain commands that write nothing, hence need no WAIT (a name, or a name and its subcommand)
READ_ONLY_COMMANDS = frozenset({"GET", "MGET", "EXISTS", "PING", "CONFIG GET"})


@dataclass(frozen=True)
class RedisTls:
    """Files for ``rediss://``: the CA that issued the server's certificate, and the client's own."""

    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class RedisConfig:
    """Where the pools live. ``cluster`` selects the Cluster client; ``url`` then names any one node."""

    url: str = "redis://127.0.0.1:6379/0"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: RedisTls | None = None  # used when ``url`` is rediss://
    cluster: bool = False
    max_in_flight: int = 64
    socket_timeout_s: float = 2.0
    connect_timeout_s: float = 2.0
    retries: int = 1  # re-sending a script can only burn a key, never deliver one twice
    wait_replicas: int = 0  # replicas that must hold a write before it returns (0: no WAIT)
    wait_timeout_ms: int = 500  # how long a write waits for them; then WriteNotConfirmed (503)

    def __post_init__(self) -> None:
        if self.max_in_flight < 1 or self.retries < 0:
            raise ValueError("max_in_flight must be positive and retries non-negative")
        if self.wait_replicas < 0:
            raise ValueError("wait_replicas must not be negative")
        if self.wait_replicas and not 0 < self.wait_timeout_ms < self.socket_timeout_s * 1000:
            # WAIT 0 blocks forever; a WAIT longer than the socket timeout fails as a broken connection
            raise ValueError("wait_timeout_ms must be positive and shorter than the socket timeout")


@dataclass
class BackendMetrics:
    unavailable: int = 0
    unconfirmed: int = 0  # writes fewer than wait_replicas replicas confirmed in time (answered 503)


@dataclass
class RedisBackend:
    """Runs the pool scripts; create with :meth:`connect`, close with :meth:`close` (or ``async with``)."""

    client: Redis | RedisCluster
    config: RedisConfig
    metrics: BackendMetrics = field(default_factory=BackendMetrics)

    def __post_init__(self) -> None:
        self._gate = asyncio.Semaphore(self.config.max_in_flight)
        self._scripts: dict[Script, AsyncScript] = {s: self.client.register_script(s.value) for s in Script}
        self._confirmed = (
            ConfirmedWrites(self.client, self.config.wait_replicas, self.config.wait_timeout_ms, self.where)
            if self.config.wait_replicas
            else None
        )

    @classmethod
    def connect(cls, config: RedisConfig) -> RedisBackend:
        """Connections are opened lazily, so this never fails for an unreachable Redis; the first call does."""
        options: dict[str, Any] = {
            "socket_timeout": config.socket_timeout_s,
            "socket_connect_timeout": config.connect_timeout_s,
            "retry": Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), config.retries),
            "max_connections": config.max_in_flight,  # per node for the cluster; the gate never exceeds it
        }
        if config.username is not None:
            options.update(username=config.username, password=config.password)
        if config.tls is not None and config.url.startswith("rediss://"):
            options.update(
                ssl_ca_certs=str(config.tls.ca_file),
                ssl_certfile=str(config.tls.cert_file),
                ssl_keyfile=str(config.tls.key_file),
            )
        client: Redis | RedisCluster
        if config.cluster:
            client = RedisCluster.from_url(config.url, **options)
        else:
            client = Redis.from_url(config.url, **options)
        return cls(client, config)

    @property
    def where(self) -> str:
        kind = "Redis Cluster" if self.config.cluster else "Redis"
        return f"{kind} at {_without_password(self.config.url)}"

    async def __aenter__(self) -> RedisBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.client.aclose()

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[str | bytes | int]) -> Any:
        if self._confirmed is None:
            return await self._guarded(self._scripts[script](keys=keys, args=args))
        return await self._guarded(self._confirmed.script(self._scripts[script].sha, script.value, keys, args))

    async def command(self, *args: str | bytes | int) -> Any:
        """One plain single-key command (e.g. ``SET name value NX PX ttl``), gated and mapped like scripts."""
        if self._confirmed is None or _is_read_only(args):
            return await self._guarded(self.client.execute_command(*args))
        return await self._guarded(self._confirmed.command(*args))

    async def _guarded(self, call: Awaitable[Any]) -> Any:
        async with self._gate:
            try:
                return await call
            except WriteNotConfirmed:
                self.metrics.unconfirmed += 1
                raise
            except _UNAVAILABLE as exc:
                self.metrics.unavailable += 1
                message = f"key pool storage unavailable ({self.where}): {type(exc).__name__}: {exc}"
                raise PoolUnavailable(message) from exc


def _is_read_only(args: Sequence[str | bytes | int]) -> bool:
    words = [(word.decode() if isinstance(word, bytes) else str(word)).upper() for word in args[:2]]
    return words[0] in READ_ONLY_COMMANDS or " ".join(words) in READ_ONLY_COMMANDS


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url
