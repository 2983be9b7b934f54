"""The receiving gateway's record of each frame, so a retried frame is answered, never processed twice.

A sender retries a frame with the very same sealed bytes when it got no answer. The replay guard refuses
that frame a second time, and the QKD keys it names are already spent, so the receiver must remember how
the first attempt ended: ``done`` (answer again with the same outcomes and confirmation), ``failed`` (the
sender voids its keys and starts over with fresh ones), or ``pending``. A pending record is alive only
while the attempt runs in this process; one left behind by a crash or a lost Redis write is dead, and
becomes ``failed``. :meth:`TransferLog.answer_once` applies this to one received frame. One record per
frame, not per key: a frame of 512 keys costs one record.

A record is named by the digest of the sealed bytes, not by the frame_id in them: a retry is the very
same bytes, while a frame that copies a genuine frame_id but fails to verify (tampered, or re-labelled)
differs somewhere, so its failure is recorded apart and never answers for the genuine frame.

Records live in the gateway's Redis under ``<prefix>:xfer:<sender>:<frame digest hex>`` (public IDs and
outcomes only) and expire twice the hop freshness window after they were last written (240 s by default):
a frame claimed at ``c`` passed, or will fail, the freshness check ``|now - timestamp| <= window``, so
every retry of it that could still be accepted arrives before ``timestamp + window <= c + 2 * window``;
later ones are refused as stale whatever the log says, and the sender has given up long before (its
deadline is a few hop timeouts).
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from relay.crypto import DEFAULT_WINDOW_MS
from relay.gateway.errors import RelayFailed, TransferInProgress
from relay.gateway.hops import FrameAnswer
from relay.pool import PoolUnavailable, RedisBackend


class TransferState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class TransferRecord:
    state: TransferState
    answer: FrameAnswer | None = None
    reason: str = ""
    owner: str = ""  # the process instance running a pending attempt


class TransferLog:
    def __init__(
        self, backend: RedisBackend, prefix: str, *, gateway_id: str, hop_window_s: float = DEFAULT_WINDOW_MS / 1000
    ) -> None:
        self._backend = backend
        self._gateway_id = gateway_id
        self._prefix = prefix
        self.ttl_ms = max(1, round(2 * hop_window_s * 1000))
        self._instance = os.urandom(8).hex()  # tells this process's pending records from a dead one's
        self._active: set[tuple[str, bytes]] = set()

    async def answer_once(
        self, sender: str, frame_digest: bytes, attempt: Callable[[], Awaitable[FrameAnswer]]
    ) -> FrameAnswer:
        """Run ``attempt`` for the first delivery of a frame (``frame_digest``: the digest of its sealed bytes);
        answer a repeated one from its record."""
        earlier = await self.claim(sender, frame_digest)
        if earlier is not None:
            if earlier.answer is not None:
                return earlier.answer
            if earlier.state is TransferState.PENDING:
                raise TransferInProgress(f"frame {frame_digest.hex()} is being processed")
            raise RelayFailed(
                f"frame {frame_digest.hex()} failed at {self._gateway_id}: {earlier.reason}", retryable=True
            )
        try:
            result = await attempt()
        except BaseException as exc:
            await asyncio.shield(self.fail(sender, frame_digest, type(exc).__name__))
            raise
        await self.finish(sender, frame_digest, result)
        return result

    async def claim(self, sender: str, frame_digest: bytes) -> TransferRecord | None:
        """None if this call now owns the transfer; otherwise how an earlier attempt stands.

        A live attempt of this process answers PENDING; a dead one is turned into FAILED first.
        """
        name = self._name(sender, frame_digest)
        if await self._backend.command("SET", name, f"pending:{self._instance}", "NX", "PX", self.ttl_ms):
            self._active.add((sender, frame_digest))
            return None
        record = _decode(await self._backend.command("GET", name))
        if record.state is TransferState.PENDING and not self._is_live(sender, frame_digest, record):
            record = TransferRecord(TransferState.FAILED, reason="an earlier attempt was interrupted")
            await self._write(sender, frame_digest, f"failed:{record.reason}")
        return record

    async def finish(self, sender: str, frame_digest: bytes, answer: FrameAnswer) -> None:
        encoded = f"{base64.b64encode(answer.confirmation).decode()}:{base64.b64encode(answer.outcomes).decode()}"
        try:
            await self._write(sender, frame_digest, f"done:{encoded}")
        finally:
            self._active.discard((sender, frame_digest))

    async def fail(self, sender: str, frame_digest: bytes, reason: str) -> None:
        """Best effort: if Redis is down the record stays pending, and the next claim finds it dead."""
        try:
            await self._write(sender, frame_digest, f"failed:{reason[:200]}")
        except PoolUnavailable:
            pass
        finally:
            self._active.discard((sender, frame_digest))

    def _is_live(self, sender: str, frame_digest: bytes, record: TransferRecord) -> bool:
        return record.owner == self._instance and (sender, frame_digest) in self._active

    async def _write(self, sender: str, frame_digest: bytes, value: str) -> None:
        await self._backend.command("SET", self._name(sender, frame_digest), value, "PX", self.ttl_ms)

    def _name(self, sender: str, frame_digest: bytes) -> str:
        """Per sender: a neighbour that copies another's frame cannot claim (and so fail) its record."""
        return f"{self._prefix}:xfer:{sender}:{frame_digest.hex()}"


def _decode(raw: bytes | None) -> TransferRecord:
    """A record that vanished between SET NX and GET (expiry) is reported as failed, never as done."""
    if raw is None:
        return TransferRecord(TransferState.FAILED, reason="the transfer record expired")
    state, _, rest = raw.decode().partition(":")
    if state == TransferState.DONE:
        confirmation, _, outcomes = rest.partition(":")
        return TransferRecord(
            TransferState.DONE, FrameAnswer(base64.b64decode(outcomes), base64.b64decode(confirmation))
        )
    if state == TransferState.PENDING:
        return TransferRecord(TransferState.PENDING, owner=rest)
    return TransferRecord(TransferState.FAILED, reason=rest)
