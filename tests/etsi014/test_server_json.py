"""The 014 front end's JSON reading (shared strict parser) over real mutual TLS: every bad body is a 400.

Hostile nesting and over-long integers used to escape the parser as RecursionError/ValueError and
surface as a 503; an empty POST body is still the all-defaults Key request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from relay.etsi014.models import KeyContainer, KeyIds, KeyRequest, Status
from relay.etsi014.server import create_app
from relay.http_server import RunningSite, start_site
from relay.pki.layout import KeyDirectory


class RecordingBackend:
    """Answers with no keys; records the Key requests it is given."""

    def __init__(self) -> None:
        self.requests: list[KeyRequest] = []

    async def status(self, master_sae_id: str, slave_sae_id: str) -> Status:
        raise AssertionError("not used")

    async def enc_keys(self, master_sae_id: str, slave_sae_id: str, request: KeyRequest) -> KeyContainer:
        self.requests.append(request)
        return KeyContainer(())

    async def dec_keys(self, slave_sae_id: str, master_sae_id: str, key_ids: KeyIds) -> KeyContainer:
        raise AssertionError("not used")


@pytest.fixture
async def kme(pki: KeyDirectory) -> AsyncIterator[tuple[RunningSite, RecordingBackend]]:
    backend = RecordingBackend()
    site = await start_site(create_app(backend), "127.0.0.1", 0, pki.server_context("KME-A"))
    try:
        yield site, backend
    finally:
        await site.stop()


async def post(pki: KeyDirectory, site: RunningSite, data: bytes) -> tuple[int, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=pki.client_context("SAE-1"))) as session:
        url = f"{site.url}/api/v1/keys/SAE-2/enc_keys"
        async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as response:
            return response.status, await response.json()


@pytest.mark.parametrize(
    ("data", "message_part"),
    [
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b'{"number": ' + b"9" * 5000 + b"}", "number is too long"),
        (b'{"extension_optional": [{"abc": "\\udc00"}]}', "unpaired surrogate"),
        (b'{"number": Infinity}', "not valid JSON"),
    ],
)
async def test_hostile_json_is_400_not_503(
    pki: KeyDirectory, kme: tuple[RunningSite, RecordingBackend], data: bytes, message_part: str
) -> None:
    site, backend = kme
    status, body = await post(pki, site, data)
    assert status == 400 and message_part in body["message"]
    assert backend.requests == []


async def test_an_empty_body_is_the_default_key_request(
    pki: KeyDirectory, kme: tuple[RunningSite, RecordingBackend]
) -> None:
    site, backend = kme
    status, body = await post(pki, site, b" \n")
    assert status == 200 and body == {"keys": []}
    assert backend.requests == [KeyRequest()]
