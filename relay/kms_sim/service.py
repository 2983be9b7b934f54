"""Run a simulated vendor KMS: one mutual-TLS 014 listener per KME plus the loopback admin listener; or a
foreign KMS domain: a 014 listener for its SAEs, a 020 listener (TLS 1.3) for its bordering gateway."""

from __future__ import annotations

import contextlib
import ssl
import time
from dataclasses import dataclass

from relay.etsi014.server import create_app
from relay.etsi020.client import Etsi020Client
from relay.etsi020.server import create_app as create_etsi020_app
from relay.http_server import RunningSite, start_site
from relay.kms_sim.admin import add_handover_controls, create_admin_app
from relay.kms_sim.config import KmeEndpoint, SimConfig, SimSettings
from relay.kms_sim.foreign import DEFAULT_ACK_DEADLINE_S, ForeignDomain
from relay.kms_sim.kms import SimulatedKms
from relay.kms_sim.link import Clock
from relay.kms_sim.metrics import KmsMetrics
from relay.pki.layout import KeyDirectory
from relay.pki.tls import ExpectedPeer
from relay.topology import Topology

TLS13 = ssl.TLSVersion.TLSv1_3

ADMIN_HOST = "127.0.0.1"


@dataclass
class RunningKms:
    kms: SimulatedKms
    kme_sites: dict[str, RunningSite]
    admin_site: RunningSite | None
    metrics: KmsMetrics
    foreign: ForeignDomain | None = None  # a foreign domain's 020 face
    etsi020_site: RunningSite | None = None
    clients: tuple[Etsi020Client, ...] = ()

    def kme_url(self, kme_id: str) -> str:
        return self.kme_sites[kme_id].url

    @property
    def admin_url(self) -> str:
        if self.admin_site is None:
            raise RuntimeError("the admin listener is disabled")
        return f"http://{self.admin_site.host}:{self.admin_site.port}"

    async def stop(self) -> None:
        extra = [site for site in (self.etsi020_site, self.admin_site) if site is not None]
        for site in [*self.kme_sites.values(), *extra]:
            await site.stop()
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()


async def start_kms(config: SimConfig, keys: KeyDirectory, *, clock: Clock = time.monotonic) -> RunningKms:
    kms = SimulatedKms(config, clock=clock)
    metrics = KmsMetrics(kms)
    sites: dict[str, RunningSite] = {}
    try:
        for kme in config.kmes:
            app = metrics.requests.instrument(create_app(kms.frontend(kme.id)), kme.id)
            sites[kme.id] = await start_site(app, kme.host, kme.port, keys.server_context(kme.id))
        admin = None
        if config.admin_port is not None:
            admin = await start_site(create_admin_app(kms, metrics), ADMIN_HOST, config.admin_port, None)
    except BaseException:
        for site in sites.values():
            await site.stop()
        raise
    return RunningKms(kms, sites, admin, metrics)


async def start_foreign_kms(
    topology: Topology,
    kms_id: str,
    keys: KeyDirectory,
    settings: SimSettings | None = None,
    *,
    ack_deadline_s: float = DEFAULT_ACK_DEADLINE_S,
) -> RunningKms:
    """The stand-in for a foreign KMS domain of the topology, on its ``etsi014_port`` and ``etsi020_port``."""
    domain = topology.foreign_domain(kms_id)
    if domain.etsi014_port is None:
        raise ValueError(f"foreign KMS {kms_id} has no etsi014_port for its SAEs: it cannot be simulated")
    me = KmeEndpoint(domain.identity, domain.host, domain.etsi014_port)
    config = SimConfig(
        domain.id, (me,), dict.fromkeys(domain.saes, me.id), (), settings or SimSettings(), domain.admin_port
    )
    kms = SimulatedKms(config)
    border = next(g for g in topology.gateways if g.id == domain.border)
    context = keys.client_context(domain.identity, minimum=TLS13, peer=ExpectedPeer(("gateway",), border.id))
    client = Etsi020Client(f"https://{border.host}:{border.etsi020_port}", context)  # ext_keys, void and acks
    foreign = ForeignDomain(kms, domain, topology, client, ack_deadline_s=ack_deadline_s)
    metrics = KmsMetrics(kms)
    sites: dict[str, RunningSite] = {}
    running = RunningKms(kms, sites, None, metrics, foreign, None, (client,))
    try:
        app014 = metrics.requests.instrument(create_app(foreign), me.id)
        sites[me.id] = await start_site(app014, me.host, me.port, keys.server_context(me.id))
        app020 = metrics.requests.instrument(create_etsi020_app(foreign, foreign.send_acks), "etsi020")
        server020 = keys.server_context(me.id, minimum=TLS13)
        running.etsi020_site = await start_site(app020, domain.host, domain.etsi020_port, server020)
        if domain.admin_port is not None:
            admin = create_admin_app(kms, metrics)
            add_handover_controls(admin, foreign.controls)
            running.admin_site = await start_site(admin, ADMIN_HOST, domain.admin_port, None)
    except BaseException:
        await running.stop()
        raise
    return running
