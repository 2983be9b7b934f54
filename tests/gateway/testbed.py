"""The three-region topology in one event loop: vendor KMS simulators, three gateways, one private Redis.

Every port of the embedded topology is replaced by a free one, so tests run beside a testbed started by
hand. Certificates are provisioned once per session; each test gets fresh Redis data and fresh
processes' worth of state (KMS simulators, keyrings, pools).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

import yaml

from relay import topology as topology_module
from relay.etsi014.client import Etsi014Client
from relay.gateway.config import GatewaySettings, plan_gateway
from relay.gateway.service import RunningGateway, start_gateway
from relay.kms_sim.config import SimSettings, from_topology
from relay.kms_sim.service import RunningKms, start_kms
from relay.pki.layout import KeyDirectory
from relay.topology import Topology


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def default_document() -> dict[str, Any]:
    text = resources.files("relay.topologies").joinpath("three-region.yaml").read_text()
    return yaml.safe_load(text)


def with_free_ports(document: dict[str, Any]) -> dict[str, Any]:
    """The same topology with every listening port replaced by a currently free one."""
    fields = [(kms, "admin_port") for kms in document["kms"]]
    fields += [(kme, "port") for kms in document["kms"] for kme in kms["kmes"]]
    fields += [(region, "redis_port") for region in document["regions"]]
    fields += [
        (gateway, name)
        for region in document["regions"]
        for gateway in region["gateways"]
        for name in ("etsi014_port", "etsi020_port", "grpc_port", "admin_port")
        if name in gateway
    ]
    for (item, name), port in zip(fields, free_ports(len(fields)), strict=True):
        item[name] = port
    return document


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

    async def fill_qkd_pools(self) -> None:
        """One filler round per QKD link, so tests start with QKD key in every lane."""
        for running in self.gateways.values():
            for filler in running.fillers:
                await filler.fill_once()

    async def stop_gateway(self, gateway_id: str) -> None:
        await self.gateways.pop(gateway_id).stop()


@contextlib.asynccontextmanager
async def running_testbed(
    keys: KeyDirectory, redis_url: str, settings: GatewaySettings, *, sim: SimSettings | None = None,
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
        await testbed.fill_qkd_pools()
        yield testbed
    finally:
        for running in gateways.values():
            await running.stop()
        for running_kms in kms.values():
            await running_kms.stop()
