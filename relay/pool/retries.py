"""A queue of retries in Redis, shared by a gateway's replicas: what one replica failed to do, any can retry.

Each entry is an opaque body (the caller encodes it), a deadline and the delay before its next attempt,
which doubles after each one (``Script.RETRY_*``, Redis time, so replicas with skewed clocks agree). An
entry is *claimed* before it is attempted: the claim moves its due time forward by the claim's hold, in
the same script that finds it due, so two claimers never get the same entry at the same time, and one that
dies mid-attempt lets the entry come due again when the hold runs out. Only the current claimer settles
it. The entry hashes and the due set share one hash tag (:meth:`relay.pool.keys.Keyspace.ack_retries`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from relay.pool.connection import RedisBackend
from relay.pool.scripts import Script


class Attempt(StrEnum):
    """How an attempt at an entry ended."""

    DONE = "done"  # succeeded: nothing left to do
    AGAIN = "again"  # failed: retry after the entry's delay, unless that passes its deadline
    DROP = "drop"  # failed for good: a retry would fail the same way


class Settled(StrEnum):
    REMOVED = "removed"  # done or dropped
    SCHEDULED = "scheduled"  # due again after its delay
    EXHAUSTED = "exhausted"  # no retry left before the deadline: removed, the caller gives up
    LOST = "lost"  # another claimer holds it now (our hold ran out): it settles it, not us


@dataclass(frozen=True)
class Claimed:
    entry_id: str
    body: bytes
    remaining_s: float  # until its deadline; at or below 0 no attempt is left


class RetryQueue:
    def __init__(self, backend: RedisBackend, prefix: str, *, kept_after_deadline_s: float = 600.0) -> None:
        """``prefix`` (one hash tag) names the due set (``+ "due"``) and the entries (``+ "e:" + id``); an entry
        nobody settles (every replica down) disappears ``kept_after_deadline_s`` after its deadline."""
        self._backend = backend
        self._due = prefix + "due"
        self._entries = prefix + "e:"
        self._kept_ms = round(kept_after_deadline_s * 1000)

    async def add(self, body: bytes, *, remaining_s: float, first_delay_s: float) -> str:
        """Queue ``body`` for attempts from ``first_delay_s`` on, until ``remaining_s`` from now; its ID."""
        entry_id = uuid.uuid4().hex
        remaining_ms, delay_ms = max(1, round(remaining_s * 1000)), max(1, round(first_delay_s * 1000))
        args: list[str | bytes | int] = [self._entries, entry_id, body, remaining_ms, delay_ms, self._kept_ms]
        await self._backend.run(Script.RETRY_ADD, [self._due], args)
        return entry_id

    async def claim(self, claimer: str, hold_s: float, limit: int) -> list[Claimed]:
        """Up to ``limit`` due entries, each ours (not due for anyone else) for ``hold_s``."""
        args: list[str | bytes | int] = [self._entries, claimer, max(1, round(hold_s * 1000)), limit]
        flat = await self._backend.run(Script.RETRY_CLAIM, [self._due], args)
        return [
            Claimed(entry_id.decode(), body, int(remaining_ms) / 1000)
            for entry_id, body, remaining_ms in zip(flat[::3], flat[1::3], flat[2::3], strict=True)
        ]

    async def settle(self, claimer: str, entry_id: str, attempt: Attempt) -> Settled:
        args = [self._entries, claimer, entry_id, attempt.value]
        answer = await self._backend.run(Script.RETRY_SETTLE, [self._due], args)
        return Settled(answer.decode())
