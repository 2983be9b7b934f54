"""An 020 peer for tests: the recording backend, the calling KME harness and its ack callback on TLS 1.3."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from relay.etsi020.client import Etsi020Client
from relay.etsi020.models import AckContainer, AckStatus, ExtKeyContainer, VoidContainer
from relay.http_server import RunningSite, start_site
from relay.pki.layout import KeyDirectory
from relay.pki.tls import peer_identity
from relay.strict_json import parse_strict_json

TLS13 = ssl.TLSVersion.TLSv1_3
GATEWAY = "GW-T"
SUPPORTED_MANDATORY = "E99999_supported"
MAX_BODY_BYTES = 64 * 1024


class RecordingBackend:
    """Records every call; relays or voids whatever it is given unless a test sets a failure."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.check_failure: Exception | None = None
        self.work_failure: Exception | None = None
        self.ack_failure: Exception | None = None
        self.delivered: list[str] = []

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    async def check_ext_keys(self, caller: str, request: ExtKeyContainer) -> None:
        self.calls.append(("check_ext_keys", caller, request))
        if self.check_failure is not None:
            raise self.check_failure

    async def deliver(self, caller: str, request: ExtKeyContainer) -> list[AckContainer]:
        self.calls.append(("deliver", caller, request))
        if self.work_failure is not None:
            raise self.work_failure
        key_ids = tuple(key.key_id for key in request.keys)
        self.delivered.extend(key_ids)
        return [AckContainer(key_ids, AckStatus.RELAYED, request.initiator_sae_id, request.target_sae_ids)]

    async def acknowledged(self, caller: str, acks: Sequence[AckContainer]) -> None:
        self.calls.append(("acknowledged", caller, tuple(acks)))
        if self.ack_failure is not None:
            raise self.ack_failure

    async def check_void(self, caller: str, request: VoidContainer) -> None:
        self.calls.append(("check_void", caller, request))
        if self.check_failure is not None:
            raise self.check_failure

    async def void(self, caller: str, request: VoidContainer) -> list[AckContainer]:
        self.calls.append(("void", caller, request))
        if self.work_failure is not None:
            raise self.work_failure
        key_ids = request.key_ids or tuple(self.delivered)  # empty key_ids (confirmed): every key of the pair
        if not key_ids:
            return []  # nothing to void
        return [AckContainer(key_ids, AckStatus.VOIDED, request.initiator_sae_id, request.target_sae_ids)]


@dataclass
class Answer:
    status: int
    content_type: str
    headers: Any
    body: Any


@dataclass
class Kme020:
    """KME-B serving 020; ``acks`` receives (caller identity, raw JSON) for every POST to the callback."""

    site: RunningSite
    callback: RunningSite
    backend: RecordingBackend
    acks: asyncio.Queue[tuple[str | None, Any]]
    pki: KeyDirectory
    gateway_pki: KeyDirectory
    clients: list[Etsi020Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.site.url

    @property
    def callback_url(self) -> str:
        return f"{self.callback.url}/kmapi/v1/ext_keys/ack"

    def context(self, name: str, minimum: ssl.TLSVersion = TLS13) -> ssl.SSLContext:
        keys = self.gateway_pki if name == GATEWAY else self.pki
        return keys.client_context(name, minimum=minimum)

    def client(self, name: str = "KME-A") -> Etsi020Client:
        client = Etsi020Client(self.url, self.context(name))
        self.clients.append(client)
        return client

    async def raw(self, method: str, path: str, *, name: str = "KME-A", **kwargs: Any) -> Answer:
        """A request below our client, to send what a careless or hostile KME would send."""
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.context(name))) as session:
            async with session.request(method, self.url + path, **kwargs) as response:
                raw = await response.read()
                body = parse_strict_json(raw) if raw else None
                return Answer(response.status, response.content_type, response.headers, body)

    async def next_ack(self, timeout_s: float = 5.0) -> tuple[str | None, Any]:
        return await asyncio.wait_for(self.acks.get(), timeout_s)


async def start_callback(pki: KeyDirectory, acks: asyncio.Queue[tuple[str | None, Any]]) -> RunningSite:
    """KME-A's ext_keys/ack endpoint reduced to a recorder of what arrives on the wire."""

    async def receive(request: web.Request) -> web.Response:
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        await acks.put((peer_identity(peercert, "kme"), parse_strict_json(await request.read())))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/kmapi/v1/ext_keys/ack", receive)
    return await start_site(app, "127.0.0.1", 0, pki.server_context("KME-A", minimum=TLS13))
