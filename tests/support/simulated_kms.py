"""A simulated vendor KMS for tests: its configuration, a manual clock, and a harness to open clients."""

from __future__ import annotations

from dataclasses import dataclass

from relay.etsi014.client import Etsi014Client
from relay.kms_sim.config import KmeEndpoint, SimConfig, SimSettings, SimulatedLink
from relay.kms_sim.service import RunningKms
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
