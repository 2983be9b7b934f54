"""Etsi020Client against a scripted peer KME on real TLS 1.3: a peer that breaks the spec is not trusted."""

from __future__ import annotations

import os
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from relay.etsi020.client import Etsi020Client, PeerProblem, PeerUnreachable
from relay.etsi020.models import AckStatus, ExtKey, ExtKeyContainer, VoidContainer
from relay.http_server import RunningSite, start_site
from relay.pki.layout import KeyDirectory
from tests.support.etsi020_peers import TLS13
from tests.support.ports import free_port

SYNC_ACKS = [
    {
        "key_id_container": [{"key_id": "550e8400-e29b-41d4-a716-446655440000"}],
        "ack_status": "relayed",
        "initiator_sae_id": "SAE-1",
        "target_sae_ids": ["SAE-2"],
    }
]


@dataclass
class ScriptedPeer:
    """Answers every request with ``answer()``; records the paths it was asked for."""

    site: RunningSite | None = None
    answer: Callable[[], web.Response] = lambda: web.Response(status=200)
    paths: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        return self.answer()

    @property
    def url(self) -> str:
        assert self.site is not None
        return self.site.url


@pytest.fixture
async def peer(pki: KeyDirectory) -> AsyncIterator[ScriptedPeer]:
    scripted = ScriptedPeer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", scripted.handle)
    scripted.site = await start_site(app, "127.0.0.1", 0, pki.server_context("KME-B", minimum=TLS13))
    try:
        yield scripted
    finally:
        await scripted.site.stop()


def ext_keys(callback: str | None) -> ExtKeyContainer:
    return ExtKeyContainer((ExtKey(str(uuid.uuid4()), os.urandom(32)),), "SAE-1", ("SAE-2",), callback)


def test_a_context_below_tls_1_3_is_refused(pki: KeyDirectory) -> None:
    for context in (pki.client_context("KME-A"), pki.client_context("KME-A", minimum=ssl.TLSVersion.TLSv1_2)):
        with pytest.raises(ValueError, match="TLS 1.3"):
            Etsi020Client("https://127.0.0.1:1", context)


async def test_the_success_status_must_match_the_mode(pki: KeyDirectory, peer: ScriptedPeer) -> None:
    async with Etsi020Client(peer.url, pki.client_context("KME-A", TLS13)) as client:
        peer.answer = lambda: web.Response(status=202)
        with pytest.raises(PeerProblem) as caught:
            await client.ext_keys(ext_keys(None))  # synchronous: a 202 would leave us waiting forever
        assert caught.value.status == 202
        peer.answer = lambda: web.json_response(SYNC_ACKS)
        with pytest.raises(PeerProblem):
            await client.void(VoidContainer((str(uuid.uuid4()),), "SAE-1", ("SAE-2",), "https://127.0.0.1/ack"))
        acks = await client.ext_keys(ext_keys(None))
        assert acks is not None and acks[0].ack_status is AckStatus.RELAYED


async def test_void_accepts_every_answer_the_spec_allows(pki: KeyDirectory, peer: ScriptedPeer) -> None:
    everything = VoidContainer((), "SAE-1", ("SAE-2",), all_confirmation=True)
    async with Etsi020Client(peer.url, pki.client_context("KME-A", TLS13)) as client:
        peer.answer = lambda: web.json_response([])
        assert await client.void(everything) == []  # synchronous: nothing was there to void
        peer.answer = lambda: web.json_response(SYNC_ACKS)
        acks = await client.void(VoidContainer((str(uuid.uuid4()),), "SAE-1", ("SAE-2",)))
        assert acks is not None and acks[0].ack_status is AckStatus.RELAYED
        peer.answer = lambda: web.Response(status=202)
        assert (
            await client.void(VoidContainer((), "SAE-1", ("SAE-2",), "https://127.0.0.1/ack", all_confirmation=True))
            is None
        )


@pytest.mark.parametrize(
    ("text", "versions"),
    [
        ('[{"ack_status": "relayed"}]', False),
        ("[]", False),
        ("not json", False),
        ('{"versions": ["v1"], "versions": ["v2"]}', True),
        ('{"versions": ["v1"], "capabilities": [NaN]}', True),
    ],
)
async def test_an_answer_that_breaks_the_schema_is_a_peer_problem(
    pki: KeyDirectory, peer: ScriptedPeer, text: str, versions: bool
) -> None:
    peer.answer = lambda: web.Response(text=text, content_type="application/json")
    async with Etsi020Client(peer.url, pki.client_context("KME-A", TLS13)) as client:
        with pytest.raises(PeerProblem) as caught:
            if versions:
                await client.versions()
            else:
                await client.ext_keys(ext_keys(None))
    assert caught.value.status == 200


async def test_an_error_status_carries_the_problem_body(pki: KeyDirectory, peer: ScriptedPeer) -> None:
    problem = {"type": "https://qkd.etsi.org/gs020-interop-kms/insufficient-key-material", "status": 503}
    peer.answer = lambda: web.json_response(problem, status=503, content_type="application/problem+json")
    async with Etsi020Client(peer.url, pki.client_context("KME-A", TLS13)) as client:
        with pytest.raises(PeerProblem) as caught:
            await client.ext_keys(ext_keys("https://127.0.0.1/ack"))
    assert caught.value.status == 503 and caught.value.problem == problem


@pytest.mark.parametrize("status", [400, 401, 408, 503])
async def test_a_problem_with_only_its_type_is_reported_whole(
    pki: KeyDirectory, peer: ScriptedPeer, status: int
) -> None:
    """The spec's ``problem_details`` requires only ``type``; 408 is documented for ext_keys and void."""
    problem = {"type": "https://qkd.etsi.org/gs020-interop-kms/timeout"}
    peer.answer = lambda: web.json_response(problem, status=status)
    async with Etsi020Client(peer.url, pki.client_context("KME-A", TLS13)) as client:
        with pytest.raises(PeerProblem) as caught:
            await client.void(VoidContainer((str(uuid.uuid4()),), "SAE-1", ("SAE-2",)))
    assert caught.value.status == status and caught.value.problem == problem


async def test_redirects_are_not_followed(pki: KeyDirectory, peer: ScriptedPeer) -> None:
    """A 307 keeps the method and body: following it would hand key material to a URL the peer chose."""
    peer.answer = lambda: web.Response(status=307, headers={"Location": "/elsewhere"})
    async with Etsi020Client(peer.url, pki.client_context("KME-A", TLS13)) as client:
        with pytest.raises(PeerProblem) as caught:
            await client.ext_keys(ext_keys("https://127.0.0.1/ack"))
    assert caught.value.status == 307 and peer.paths == ["/kmapi/v1/ext_keys"]


async def test_no_listener_is_unreachable(pki: KeyDirectory) -> None:
    async with Etsi020Client(f"https://127.0.0.1:{free_port()}", pki.client_context("KME-A", TLS13)) as client:
        with pytest.raises(PeerUnreachable):
            await client.versions()
