"""A simulated vendor KMS on real mutual-TLS sockets, driven by a manual clock where time matters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from relay.etsi014.client import Etsi014Client
from relay.kms_sim.config import KmeEndpoint, SimConfig, SimSettings, SimulatedLink
from relay.kms_sim.service import RunningKms, start_kms
from relay.pki.layout import KeyDirectory


class ManualClock:
    """Monotonic time that moves only when a test says so, so expiry and rates are exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sim_config(settings: SimSettings) -> SimConfig:
    return SimConfig(
        kms_id="KMS-T",
        kmes=(KmeEndpoint("KME-A", "127.0.0.1", 0), KmeEndpoint("KME-B", "127.0.0.1", 0)),
        sae_homes={"SAE-1": "KME-A", "SAE #4": "KME-A", "SAE-2": "KME-B", "SAE-3": "KME-B"},
        links=(
            SimulatedLink("L-1-2", "SAE-1", "SAE-2", rate_bps=2560),
            SimulatedLink("L-1-4", "SAE-1", "SAE #4", rate_bps=2560),
        ),
        settings=settings,
        admin_port=0,
    )


@dataclass
class KmsHarness:
    running: RunningKms
    clock: ManualClock
    pki: KeyDirectory

    def client(self, sae_id: str, kme_id: str) -> Etsi014Client:
        return Etsi014Client(self.running.kme_url(kme_id), self.pki.client_context(sae_id))


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
