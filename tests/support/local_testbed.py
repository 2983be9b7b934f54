"""The three-region topology in one event loop: vendor KMS simulators, three gateways, one private Redis.

Every port of the embedded topology is replaced by a free one, so tests run beside a testbed started by
hand. Certificates are provisioned once per session; each test gets fresh Redis data and fresh
processes' worth of state (KMS simulators, keyrings, pools).

One start-up serves every in-process test: :func:`running_testbed` can also put a cuttable
:class:`~tests.support.tcp_proxy.TcpProxy` on chosen links and give gateways their own clocks (the
fault tests). Each gateway then gets its own view of the topology: a proxied neighbour's ``grpc_port``
there is the proxy's, while the neighbour itself listens on the real one from the shared document.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from relay import topology as topology_module
from relay.crypto import Clock, system_clock_ms
from relay.etsi014.client import Etsi014Client
from relay.gateway.config import GatewaySettings, plan_gateway
from relay.gateway.service import RunningGateway, start_gateway
from relay.kms_sim.config import SimSettings, from_topology
from relay.kms_sim.service import RunningKms, start_foreign_kms, start_kms
from relay.loadtest.topologies import UNMETERED_SHARES, three_region_document, with_free_ports
from relay.pki.layout import KeyDirectory
from relay.topology import Topology
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until

PLENTY_OF_QKD_KEY = SimSettings(initial_key_count=5000)  # the vendor links' backlog outlasts any test's load


def default_document() -> dict[str, Any]:
    """The embedded three-region topology as a document, ready for :func:`with_free_ports`; its fair
    shares are lifted (the testbeds' loads are closed loops over vendor links that start with thousands of
    keys), except where a test of the shares deletes ``fair_share`` or sets its own."""
    return {**three_region_document(), "fair_share": dict(UNMETERED_SHARES)}


class SkewedClock:
    """Milliseconds of the system clock plus a mutable offset (a gateway whose clock drifts)."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return system_clock_ms() + self.offset_ms


@dataclass
class LocalTestbed:
    topology: Topology
    keys: KeyDirectory
    kms: dict[str, RunningKms]
    gateways: dict[str, RunningGateway]
    proxies: dict[tuple[str, str], TcpProxy] = field(default_factory=dict)  # (caller, callee) -> its proxy

    def gateway_url(self, gateway_id: str) -> str:
        return self.gateways[gateway_id].sites["etsi014"].url

    def sae(self, sae_id: str) -> Etsi014Client:
        """An ETSI 014 client for ``sae_id`` talking to its home gateway, or to its foreign domain's KMS."""
        foreign = next((f for f in self.topology.foreign_kms if sae_id in f.saes), None)
        if foreign is not None:
            return Etsi014Client(self.kms[foreign.id].kme_url(foreign.identity), self.keys.client_context(sae_id))
        home = next(sae.gateway for sae in self.topology.saes if sae.id == sae_id)
        return Etsi014Client(self.gateway_url(home), self.keys.client_context(sae_id))

    def cut(self, a: str, b: str) -> None:
        """Cut the proxied link between ``a`` and ``b`` in both directions."""
        for key in ((a, b), (b, a)):
            self.proxies[key].cut()

    def heal(self, a: str, b: str) -> None:
        for key in ((a, b), (b, a)):
            self.proxies[key].heal()

    async def connect_peers(self) -> None:
        """Gateways started one after another: wait until every gRPC channel is up, so no test begins
        with a neighbour still in reconnect backoff."""
        for running in self.gateways.values():
            for peer in running.peers.values():
                assert await peer.wait_ready(10), f"{running.plan.id} cannot reach {peer.id}"
        for running in self.gateways.values():  # a neighbour probed before it listened stays down until re-probed
            view = running.metrics.sources
            assert view is not None
            await wait_until(
                lambda view=view: all(view.reachable(n) for n in view.plan.neighbours),
                timeout_s=10,
                what=f"{running.plan.id}'s neighbours answering their probes",
            )

    async def fill_qkd_pools(self) -> None:
        """One filler round per QKD link, so tests start with QKD key in every lane (and every gateway's
        lane board knows it); each waits for its peer's channel, since a filler fetches nothing while the
        peer could not take its copies."""
        for running in self.gateways.values():
            for filler in running.fillers:
                peer = next(
                    p for p in running.peers.values() if p.neighbour.qkd and p.neighbour.qkd.link_id == filler.link_id
                )
                await peer.wait_ready(10)
                await filler.fill_once()
        for running in self.gateways.values():
            await running.measure_lanes()

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
    proxied_links: Sequence[tuple[str, str]] = (),
    clocks: Mapping[str, Clock] | None = None,
) -> AsyncIterator[LocalTestbed]:
    """Start KMSs and gateways (each gateway of a ``proxied_links`` link dials its neighbour through a
    proxy; ``clocks`` by gateway ID), wait for every channel, fill the QKD pools; stop all on exit."""
    shared = with_free_ports(document or default_document())
    topology = topology_module.parse(copy.deepcopy(shared))
    real_ports = {gateway.id: gateway.grpc_port for gateway in topology.gateways}
    testbed = LocalTestbed(topology, keys, {}, {})
    try:
        for a, b in proxied_links:
            for caller, callee in ((a, b), (b, a)):
                testbed.proxies[caller, callee] = proxy = TcpProxy(real_ports[callee])
                await proxy.start()
        for vendor in topology.kms:
            testbed.kms[vendor.id] = await start_kms(from_topology(topology, vendor.id, sim), keys)
        for foreign in topology.foreign_kms:  # the other vendor's domain, a peer over 020
            testbed.kms[foreign.id] = await start_foreign_kms(topology, foreign.id, keys, sim)
        gateway_settings = replace(settings, redis_url=redis_url)
        for gateway in topology.gateways:
            plan = plan_gateway(_view_of(gateway.id, shared, testbed.proxies), gateway.id, gateway_settings)
            clock = (clocks or {}).get(gateway.id, system_clock_ms)
            testbed.gateways[gateway.id] = await start_gateway(plan, gateway_settings, keys, clock=clock)
        await testbed.connect_peers()
        await testbed.fill_qkd_pools()
        yield testbed
    finally:
        for running in testbed.gateways.values():
            await running.stop()
        for running_kms in testbed.kms.values():
            await running_kms.stop()
        for proxy in testbed.proxies.values():
            await proxy.close()


def _view_of(gateway_id: str, document: dict[str, Any], proxies: Mapping[tuple[str, str], TcpProxy]) -> Topology:
    """The topology as ``gateway_id`` sees it: the neighbours it reaches through a proxy at the proxy's port."""
    view = copy.deepcopy(document)
    for region in view["regions"]:
        for entry in region["gateways"]:
            if (gateway_id, entry["id"]) in proxies:
                entry["grpc_port"] = proxies[gateway_id, entry["id"]].port
    return topology_module.parse(view)
