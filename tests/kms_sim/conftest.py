"""A simulated vendor KMS on real mutual-TLS sockets, driven by a manual clock where time matters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from relay.etsi014.client import Etsi014Client
from relay.kms_sim.config import SimSettings
from relay.kms_sim.service import start_kms
from relay.pki.layout import KeyDirectory
from tests.support.simulated_kms import KmsHarness, ManualClock, sim_config


@pytest.fixture
def sim_settings() -> SimSettings:
    return SimSettings(initial_key_count=50, max_key_count=1000, availability_timeout_s=10.0)


@pytest.fixture
async def kms(pki: KeyDirectory, sim_settings: SimSettings) -> AsyncIterator[KmsHarness]:
    clock = ManualClock()
    running = await start_kms(sim_config(sim_settings), pki, clock=clock)
    try:
        yield KmsHarness(running, clock, pki)
    finally:
        await running.stop()


@pytest.fixture
async def clients(kms: KmsHarness) -> AsyncIterator[Callable[[str, str], Etsi014Client]]:
    """``clients(sae, kme)`` opens a client that is closed at teardown."""
    opened: list[Etsi014Client] = []

    def open_client(sae_id: str, kme_id: str) -> Etsi014Client:
        client = kms.client(sae_id, kme_id)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        await client.close()
