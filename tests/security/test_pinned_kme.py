"""The southbound 014 client takes QKD keys only from the KME the topology names: a server presenting
another entity's genuine certificate (same CA) is refused at the handshake, before any request is sent."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.etsi014.client import Etsi014Client, KmeUnreachable, KmeWrongIdentity
from relay.kms_sim.config import SimSettings
from relay.kms_sim.service import RunningKms, start_kms
from relay.pki.layout import KeyDirectory
from relay.pki.tls import ExpectedPeer, WrongPeer
from tests.support.impostors import impostor_keys
from tests.support.simulated_kms import ManualClock, sim_config

KME_A = ExpectedPeer(("kme",), "KME-A")


async def _running(keys: KeyDirectory) -> RunningKms:
    return await start_kms(sim_config(SimSettings(initial_key_count=10)), keys, clock=ManualClock())


@pytest.fixture
async def impostor(request: pytest.FixtureRequest, pki: KeyDirectory, tmp_path: Path) -> AsyncIterator[RunningKms]:
    """A real simulated KMS whose KME-A listener presents the certificate ``request.param`` names."""
    keys = impostor_keys(pki, tmp_path / "impostor", serving_as="KME-A", presenting=request.param)
    running = await _running(keys)
    yield running
    await running.stop()


def _requests_served(kms: RunningKms) -> int:
    return sum(kms.metrics.requests.counts.values())


async def test_the_pinned_client_takes_keys_from_the_named_kme(pki: KeyDirectory) -> None:
    running = await _running(pki)
    try:
        async with Etsi014Client(running.kme_url("KME-A"), pki.client_context("SAE-1", peer=KME_A)) as client:
            container = await client.get_key("SAE-2")
    finally:
        await running.stop()
    assert len(container.keys) == 1


@pytest.mark.parametrize("impostor", ["KME-B"], indirect=True)
async def test_another_kmes_certificate_is_refused_by_name(pki: KeyDirectory, impostor: RunningKms) -> None:
    async with Etsi014Client(impostor.kme_url("KME-A"), pki.client_context("SAE-1", peer=KME_A)) as client:
        with pytest.raises(KmeWrongIdentity, match="presented the certificate of kme:KME-B, expected kme KME-A"):
            await client.get_key("SAE-2")
    assert _requests_served(impostor) == 0  # refused in the handshake: no request, so no key handed out


@pytest.mark.parametrize("impostor", ["SAE-3"], indirect=True)
async def test_an_sae_certificate_cannot_serve_as_a_kme(pki: KeyDirectory, impostor: RunningKms) -> None:
    """Refused twice over: the SAE certificate lacks serverAuth (OpenSSL checks the purpose), and names an SAE."""
    async with Etsi014Client(impostor.kme_url("KME-A"), pki.client_context("SAE-1", peer=KME_A)) as client:
        with pytest.raises(KmeUnreachable, match="unsuitable certificate purpose"):
            await client.get_key("SAE-2")
    assert _requests_served(impostor) == 0


@pytest.mark.parametrize("impostor", ["KME-B"], indirect=True)
async def test_the_pin_holds_for_blocking_sockets_too(pki: KeyDirectory, impostor: RunningKms) -> None:
    context = pki.client_context("SAE-1", peer=KME_A)
    site = impostor.kme_sites["KME-A"]

    def handshake() -> None:
        with socket.create_connection((site.host, site.port), timeout=5) as raw:
            context.wrap_socket(raw, server_hostname=site.host).close()

    with pytest.raises(WrongPeer, match="kme:KME-B"):
        await asyncio.to_thread(handshake)
