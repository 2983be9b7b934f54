"""The transfer log of two replicas of one gateway on one real Redis: a frame is executed by one replica
only, a dead replica's pending frame is resolved as failed, and a replica taken for dead that finishes
late cannot turn that failure into done."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from relay.gateway.errors import RelayFailed, TransferInProgress
from relay.gateway.hops import FrameAnswer
from relay.gateway.transfers import INTERRUPTED, TransferLog, TransferState
from relay.pool import RedisBackend, RedisConfig
from relay.pool.replicas import ReplicaInstance, ReplicaLiveness
from tests.support.redis_servers import RedisServer
from tests.support.waiting import wait_until

SHORT_TTL_MS = 300  # a replica that stops beating is taken for dead this soon
ANSWER = FrameAnswer(b"\x00outcomes", b"\x01confirmation")


@pytest.fixture
async def backend(private_redis: RedisServer) -> AsyncIterator[RedisBackend]:
    async with RedisBackend.connect(RedisConfig(private_redis.admin_url)) as connected:
        yield connected


def replica(backend: RedisBackend) -> tuple[ReplicaLiveness, TransferLog]:
    liveness = ReplicaLiveness(backend, "t", ReplicaInstance.new(), ttl_ms=SHORT_TTL_MS)
    return liveness, TransferLog(backend, "t", gateway_id="GW2", liveness=liveness)


async def dead(liveness: ReplicaLiveness) -> None:
    """Wait until ``liveness``'s key expired (its replica stopped beating)."""

    async def gone() -> bool:
        return not await liveness.is_alive(liveness.instance.token)

    await wait_until(gone, timeout_s=10, what="liveness key expired")


async def test_a_live_replicas_pending_frame_stays_pending_to_another_replica(backend: RedisBackend) -> None:
    a_liveness, a = replica(backend)
    _, b = replica(backend)
    beating = asyncio.create_task(a_liveness.run(interval_s=0.05))
    try:
        frame = os.urandom(32)
        assert await a.claim("GW1", frame) is None
        for _ in range(3):  # across several of A's liveness periods
            record = await b.claim("GW1", frame)
            assert record is not None and record.state is TransferState.PENDING
            await asyncio.sleep(SHORT_TTL_MS / 1000)
        settled = await a.finish("GW1", frame, ANSWER)
        assert (settled.state, settled.answer) == (TransferState.DONE, ANSWER)
        record = await b.claim("GW1", frame)
        assert record is not None and (record.state, record.answer) == (TransferState.DONE, ANSWER)
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)


async def test_a_dead_replicas_pending_frame_turns_failed_and_its_late_finish_does_not_undo_that(
    backend: RedisBackend,
) -> None:
    a_liveness, a = replica(backend)
    _, b = replica(backend)
    await a_liveness.beat()
    frame = os.urandom(32)
    assert await a.claim("GW1", frame) is None
    record = await b.claim("GW1", frame)
    assert record is not None and record.state is TransferState.PENDING
    await dead(a_liveness)  # A stalls past its liveness (or died)
    record = await b.claim("GW1", frame)
    assert record is not None and (record.state, record.reason) == (TransferState.FAILED, INTERRUPTED)
    late = await a.finish("GW1", frame, ANSWER)
    assert (late.state, late.answer) == (TransferState.FAILED, None)
    assert (await backend.command("GET", f"t:xfer:GW1:{frame.hex()}")).startswith(b"failed:")
    await a.fail("GW1", frame, "Late")  # nor does a late failure change the reason
    record = await b.claim("GW1", frame)
    assert record is not None and (record.state, record.reason) == (TransferState.FAILED, INTERRUPTED)


async def test_a_cleanly_stopped_replicas_frames_fail_at_once(backend: RedisBackend) -> None:
    a_liveness, a = replica(backend)
    _, b = replica(backend)
    await a_liveness.beat()
    frame = os.urandom(32)
    assert await a.claim("GW1", frame) is None
    await a_liveness.retire()
    record = await b.claim("GW1", frame)
    assert record is not None and record.state is TransferState.FAILED


async def test_a_frame_is_executed_once_whichever_replica_the_retry_reaches(backend: RedisBackend) -> None:
    """A retry that reaches B while A works is refused as in progress, then answered from A's record; one
    that reaches B after A died is answered failed, and A, finishing late, answers failed too."""
    a_liveness, a = replica(backend)
    _, b = replica(backend)
    await a_liveness.beat()
    runs: list[str] = []
    release = asyncio.Event()

    async def attempt_at(name: str) -> FrameAnswer:
        runs.append(name)
        await release.wait()
        return ANSWER

    frame = os.urandom(32)
    at_a = asyncio.create_task(a.answer_once("GW1", frame, lambda: attempt_at("A")))
    await wait_until(lambda: runs, timeout_s=10, what="A's attempt started")
    with pytest.raises(TransferInProgress):
        await b.answer_once("GW1", frame, lambda: attempt_at("B"))
    await dead(a_liveness)
    with pytest.raises(RelayFailed) as at_b:
        await b.answer_once("GW1", frame, lambda: attempt_at("B"))
    assert at_b.value.retryable
    release.set()
    with pytest.raises(RelayFailed):
        await at_a
    assert runs == ["A"]
