"""What one gateway needs to know about the topology, resolved once at start-up.

A :class:`GatewayPlan` is the topology seen from one gateway: its neighbours with each link's policy and,
where a QKD link exists, this gateway's ETSI 014 role on it and the vendor KME it pulls from. Everything
else in ``relay.gateway`` takes a plan and never reads the topology again, so a typo in the topology
fails here, with the gateway's name in the message, rather than on the first relayed key.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum

from relay.crypto import QkdUse
from relay.gateway.demand import DemandSettings
from relay.gateway.keepalive import KeepaliveSettings
from relay.gateway.liveness import LivenessSettings
from relay.gateway.qkd_filler import FillerSettings
from relay.http_server import ListenerLimits
from relay.pki.tls import ExpectedPeer
from relay.pool import QkdPoolSettings, RelayedStoreSettings, Role
from relay.topology import ForeignKms, Gateway, Link, Topology, TopologyError


class LinkPolicy(StrEnum):
    QKD_PQC = "qkd+pqc"  # hybrid; an exhausted QKD pool degrades the hop to pqc-only, logged and counted
    PQC_ONLY = "pqc-only"  # no quantum channel: ML-KEM alone, by explicit policy
    REQUIRE_QKD = "require-qkd"  # hybrid or nothing: an exhausted QKD pool answers 503


@dataclass(frozen=True)
class QkdLinkEnd:
    """This gateway's end of a QKD link: it is an SAE (named by its gateway ID) of ``kme_url``, where only
    the server ``kme`` names is accepted."""

    link_id: str
    role: Role
    peer_sae_id: str
    kme_url: str
    kme: ExpectedPeer


@dataclass(frozen=True)
class Neighbour:
    gateway: Gateway
    link: Link
    policy: LinkPolicy
    qkd: QkdLinkEnd | None

    @property
    def id(self) -> str:
        return self.gateway.id

    @property
    def qkd_use(self) -> QkdUse:
        return QkdUse(self.link.qkd_use)

    @property
    def grpc_target(self) -> str:
        """Where our channel dials the neighbour: every one of its replicas, for round-robin over them.

        One replica: ``host:port``. Replicas on one machine (an IP-literal host): gRPC's address list of
        each replica's port (``ipv4:a:p1,a:p2`` / ``ipv6:[a]:p1,[a]:p2``). Replicas behind a DNS name:
        ``dns:///host:port``, which resolves to every replica's address. The TLS name checked stays the
        neighbour's own (``ssl_target_name_override``), whatever the target.
        """
        gateway = self.gateway
        if gateway.replicas == 1:
            return f"{gateway.host}:{gateway.grpc_port}"
        if not gateway.replicas_share_a_machine:
            return f"dns:///{gateway.host}:{gateway.grpc_port}"
        ipv6 = ipaddress.ip_address(gateway.host).version == 6
        host, scheme = (f"[{gateway.host}]", "ipv6") if ipv6 else (gateway.host, "ipv4")
        ports = (gateway.replica_grpc_port(k) for k in range(1, gateway.replicas + 1))
        return f"{scheme}:" + ",".join(f"{host}:{port}" for port in ports)


@dataclass(frozen=True)
class GatewaySettings:
    """Tunables with defaults fit for the testbed; ``gateway run`` sets the commonly tuned ones from its options."""

    listen_host: str = "127.0.0.1"
    redis_url: str | None = None  # default: the region's Redis from the topology
    redis_cluster: bool = False  # redis_url names one node of a Redis Cluster
    redis_wait_replicas: int = 0  # Redis replicas that must confirm each write before it counts (WAIT)
    key_size_bits: int = 256  # size of relayed keys when the SAE does not ask for another
    hop_timeout_s: float = 5.0  # one RelayFrame call, including the hops behind it
    hop_attempts: int = 3  # sends of the same sealed frame before its keys are voided
    frames_in_flight: int = 4  # frames on their way to one neighbour; keys queued meanwhile share the next
    hop_window_s: float = 120.0  # hop and void freshness; replay entries and transfer records live <= twice this
    relay_attempts: int = 2  # fresh keys on fresh routes for one on-demand request
    link_down_s: float = 5.0  # how long routing avoids a link a downstream gateway reported cut
    qkd_wait_s: float = 1.0  # keys on a require-qkd link wait this long for QKD key (frames fill meanwhile)
    lane_fresh_s: float = 1.0  # how long a QKD lane level reported along a route is trusted
    lane_refresh_s: float = 0.25  # how often this gateway measures its own outbound QKD lanes
    liveness: LivenessSettings = field(default_factory=LivenessSettings)  # probes of slow or silent neighbours
    keepalive: KeepaliveSettings = field(default_factory=KeepaliveSettings)  # gRPC pings, channels and server
    prerelay: bool = True
    prerelay_interval_s: float = 0.2
    prerelay_batch: int = 8  # keys relayed concurrently per SAE pair and round
    prerelay_demand: DemandSettings = field(default_factory=DemandSettings)  # which pools, how full, budgets
    qkd_pool: QkdPoolSettings = field(default_factory=QkdPoolSettings)
    qkd_filler: FillerSettings = field(default_factory=FillerSettings)  # on the master end of each QKD link
    relayed_store: RelayedStoreSettings = field(default_factory=RelayedStoreSettings)
    ack_retry_s: float = 30.0  # how long a 020 ack to a callback is retried before its keys are voided
    ack_retry_first_s: float = 0.2  # the first retry delay, doubling after each attempt
    foreign_ack_deadline_s: float = 5.0  # a foreign KMS's ack of a key we hand over; later, the key is voided
    foreign_synchronous: bool = False  # hand keys over in the 020 synchronous mode where versions allow it
    listener: ListenerLimits = field(default_factory=ListenerLimits)  # idle/slow connections on 014, 020, admin

    def __post_init__(self) -> None:
        if min(self.hop_attempts, self.relay_attempts, self.prerelay_batch) < 1:
            raise ValueError("hop_attempts, relay_attempts and prerelay_batch must be at least 1")
        if (
            min(
                self.hop_timeout_s,
                self.hop_window_s,
                self.link_down_s,
                self.prerelay_interval_s,
                self.ack_retry_first_s,
            )
            <= 0
            or min(self.lane_fresh_s, self.lane_refresh_s) <= 0
            or self.foreign_ack_deadline_s <= 0
        ):
            raise ValueError("timeouts and intervals must be positive")
        if self.ack_retry_s < self.ack_retry_first_s:
            raise ValueError("ack_retry_s must be at least ack_retry_first_s")
        if self.redis_wait_replicas < 0:
            raise ValueError("redis_wait_replicas must not be negative")
        if self.key_size_bits % 8 or not 8 <= self.key_size_bits <= 8192:
            raise ValueError("key_size_bits must be a multiple of 8 between 8 and 8192")


@dataclass(frozen=True)
class GatewayPlan:
    topology: Topology
    gateway: Gateway
    redis_url: str
    neighbours: dict[str, Neighbour]
    sae_homes: dict[str, str]  # every SAE of our domains -> its gateway ID
    foreign_saes: dict[str, ForeignKms] = field(default_factory=dict)  # SAEs of foreign KMS domains
    replica: int = 1  # which of the gateway's replicas this process is (1-based)
    redis_cluster: bool = False  # GatewaySettings.redis_cluster
    redis_wait_replicas: int = 0  # GatewaySettings.redis_wait_replicas

    def __post_init__(self) -> None:
        self.gateway.check_replica(self.replica)

    @property
    def id(self) -> str:
        """The gateway's ID: identity, certificates, storage key and Redis are the gateway's, whichever replica."""
        return self.gateway.id

    @property
    def replica_name(self) -> str:
        """This process in logs and status: ``GW2`` when the gateway runs once, else ``GW2/<replica>``."""
        return self.gateway.replica_names()[self.replica - 1]

    def gateway_of(self, sae_id: str) -> str | None:
        """Where a key for ``sae_id`` is stored or handed over: its home gateway, or for an SAE of a
        foreign domain the gateway bordering that domain; None for an SAE unknown to the topology."""
        foreign = self.foreign_saes.get(sae_id)
        return foreign.border if foreign is not None else self.sae_homes.get(sae_id)

    @property
    def bordered_domains(self) -> tuple[ForeignKms, ...]:
        """The foreign KMS domains this gateway speaks 020 to on behalf of every other gateway."""
        return tuple(foreign for foreign in self.topology.foreign_kms if foreign.border == self.id)

    @property
    def local_saes(self) -> tuple[str, ...]:
        return tuple(sae for sae, home in self.sae_homes.items() if home == self.id)

    @property
    def remote_saes(self) -> tuple[str, ...]:
        return tuple(sae for sae, home in self.sae_homes.items() if home != self.id)


def plan_gateway(
    topology: Topology, gateway_id: str, settings: GatewaySettings | None = None, *, replica: int = 1
) -> GatewayPlan:
    settings = settings or GatewaySettings()
    gateways = {gateway.id: gateway for gateway in topology.gateways}
    if gateway_id not in gateways:
        raise TopologyError(f"gateway {gateway_id!r} is not in topology {topology.name!r}: {sorted(gateways)}")
    gateway = gateways[gateway_id]
    redis_port = next(region.redis_port for region in topology.regions if region.id == gateway.region)
    neighbours: dict[str, Neighbour] = {}
    for link in topology.links:
        if gateway_id not in link.gateways:
            continue
        peer_id = link.gateways[1] if link.gateways[0] == gateway_id else link.gateways[0]
        qkd = _qkd_end(topology, link, gateway_id) if link.qkd_link else None
        neighbours[peer_id] = Neighbour(gateways[peer_id], link, LinkPolicy(link.policy), qkd)
    return GatewayPlan(
        topology=topology,
        gateway=gateway,
        redis_url=settings.redis_url or f"redis://127.0.0.1:{redis_port}/0",
        neighbours=neighbours,
        sae_homes={sae.id: sae.gateway for sae in topology.saes},
        foreign_saes={sae: foreign for foreign in topology.foreign_kms for sae in foreign.saes},
        replica=replica,
        redis_cluster=settings.redis_cluster,
        redis_wait_replicas=settings.redis_wait_replicas,
    )


def _qkd_end(topology: Topology, link: Link, gateway_id: str) -> QkdLinkEnd:
    """The first endpoint of a QKD link is its master (it calls enc_keys), the second its slave."""
    qkd_link = next(q for q in topology.qkd_links if q.id == link.qkd_link)
    ends = [end.sae for end in qkd_link.endpoints]
    if set(ends) != set(link.gateways):
        raise TopologyError(f"QKD link {qkd_link.id} joins {ends}, but its relay link joins {list(link.gateways)}")
    own = qkd_link.endpoints[ends.index(gateway_id)]
    peer = qkd_link.endpoints[1 - ends.index(gateway_id)]
    kme = next(k for k in topology.vendor_kms(qkd_link.kms).kmes if k.id == own.kme)
    return QkdLinkEnd(
        link_id=qkd_link.id,
        role=Role.MASTER if ends.index(gateway_id) == 0 else Role.SLAVE,
        peer_sae_id=peer.sae,
        kme_url=f"https://{kme.host}:{kme.port}",
        kme=ExpectedPeer(("kme",), kme.id, kme.tls_name),
    )
