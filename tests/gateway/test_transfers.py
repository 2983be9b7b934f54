"""The receiver's transfer log against a real Redis: a retried hop is answered, never processed twice."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from relay.gateway.hops import FrameAnswer
from relay.gateway.transfers import TransferLog, TransferState
from relay.pool import PoolUnavailable, RedisBackend, RedisConfig
from relay.pool.replicas import ReplicaInstance, ReplicaLiveness
from tests.support.redis_servers import RedisServer


@pytest.fixture
async def backend(private_redis: RedisServer) -> AsyncIterator[RedisBackend]:
    async with RedisBackend.connect(RedisConfig(private_redis.admin_url)) as connected:
        yield connected


def transfer_log(backend: RedisBackend, **settings: float) -> TransferLog:
    """The log of one replica instance (its liveness key is not kept alive unless the test beats it)."""
    liveness = ReplicaLiveness(backend, "t", ReplicaInstance.new())
    return TransferLog(backend, "t", gateway_id="GW2", liveness=liveness, **settings)


async def test_a_finished_frame_answers_retries_with_the_same_outcomes_and_confirmation(
    backend: RedisBackend,
) -> None:
    log = transfer_log(backend)
    frame = os.urandom(16)
    assert await log.claim("GW1", frame) is None
    in_flight = await log.claim("GW1", frame)
    assert in_flight is not None and in_flight.state is TransferState.PENDING
    answer = FrameAnswer(b"\x00:outcomes:\xff", b"\x01confirmation")
    await log.finish("GW1", frame, answer)
    again = await log.claim("GW1", frame)
    assert again is not None and (again.state, again.answer) == (TransferState.DONE, answer)


async def test_an_attempt_interrupted_by_a_crash_is_failed_not_resumed(backend: RedisBackend) -> None:
    transfer = os.urandom(16)
    assert await transfer_log(backend).claim("GW1", transfer) is None  # that process then dies
    after_restart = await transfer_log(backend).claim("GW1", transfer)
    assert after_restart is not None and after_restart.state is TransferState.FAILED


async def test_a_failed_transfer_stays_failed(backend: RedisBackend) -> None:
    log = transfer_log(backend)
    transfer = os.urandom(16)
    await log.claim("GW1", transfer)
    await log.fail("GW1", transfer, "DecryptionFailed")
    record = await log.claim("GW1", transfer)
    assert record is not None and (record.state, record.reason) == (TransferState.FAILED, "DecryptionFailed")


async def test_redis_down_is_reported_as_pool_unavailable(private_redis: RedisServer) -> None:
    async with RedisBackend.connect(RedisConfig(private_redis.admin_url, retries=0)) as backend:
        log = transfer_log(backend)
        private_redis.stop()
        with pytest.raises(PoolUnavailable):
            await log.claim("GW1", os.urandom(16))


async def test_another_senders_record_under_the_same_transfer_id_is_separate(backend: RedisBackend) -> None:
    log = transfer_log(backend)
    transfer = os.urandom(16)
    assert await log.claim("GW3", transfer) is None  # a forgery that will fail...
    await log.fail("GW3", transfer, "WrongSender")
    assert await log.claim("GW1", transfer) is None  # ...does not touch the genuine sender's transfer


@pytest.mark.parametrize("window_s", [120.0, 1.5])
async def test_records_live_twice_the_hop_window_not_longer(backend: RedisBackend, window_s: float) -> None:
    """Every retry the freshness check could still accept comes within 2 windows of the claim; after that
    the record is dead weight (240 s by default, where it used to be 900 s)."""
    log = transfer_log(backend, hop_window_s=window_s)
    transfer = os.urandom(16)
    name = f"t:xfer:GW1:{transfer.hex()}"
    assert await log.claim("GW1", transfer) is None
    assert window_s * 1000 < await backend.command("PTTL", name) <= 2 * window_s * 1000
    await log.finish("GW1", transfer, FrameAnswer(b"o", b"c"))
    assert window_s * 1000 < await backend.command("PTTL", name) <= 2 * window_s * 1000
    assert log.ttl_ms == round(2 * window_s * 1000)
