"""Writes confirmed by Redis replicas before anyone acts on them: the write, then ``WAIT``, on one connection.

Redis replicates asynchronously: a master can answer a take, die, and have a replica promoted that never
saw it, so the promoted replica hands the key out again. ``WAIT n timeout`` blocks until ``n`` replicas
acknowledged every write *of the connection it is sent on*, hence the write and its ``WAIT`` go out
together on one connection: a non-transactional pipeline for a standalone Redis; for a Redis Cluster a
pipeline on one connection of the node that owns the key's slot (the cluster client would route a keyless
``WAIT`` to any node). The invariant: a write whose caller returns was held by at least ``n`` replicas.
When fewer confirmed it in time, :class:`WriteNotConfirmed` says so (the gateway answers 503); the write
itself stays, which at worst burns keys nobody was given.

Scripts go out as ``EVALSHA``; a node without the script (a replica promoted since it was loaded: script
caches are not replicated) answers ``NOSCRIPT`` without running anything, and the same pipeline is sent
again behind ``SCRIPT LOAD``. In a cluster a ``MOVED`` reply (the slot changed owner; the write did not
run) updates the client's slot map and is followed once; connection failures and ``CLUSTERDOWN`` make the
next call refresh the slot map first, so calls fail cleanly during a failover and succeed once a replica
is promoted. Every other error reply is raised as Redis gave it, for the backend to classify.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.cluster import PipelineCommand, RedisCluster

from relay.pool.errors import WriteNotConfirmed

Command = tuple[str | bytes | int, ...]
Key = str | bytes  # a Redis name; its slot picks the cluster node
_MOVES_FOLLOWED = 1  # a second MOVED in a row: the cluster is still settling; the caller gets 503


class _Sender(Protocol):
    async def send(self, key: Key, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` in order on one connection that serves ``key``; a reply per command, errors as values."""
        ...


class _StandaloneSender:
    def __init__(self, client: Redis) -> None:
        self._client = client

    async def send(self, key: Key, commands: Sequence[Command]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipeline:  # one pooled connection throughout
            for command in commands:
                pipeline.execute_command(*command)
            return await pipeline.execute(raise_on_error=False)


class _ClusterSender:
    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._stale = False  # the slot map may name a dead or demoted master: refresh before the next call

    async def send(self, key: Key, commands: Sequence[Command]) -> list[Any]:
        if self._stale:
            await self._client.nodes_manager.initialize()  # concurrent callers wait for one refresh
            self._stale = False
        await self._client.initialize()  # connects on the first call; a no-op afterwards
        slot = self._client.keyslot(key)
        for _ in range(_MOVES_FOLLOWED):
            replies = await self._on_owner(slot, commands)
            moved = _moved(replies)
            if moved is None:
                return replies
            await self._client.nodes_manager.move_slot(moved)
        return await self._on_owner(slot, commands)  # its MOVED, if any, is raised as an error reply

    async def _on_owner(self, slot: int, commands: Sequence[Command]) -> list[Any]:
        node = self._client.nodes_manager.get_node_from_slot(slot)  # SlotNotCoveredError if nobody owns it
        pipeline = [PipelineCommand(position, *command) for position, command in enumerate(commands)]
        try:
            await node.execute_pipeline(pipeline)
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, TimeoutError):
            self._stale = True  # the node is unreachable or its connection broke mid-reply
            raise
        replies = [command.result for command in pipeline]
        if any(isinstance(reply, redis_errors.ClusterError) for reply in replies):
            self._stale = True  # CLUSTERDOWN: a failover is under way
        return replies


def _moved(replies: Sequence[Any]) -> redis_errors.MovedError | None:
    return next((reply for reply in replies if isinstance(reply, redis_errors.MovedError)), None)


class ConfirmedWrites:
    """Runs writes and confirms each with ``WAIT replicas timeout_ms`` on the connection that made it."""

    def __init__(self, client: Redis | RedisCluster, replicas: int, timeout_ms: int, where: str) -> None:
        self._sender: _Sender = (
            _ClusterSender(client) if isinstance(client, RedisCluster) else _StandaloneSender(client)
        )
        self.replicas = replicas
        self.timeout_ms = timeout_ms
        self._where = where  # for messages: "Redis at redis://host:port/0"

    async def script(self, sha: str, body: str, keys: Sequence[str], args: Sequence[str | bytes | int]) -> Any:
        """``EVALSHA`` of the script with ``sha``; loaded from ``body`` where the node does not have it."""
        if not keys:
            raise ValueError("a confirmed script needs a key to find its node")
        evalsha: Command = ("EVALSHA", sha, len(keys), *keys, *args)
        replies = await self._sender.send(keys[0], [evalsha, self._wait])
        if isinstance(replies[0], redis_errors.NoScriptError):
            replies = (await self._sender.send(keys[0], [("SCRIPT", "LOAD", body), evalsha, self._wait]))[1:]
        return self._confirmed(*replies)

    async def command(self, *args: str | bytes | int) -> Any:
        """One single-key (or single-slot) write command, routed by its first key (``args[1]``)."""
        key = args[1]
        if isinstance(key, int):
            raise TypeError(f"{args[0]!r}: a confirmed command needs a key name as its first argument")
        return self._confirmed(*await self._sender.send(key, [args, self._wait]))

    @property
    def _wait(self) -> Command:
        return ("WAIT", self.replicas, self.timeout_ms)

    def _confirmed(self, reply: Any, acknowledged: Any) -> Any:
        for outcome in (reply, acknowledged):
            if isinstance(outcome, Exception):
                raise outcome
        if acknowledged < self.replicas:
            plural = "" if self.replicas == 1 else "s"
            raise WriteNotConfirmed(
                f"write not confirmed by {self.replicas} Redis replica{plural} within {self.timeout_ms} ms "
                f"({acknowledged} did; {self._where})"
            )
        return reply
