"""The three-region topology in one event loop: vendor KMS simulators, three gateways, one private Redis.

Every port of the embedded topology is replaced by a free one, so tests run beside a testbed started by
hand. Certificates are provisioned once per session; each test gets fresh Redis data and fresh
processes' worth of state (KMS simulators, keyrings, pools).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from relay import topology as topology_module
from relay.etsi014.client import Etsi014Client
from relay.gateway.config import GatewaySettings, plan_gateway
from relay.gateway.service import RunningGateway, start_gateway
from relay.kms_sim.config import SimSettings, from_topology
from relay.kms_sim.service import RunningKms, start_kms
from relay.loadtest.topologies import three_region_document, with_free_ports
from relay.pki.layout import KeyDirectory
from relay.topology import Topology


def default_document() -> dict[str, Any]:
    """The embedded three-region topology as a document, ready for :func:`with_free_ports`."""
    return three_region_document()


@dataclass
class LocalTestbed:
    topology: Topology
    keys: KeyDirectory
    kms: dict[str, RunningKms]
    gateways: dict[str, RunningGateway]

    def gateway_url(self, gateway_id: str) -> str:
        return self.gateways[gateway_id].sites["etsi014"].url

    def sae(self, sae_id: str) -> Etsi014Client:
        """An ETSI 014 client for ``sae_id`` talking to its home gateway."""
        home = next(sae.gateway for sae in self.topology.saes if sae.id == sae_id)
        return Etsi014Client(self.gateway_url(home), self.keys.client_context(sae_id))

    async def connect_peers(self) -> None:
        """Gateways started one after another: wait until every gRPC channel is up, so no test begins
        with a neighbour still in reconnect backoff."""
        for running in self.gateways.values():
            for peer in running.peers.values():
                assert await peer.wait_ready(10), f"{running.plan.id} cannot reach {peer.id}"

    async def fill_qkd_pools(self) -> None:
        """One filler round per QKD link, so tests start with QKD key in every lane; each waits for its
        peer's channel, since a filler fetches nothing while the peer could not take its copies."""
        for running in self.gateways.values():
            for filler in running.fillers:
                peer = next(
                    p for p in running.peers.values() if p.neighbour.qkd and p.neighbour.qkd.link_id == filler.link_id
                )
                await peer.wait_ready(10)
                await filler.fill_once()

    async def stop_gateway(self, gateway_id: str) -> None:
        await self.gateways.pop(gateway_id).stop()


@contextlib.asynccontextmanager
async def running_testbed(
    keys: KeyDirectory,
    redis_url: str,
    settings: GatewaySettings,
    *,
    sim: SimSettings | None = None,
    document: dict[str, Any] | None = None,
) -> AsyncIterator[LocalTestbed]:
    topology = topology_module.parse(with_free_ports(document or default_document()))
    kms: dict[str, RunningKms] = {}
    gateways: dict[str, RunningGateway] = {}
    testbed = LocalTestbed(topology, keys, kms, gateways)
    try:
        for vendor in topology.kms:
            kms[vendor.id] = await start_kms(from_topology(topology, vendor.id, sim), keys)
        for gateway in topology.gateways:
            gateway_settings = replace(settings, redis_url=redis_url)
            plan = plan_gateway(topology, gateway.id, gateway_settings)
            gateways[gateway.id] = await start_gateway(plan, gateway_settings, keys)
        await testbed.connect_peers()
        await testbed.fill_qkd_pools()
        yield testbed
    finally:
        for running in gateways.values():
            await running.stop()
        for running_kms in kms.values():
            await running_kms.stop()
