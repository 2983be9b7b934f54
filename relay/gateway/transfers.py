"""The receiving gateway's record of each frame, so a retried frame is answered, never processed twice.

A sender retries a frame with the very same sealed bytes when it got no answer. The replay guard refuses
that frame a second time, and the QKD keys it names are already spent, so the receiver must remember how
the first attempt ended: ``done`` (answer again with the same outcomes and confirmation), ``failed`` (the
sender voids its keys and starts over with fresh ones), or ``pending``. A pending record names the replica
instance running the attempt (:class:`relay.pool.replicas.ReplicaInstance`): it is alive while the
attempt runs there, and that replica is alive (:class:`relay.pool.replicas.ReplicaLiveness`); one left
behind by a crash, a dead replica or a lost Redis write is dead, and becomes ``failed``: its QKD keys are
spent, and the sender voids and retries with fresh ones. :meth:`TransferLog.answer_once` applies this to
one received frame. One record per frame, not per key: a frame of 512 keys costs one record.

**Never executed twice, never two outcomes.** Only the replica whose claim created a record runs the
attempt; any later claim answers from the record. Leaving ``pending`` is a compare-and-set on the record
(:data:`relay.pool.scripts.Script.TRANSFER_SETTLE`): the owner's ``done`` or ``failed`` is written only
over its own ``pending``, and another replica's ``failed`` only over the ``pending`` of an owner it saw
dead. So if a replica taken for dead (stalled past its liveness) finishes late, its ``done`` is refused,
it answers failed like everyone else, and the sender, told failed, voids the keys the attempt stored. The
liveness read and the compare-and-set are two steps because the record and the owner's liveness key are
in different Cluster slots; the compare-and-set alone decides, the liveness read only spares live owners.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from relay.crypto import DEFAULT_WINDOW_MS
from relay.gateway.errors import RelayFailed, TransferInProgress
from relay.gateway.hops import FrameAnswer
from relay.pool import PoolUnavailable, RedisBackend
from relay.pool.replicas import ReplicaLiveness
from relay.pool.scripts import Script

INTERRUPTED = "an earlier attempt was interrupted"


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
        self,
        backend: RedisBackend,
        prefix: str,
        *,
        gateway_id: str,
        liveness: ReplicaLiveness,
        hop_window_s: float = DEFAULT_WINDOW_MS / 1000,
    ) -> None:
        self._backend = backend
        self._gateway_id = gateway_id
        self._prefix = prefix
        self.ttl_ms = max(1, round(2 * hop_window_s * 1000))
        self._liveness = liveness
        self._instance = liveness.instance.token  # tells our pending records from another replica's
        self._active: set[tuple[str, bytes]] = set()

    async def answer_once(
        self, sender: str, frame_digest: bytes, attempt: Callable[[], Awaitable[FrameAnswer]]
    ) -> FrameAnswer:
        """Run ``attempt`` for the first delivery of a frame (``frame_digest``: the digest of its sealed bytes);
        answer a repeated one from its record. An attempt whose record another replica failed meanwhile
        is answered as failed, as that replica answers it."""
        earlier = await self.claim(sender, frame_digest)
        if earlier is not None:
            if earlier.answer is not None:
                return earlier.answer
            if earlier.state is TransferState.PENDING:
                raise TransferInProgress(f"frame {frame_digest.hex()} is being processed")
            raise self._failed(frame_digest, earlier)
        try:
            result = await attempt()
        except BaseException as exc:
            await asyncio.shield(self.fail(sender, frame_digest, type(exc).__name__))
            raise
        settled = await self.finish(sender, frame_digest, result)
        if settled.answer is None:
            raise self._failed(frame_digest, settled)
        return result

    async def claim(self, sender: str, frame_digest: bytes) -> TransferRecord | None:
        """None if this call now owns the transfer; otherwise how an earlier attempt stands.

        A live attempt (ours, or a live replica's) answers PENDING; a dead one is turned into FAILED first.
        """
        name = self._name(sender, frame_digest)
        if await self._backend.command("SET", name, f"pending:{self._instance}", "NX", "PX", self.ttl_ms):
            self._active.add((sender, frame_digest))
            return None
        record = _decode(await self._backend.command("GET", name))
        if record.state is TransferState.PENDING and not await self._is_live(sender, frame_digest, record):
            record = await self._settle(name, record.owner, f"failed:{INTERRUPTED}")
        return record

    async def finish(self, sender: str, frame_digest: bytes, answer: FrameAnswer) -> TransferRecord:
        """Record ``done``, unless another replica failed the record meanwhile: returns the record as it
        stands, FAILED then, and the attempt's outcome is that failure."""
        encoded = f"{base64.b64encode(answer.confirmation).decode()}:{base64.b64encode(answer.outcomes).decode()}"
        try:
            return await self._settle(self._name(sender, frame_digest), self._instance, f"done:{encoded}")
        finally:
            self._active.discard((sender, frame_digest))

    async def fail(self, sender: str, frame_digest: bytes, reason: str) -> None:
        """Best effort: if Redis is down the record stays pending, and the next claim finds it dead. A record
        another replica already failed keeps its reason."""
        try:
            await self._settle(self._name(sender, frame_digest), self._instance, f"failed:{reason[:200]}")
        except PoolUnavailable:
            pass
        finally:
            self._active.discard((sender, frame_digest))

    async def _is_live(self, sender: str, frame_digest: bytes, record: TransferRecord) -> bool:
        if record.owner == self._instance:
            return (sender, frame_digest) in self._active
        return await self._liveness.is_alive(record.owner)

    async def _settle(self, name: str, owner: str, value: str) -> TransferRecord:
        """Write ``value`` if the record is still ``pending:<owner>``; the record as it stands afterwards."""
        written, *held = await self._backend.run(
            Script.TRANSFER_SETTLE, [name], [f"pending:{owner}", value, self.ttl_ms]
        )
        return _decode(value.encode() if written else held[0] if held else None)

    def _failed(self, frame_digest: bytes, record: TransferRecord) -> RelayFailed:
        return RelayFailed(f"frame {frame_digest.hex()} failed at {self._gateway_id}: {record.reason}", retryable=True)

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
