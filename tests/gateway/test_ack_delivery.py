"""020 acks a foreign KMS's callback does not take: retried with backoff, then the keys voided everywhere.

A real callback server (TLS 1.3, the foreign KME's certificate) answers 500 or is down; the gateways relay
over gRPC with Redis behind them, and the slave SAE asks its gateway over ETSI 014. Retries wait in Redis:
the replica tests run two :class:`AckDelivery` instances (two replicas of GW1, with their own instance
tokens and GW1's voiding) over one retry queue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from aiohttp import web

from relay.etsi014.client import KmeError
from relay.etsi020.client import Etsi020Client
from relay.etsi020.models import AckContainer, AckStatus, ExtKey, ExtKeyContainer, VoidContainer
from relay.etsi020.server import callback_peer
from relay.gateway.ack_delivery import AckDelivery, AckDeliveryMetrics, AckRetry, handing_kms_base
from relay.gateway.config import GatewaySettings
from relay.http_server import RunningSite, start_site
from relay.pki.layout import KeyDirectory
from relay.pool import Keyspace, RedisBackend, RedisConfig
from relay.pool.leases import Lease, run_while_leased
from relay.pool.retries import RetryQueue
from relay.strict_json import parse_strict_json
from tests.support.local_testbed import LocalTestbed, running_testbed
from tests.support.ports import free_port
from tests.support.redis_servers import RedisServer, redis_server
from tests.support.waiting import wait_until

TLS13 = ssl.TLSVersion.TLSv1_3
FOREIGN_KME = "KME-R1-A"
FOREIGN_SAE = "ENC-X1"
RETRY = GatewaySettings(prerelay=False, ack_retry_s=1.0, ack_retry_first_s=0.1)


@pytest.fixture
async def testbed(topology_keys: KeyDirectory, private_redis: RedisServer) -> AsyncIterator[LocalTestbed]:
    async with running_testbed(topology_keys, private_redis.url, RETRY) as running:
        yield running


@dataclass
class FailingKms:
    """A foreign KMS whose ack endpoint answers 500 (to the first ``failures`` acks if set, then 200, each
    ack taking ``answer_s``) and whose void endpoint records what arrives."""

    site: RunningSite | None = None
    failures: int | None = None
    answer_s: float = 0.0
    ack_attempts: int = 0
    acked: list[str] = field(default_factory=list)  # key_IDs of the acks answered 200, as they arrived
    voids: asyncio.Queue[VoidContainer] = field(default_factory=asyncio.Queue)

    async def ack(self, request: web.Request) -> web.Response:
        self.ack_attempts += 1
        body = parse_strict_json(await request.read())
        await asyncio.sleep(self.answer_s)
        if self.failures is not None and self.ack_attempts > self.failures:
            self.acked += [item["key_id"] for ack in body for item in ack["key_id_container"]]
            return web.Response(status=200)
        return web.json_response({"type": "about:blank", "status": 500}, status=500)

    async def start(self, keys: KeyDirectory) -> str:
        """Serve as the foreign KMS; returns its ack callback URL."""
        app = web.Application()
        app.router.add_post("/kmapi/v1/ext_keys/ack", self.ack)
        app.router.add_post("/kmapi/v1/ext_keys/void", self.void)
        self.site = await start_site(app, "127.0.0.1", 0, keys.server_context(FOREIGN_KME, minimum=TLS13))
        return f"{self.site.url}/kmapi/v1/ext_keys/ack"

    async def void(self, request: web.Request) -> web.Response:
        void = VoidContainer.from_json(parse_strict_json(await request.read()))
        await self.voids.put(void)
        ack = AckContainer(void.key_ids, AckStatus.VOIDED, void.initiator_sae_id, void.target_sae_ids)
        return web.json_response([ack.to_json()])


def handed(testbed: LocalTestbed, callback_url: str) -> tuple[Etsi020Client, ExtKeyContainer]:
    keys = tuple(ExtKey(str(uuid.uuid4()), os.urandom(32)) for _ in range(2))
    client = Etsi020Client(
        testbed.gateways["GW1"].sites["etsi020"].url, testbed.keys.client_context(FOREIGN_KME, minimum=TLS13)
    )
    return client, ExtKeyContainer(keys, FOREIGN_SAE, ("SAE-R3-A",), ack_callback_url=callback_url)


async def assert_withdrawn(testbed: LocalTestbed, container: ExtKeyContainer) -> None:
    async with testbed.sae("SAE-R3-A") as slave:
        for key in container.keys:
            with pytest.raises(KmeError) as gone:
                await slave.get_key_with_ids(FOREIGN_SAE, [key.key_id])
            assert gone.value.status == 400


def test_the_handing_kms_base_is_the_callback_up_to_kmapi_version() -> None:
    assert handing_kms_base("https://kms.example:8443/kmapi/v1/ext_keys/ack") == "https://kms.example:8443"
    assert handing_kms_base("https://kms.example/x/kmapi/v2/ack") == "https://kms.example/x"
    assert handing_kms_base("https://kms.example/ack") is None


async def test_an_ack_answered_500_is_retried_then_the_keys_are_voided_here_and_at_the_handing_kms(
    testbed: LocalTestbed, caplog: pytest.LogCaptureFixture
) -> None:
    kms = FailingKms()
    app = web.Application()
    app.router.add_post("/kmapi/v1/ext_keys/ack", kms.ack)
    app.router.add_post("/kmapi/v1/ext_keys/void", kms.void)
    kms.site = await start_site(app, "127.0.0.1", 0, testbed.keys.server_context(FOREIGN_KME, minimum=TLS13))
    metrics = testbed.gateways["GW1"].metrics.ack_delivery
    try:
        client, container = handed(testbed, f"{kms.site.url}/kmapi/v1/ext_keys/ack")
        async with client:
            started = asyncio.get_running_loop().time()
            assert await client.ext_keys(container) is None
            void = await asyncio.wait_for(kms.voids.get(), timeout=10)
            elapsed = asyncio.get_running_loop().time() - started
    finally:
        await kms.site.stop()
    # 0.1 s doubling within 1 s: attempts at about 0, 0.1, 0.3 and 0.7 s, the next (1.5 s) past the bound
    assert kms.ack_attempts == metrics.attempts == 4
    assert elapsed < RETRY.ack_retry_s + 5
    assert (void.key_ids, void.initiator_sae_id, void.target_sae_ids, void.ack_callback_url) == (
        tuple(key.key_id for key in container.keys),
        FOREIGN_SAE,
        ("SAE-R3-A",),
        None,  # synchronous: no ack awaited for the void
    )
    assert (metrics.undeliverable, metrics.keys_voided) == (1, 2)
    assert "020 ack to" in caplog.text and "undeliverable" in caplog.text
    await assert_withdrawn(testbed, container)


async def test_an_ack_to_a_callback_that_is_down_voids_the_keys(testbed: LocalTestbed) -> None:
    client, container = handed(testbed, f"https://127.0.0.1:{free_port()}/kmapi/v1/ext_keys/ack")
    metrics = testbed.gateways["GW1"].metrics.ack_delivery
    async with client:
        assert await client.ext_keys(container) is None
    await wait_until(lambda: metrics.keys_voided == 2, timeout_s=15)
    assert metrics.attempts >= 3 and metrics.undeliverable == 1 and metrics.delivered == 0
    await assert_withdrawn(testbed, container)


async def test_acks_go_only_to_the_kms_that_handed_the_keys_over(testbed: LocalTestbed) -> None:
    """KME-R1-A hands keys over naming a callback served with KME-R2-A's genuine certificate: the gateway
    pins the callback to its caller, so that server sees no ack and no void; the keys are withdrawn."""
    impostor = FailingKms()
    app = web.Application()
    app.router.add_post("/kmapi/v1/ext_keys/ack", impostor.ack)
    app.router.add_post("/kmapi/v1/ext_keys/void", impostor.void)
    impostor.site = await start_site(app, "127.0.0.1", 0, testbed.keys.server_context("KME-R2-A", minimum=TLS13))
    metrics = testbed.gateways["GW1"].metrics.ack_delivery
    try:
        client, container = handed(testbed, f"{impostor.site.url}/kmapi/v1/ext_keys/ack")
        async with client:
            assert await client.ext_keys(container) is None
        await wait_until(lambda: metrics.keys_voided == 2, timeout_s=15)
    finally:
        await impostor.site.stop()
    assert impostor.ack_attempts == 0 and impostor.voids.empty()  # refused in the handshake
    assert metrics.attempts >= 1 and metrics.undeliverable == 1 and metrics.delivered == 0
    await assert_withdrawn(testbed, container)


@dataclass
class Replicas:
    """Replicas of GW1's ack delivery over one retry queue (in a keyspace of the test's own)."""

    testbed: LocalTestbed
    backend: RedisBackend
    keyspace: Keyspace
    retry: AckRetry

    def replica(self, instance: str) -> AckDelivery:
        keys = self.testbed.keys

        def client(caller: str, base_url: str) -> Etsi020Client:
            return Etsi020Client(base_url, keys.client_context("GW1", minimum=TLS13, peer=callback_peer(caller)))

        async def post(caller: str, callback_url: str, acks: Sequence[AckContainer]) -> None:
            async with client(caller, callback_url) as callback:
                await callback.post_acks(callback_url, acks)

        queue = RetryQueue(self.backend, self.keyspace.ack_retries())
        voiding = self.testbed.gateways["GW1"].voiding
        return AckDelivery(post, voiding, client, self.retry, AckDeliveryMetrics(), queue, instance)

    def lease(self, instance: str) -> Lease:
        return Lease(self.backend, self.keyspace.ack_retries_lease(), instance, LEASE_TTL_MS)


LEASE_TTL_MS = 1000


@pytest.fixture
async def replicas(testbed: LocalTestbed, private_redis: RedisServer) -> AsyncIterator[Replicas]:
    async with RedisBackend.connect(RedisConfig(private_redis.admin_url)) as backend:
        yield Replicas(testbed, backend, Keyspace(f"t{uuid.uuid4().hex[:12]}"), AckRetry(10.0, 0.1))


def relayed_ack() -> AckContainer:
    return AckContainer((str(uuid.uuid4()),), AckStatus.RELAYED, FOREIGN_SAE, ("SAE-R3-A",))


async def test_a_failed_ack_is_retried_once_by_another_replica_when_the_first_is_gone(replicas: Replicas) -> None:
    """Replica A makes the first attempt (answered 500) and holds the retries' lease, then dies: it never
    renews it nor retries. Replica B takes the lease over once it ran out and posts the ack, once."""
    kms = FailingKms(failures=1)
    callback_url = await kms.start(replicas.testbed.keys)
    first, second = replicas.replica("replica-a"), replicas.replica("replica-b")
    assert await replicas.lease("replica-a").try_acquire()
    ack = relayed_ack()
    runner = None
    try:
        await first.send(FOREIGN_KME, callback_url, [ack])
        assert kms.ack_attempts == 1 and first.metrics.undeliverable == 0  # failed, queued: not given up
        runner = asyncio.create_task(
            run_while_leased(replicas.lease("replica-b"), second.run_retries, renew_every_s=0.3)
        )
        await wait_until(lambda: second.metrics.delivered == 1, timeout_s=10, what="the ack retried by replica B")
    finally:
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        assert kms.site is not None
        await kms.site.stop()
    assert kms.acked == list(ack.key_ids)  # delivered once
    assert (first.metrics.attempts, second.metrics.attempts, kms.ack_attempts) == (1, 1, 2)
    assert kms.voids.empty() and second.metrics.undeliverable == 0


async def test_queued_acks_are_voided_by_the_lease_holder_when_the_retry_time_runs_out(replicas: Replicas) -> None:
    kms = FailingKms()
    callback_url = await kms.start(replicas.testbed.keys)
    replicas.retry = AckRetry(1.0, 0.1)
    receiver, holder = replicas.replica("replica-a"), replicas.replica("replica-b")
    ack = relayed_ack()
    runner = asyncio.create_task(run_while_leased(replicas.lease("replica-b"), holder.run_retries, renew_every_s=0.3))
    try:
        await receiver.send(FOREIGN_KME, callback_url, [ack])
        void = await asyncio.wait_for(kms.voids.get(), timeout=10)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        assert kms.site is not None
        await kms.site.stop()
    assert (void.key_ids, void.initiator_sae_id, void.target_sae_ids) == (ack.key_ids, FOREIGN_SAE, ("SAE-R3-A",))
    # 0.1 s doubling within 1 s, as on one replica: the first attempt on the receiver, three on the holder
    assert (receiver.metrics.attempts, holder.metrics.attempts, kms.ack_attempts) == (1, 3, 4)
    assert (receiver.metrics.undeliverable, holder.metrics.undeliverable) == (0, 1)


async def test_two_replicas_draining_one_queue_post_each_ack_once(replicas: Replicas) -> None:
    """Even with both replicas retrying at once (two holders of the lease for a moment), an entry is claimed
    by one of them before it is posted, so no ack goes out twice."""
    kms = FailingKms(failures=6, answer_s=0.2)
    callback_url = await kms.start(replicas.testbed.keys)
    one, two = replicas.replica("replica-a"), replicas.replica("replica-b")
    acks = [relayed_ack() for _ in range(6)]
    try:
        await asyncio.gather(*(one.send(FOREIGN_KME, callback_url, [ack]) for ack in acks))
        assert kms.ack_attempts == 6 and not kms.acked

        async def both_retry() -> bool:
            await asyncio.gather(one.retry_due(), two.retry_due())
            return len(kms.acked) == len(acks)

        await wait_until(both_retry, timeout_s=15, interval_s=0.01, what="every ack delivered")
    finally:
        assert kms.site is not None
        await kms.site.stop()
    assert sorted(kms.acked) == sorted(ack.key_ids[0] for ack in acks)  # each exactly once
    assert kms.ack_attempts == 12 and one.metrics.delivered + two.metrics.delivered == 6


async def test_retries_paused_by_an_unreachable_redis_are_logged_once_per_outage(
    replicas: Replicas, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The queue is polled every 50 ms: an outage must not write a warning per poll."""
    with redis_server(tmp_path / "redis") as server:
        config = RedisConfig(server.admin_url, socket_timeout_s=0.5, connect_timeout_s=0.5, retries=0)
        async with RedisBackend.connect(config) as backend:
            delivery = replace(replicas, backend=backend).replica("one")
            with caplog.at_level(logging.INFO, logger="relay.gateway.ack_delivery"):
                await delivery.retry_due()
                server.stop()
                for _ in range(3):
                    await delivery.retry_due()
                server.restart()
                await delivery.retry_due()
    messages = [record.getMessage() for record in caplog.records]
    assert sum("020 ack retries paused" in message for message in messages) == 1, messages
    assert messages[-1] == "020 ack retries resumed"
