"""Run a simulated vendor KMS: one mutual-TLS 014 listener per KME plus the loopback admin listener."""

from __future__ import annotations

import time
from dataclasses import dataclass

from relay.etsi014.server import create_app
from relay.http_server import RunningSite, start_site
from relay.kms_sim.admin import create_admin_app
from relay.kms_sim.config import SimConfig
from relay.kms_sim.kms import SimulatedKms
from relay.kms_sim.link import Clock
from relay.kms_sim.metrics import KmsMetrics
from relay.pki.layout import KeyDirectory

ADMIN_HOST = "127.0.0.1"


@dataclass
class RunningKms:
    kms: SimulatedKms
    kme_sites: dict[str, RunningSite]
    admin_site: RunningSite | None
    metrics: KmsMetrics

    def kme_url(self, kme_id: str) -> str:
        return self.kme_sites[kme_id].url

    @property
    def admin_url(self) -> str:
        if self.admin_site is None:
            raise RuntimeError("the admin listener is disabled")
        return f"http://{self.admin_site.host}:{self.admin_site.port}"

    async def stop(self) -> None:
        for site in [*self.kme_sites.values(), *([self.admin_site] if self.admin_site else [])]:
            await site.stop()


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
