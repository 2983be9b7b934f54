"""Configuration of a simulated vendor KMS, built by hand in tests or derived from the topology."""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.topology import Topology

DEFAULT_AVAILABILITY_TIMEOUT_S = 10.0  # vendors drop a key ~10 s after its master fetched it


@dataclass(frozen=True)
class KmeEndpoint:
    id: str
    host: str
    port: int


@dataclass(frozen=True)
class SimulatedLink:
    """A QKD link between two SAEs; ``rate_bps`` is its secret-key rate after error correction and PA."""

    id: str
    sae_a: str
    sae_b: str
    rate_bps: float


@dataclass(frozen=True)
class SimSettings:
    """The limits every KME of the simulated network reports in Status, and the link physics."""

    key_size: int = 256
    min_key_size: int = 64
    max_key_size: int = 8192
    max_key_per_request: int = 128
    max_key_count: int = 10_000
    max_sae_id_count: int = 0
    initial_key_count: int = 100
    availability_timeout_s: float = DEFAULT_AVAILABILITY_TIMEOUT_S
    qber_threshold: float = 0.11
    baseline_qber: float = 0.02

    def __post_init__(self) -> None:
        if self.key_size % 8 or not self.min_key_size <= self.key_size <= self.max_key_size:
            raise ValueError("key_size must be a multiple of 8 between min_key_size and max_key_size")
        if self.availability_timeout_s <= 0 or self.max_key_count < 1 or self.max_key_per_request < 1:
            raise ValueError("availability_timeout_s, max_key_count and max_key_per_request must be positive")
        if not 0 <= self.initial_key_count <= self.max_key_count:
            raise ValueError("initial_key_count must be between 0 and max_key_count")


@dataclass(frozen=True)
class SimConfig:
    kms_id: str
    kmes: tuple[KmeEndpoint, ...]
    sae_homes: dict[str, str]  # SAE ID -> ID of the KME it connects to
    links: tuple[SimulatedLink, ...]
    settings: SimSettings = field(default_factory=SimSettings)
    admin_port: int | None = None


def from_topology(topology: Topology, kms_id: str, settings: SimSettings | None = None) -> SimConfig:
    kms = topology.vendor_kms(kms_id)
    qkd_links = topology.qkd_links_of(kms_id)
    return SimConfig(
        kms_id=kms.id,
        kmes=tuple(KmeEndpoint(kme.id, kme.host, kme.port) for kme in kms.kmes),
        sae_homes={end.sae: end.kme for link in qkd_links for end in link.endpoints},
        links=tuple(
            SimulatedLink(link.id, link.endpoints[0].sae, link.endpoints[1].sae, link.rate_bps) for link in qkd_links
        ),
        settings=settings or SimSettings(),
        admin_port=kms.admin_port,
    )
