"""020 acks a foreign KMS's callback does not take: retried with backoff, then the keys voided everywhere.

A real callback server (TLS 1.3, the foreign KME's certificate) answers 500 or is down; the gateways relay
over gRPC with Redis behind them, and the slave SAE asks its gateway over ETSI 014.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from relay.etsi014.client import KmeError
from relay.etsi020.client import Etsi020Client
from relay.etsi020.models import AckContainer, AckStatus, ExtKey, ExtKeyContainer, VoidContainer
from relay.gateway.ack_delivery import handing_kms_base
from relay.gateway.config import GatewaySettings
from relay.http_server import RunningSite, start_site
from relay.pki.layout import KeyDirectory
from relay.strict_json import parse_strict_json
from tests.support.local_testbed import LocalTestbed, running_testbed
from tests.support.ports import free_port
from tests.support.redis_servers import RedisServer
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
    """A foreign KMS whose ack endpoint answers 500 and whose void endpoint records what arrives."""

    site: RunningSite | None = None
    ack_attempts: int = 0
    voids: asyncio.Queue[VoidContainer] = field(default_factory=asyncio.Queue)

    async def ack(self, request: web.Request) -> web.Response:
        self.ack_attempts += 1
        return web.json_response({"type": "about:blank", "status": 500}, status=500)

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
