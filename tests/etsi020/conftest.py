"""An 020 server (as KME-B) and the calling KME's ack callback (as KME-A), both on real TLS 1.3 sockets.

The backend is a recorder: the unit under test is the HTTP surface, so what matters is what reaches the
backend, when, and what the peer gets back.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relay.etsi020.client import Etsi020Client
from relay.etsi020.models import AckContainer
from relay.etsi020.server import create_app
from relay.http_server import start_site
from relay.pki.certs import issue, load_identity, write_identity
from relay.pki.layout import KeyDirectory
from tests.support.etsi020_peers import (
    GATEWAY,
    MAX_BODY_BYTES,
    SUPPORTED_MANDATORY,
    TLS13,
    Kme020,
    RecordingBackend,
    start_callback,
)


@pytest.fixture(scope="session")
def gateway_pki(pki: KeyDirectory, tmp_path_factory: pytest.TempPathFactory) -> KeyDirectory:
    """A gateway certificate (role ``gateway`` only) from the same CA, kept apart from the shared PKI."""
    keys = KeyDirectory(tmp_path_factory.mktemp("gateway-pki"))
    shutil.copy(pki.ca.cert, keys.ca.cert)
    write_identity(keys.root, GATEWAY, issue(load_identity(pki.ca), GATEWAY, ("gateway",)))
    return keys


@pytest.fixture
async def kme(pki: KeyDirectory, gateway_pki: KeyDirectory) -> AsyncIterator[Kme020]:
    acks: asyncio.Queue[tuple[str | None, Any]] = asyncio.Queue()
    callback = await start_callback(pki, acks)
    backend = RecordingBackend()
    sender = Etsi020Client(callback.url, pki.client_context("KME-B", minimum=TLS13))

    async def send_acks(caller: str, callback_url: str, acks: list[AckContainer]) -> None:
        await sender.post_acks(callback_url, acks)

    app = create_app(
        backend, send_acks, supported_mandatory_extensions={SUPPORTED_MANDATORY}, max_body_bytes=MAX_BODY_BYTES
    )
    site = await start_site(app, "127.0.0.1", 0, pki.server_context("KME-B", minimum=TLS13))
    harness = Kme020(site, callback, backend, acks, pki, gateway_pki)
    try:
        yield harness
    finally:
        for client in harness.clients:
            await client.close()
        await site.stop()
        await sender.close()
        await callback.stop()
