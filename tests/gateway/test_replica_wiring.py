"""A gateway's replicas as its neighbours and its SAEs meet them: real gRPC servers on each replica's port,
real aiohttp listeners sharing one port, and two replicas of a real gateway started in one process.

What is checked is the wiring of issue 16's "replicas" part: ``Neighbour.grpc_target`` with the project's
channel options and TLS credentials spreads calls over every replica and keeps calling the live one when
another stops; ``start_site(reuse_port=True)`` lets several listeners share a port, each serving, and a
survivor serving alone; a replicated gateway's replicas share their ETSI 014 and 020 ports and have a gRPC
and an admin port each.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web

from relay import topology as topology_module
from relay.gateway.config import GatewaySettings, plan_gateway
from relay.gateway.grpc_tls import channel_credentials, channel_options, gateway_server, server_credentials
from relay.gateway.service import start_gateway
from relay.http_server import RunningSite, start_site
from relay.loadtest.topologies import with_free_ports
from relay.pki.layout import KeyDirectory
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc
from relay.topology import Gateway, Topology, TopologyError
from tests.support.admin_http import get
from tests.support.local_testbed import default_document
from tests.support.ports import free_port
from tests.support.redis_servers import RedisServer

CALLS = 20


def free_port_pair(taken: frozenset[int] = frozenset()) -> int:
    """A port P such that P and P + 1 are both free now and neither is in ``taken``: two replicas' gRPC ports."""
    for _ in range(100):
        port = free_port()
        if port + 1 > 65535 or {port, port + 1} & taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two adjacent free ports")


def with_gw2_replicated(topology: Topology, grpc_port: int, **changes: Any) -> Topology:
    gateways = tuple(
        replace(g, replicas=2, grpc_port=grpc_port, **changes) if g.id == "GW2" else g for g in topology.gateways
    )
    return replace(topology, gateways=gateways)


# ----- what a neighbour dials -------------------------------------------------------------------------


def neighbour_of_gw1(gw2: Gateway) -> str:
    topology = topology_module.load_default()
    topology = replace(topology, gateways=tuple(gw2 if g.id == "GW2" else g for g in topology.gateways))
    return plan_gateway(topology, "GW1").neighbours["GW2"].grpc_target


def test_grpc_targets_name_every_replica_of_a_neighbour() -> None:
    gw2 = topology_module.load_default().gateways[1]
    assert neighbour_of_gw1(gw2) == "127.0.0.1:19503"  # one replica: as before replicas existed
    assert neighbour_of_gw1(replace(gw2, replicas=3)) == "ipv4:127.0.0.1:19503,127.0.0.1:19504,127.0.0.1:19505"
    assert neighbour_of_gw1(replace(gw2, replicas=2, host="::1")) == "ipv6:[::1]:19503,[::1]:19504"
    assert neighbour_of_gw1(replace(gw2, replicas=2, host="gw2")) == "dns:///gw2:19503"
    assert ("grpc.lb_policy_name", "round_robin") in channel_options("GW2")


def test_a_plan_is_for_one_replica_the_topology_gives_the_gateway() -> None:
    topology = with_gw2_replicated(topology_module.load_default(), 19503, admin_port=19510)
    assert plan_gateway(topology, "GW2").replica_name == "GW2/1"
    second = plan_gateway(topology, "GW2", replica=2)
    assert (second.id, second.replica, second.replica_name) == ("GW2", 2, "GW2/2")
    assert plan_gateway(topology, "GW1").replica_name == "GW1"
    with pytest.raises(TopologyError, match=r"gateway GW2 has 2 replicas \(1 to 2\) in the topology; there is no"):
        plan_gateway(topology, "GW2", replica=3)


# ----- (a) round robin over real gRPC servers ---------------------------------------------------------


class ReplicaReporter(rpc.EncapsulationKeysServicer):
    """Answers with the name of the replica that served the call, so the test sees where each call went."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def GetEncapsulationKey(
        self, request: pb.GetEncapsulationKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.SignedEncapsulationKey:
        return pb.SignedEncapsulationKey(announcement=self.name.encode())


async def replica_server(keys: KeyDirectory, gateway: Gateway, replica: int) -> grpc.aio.Server:
    """A gateway's gRPC server as `start_gateway` makes it (TLS 1.3 only, its certificate), on the replica's port."""
    server = gateway_server()
    rpc.add_EncapsulationKeysServicer_to_server(ReplicaReporter(gateway.replica_names()[replica - 1]), server)
    port = gateway.replica_grpc_port(replica)
    assert server.add_secure_port(f"127.0.0.1:{port}", server_credentials(keys, gateway.id)) == port
    await server.start()
    return server


async def served_by(stub: rpc.EncapsulationKeysStub, calls: int) -> collections.Counter[str]:
    answers = [await stub.GetEncapsulationKey(pb.GetEncapsulationKeyRequest(), timeout=5) for _ in range(calls)]
    return collections.Counter(answer.announcement.decode() for answer in answers)


async def test_a_neighbour_channel_spreads_calls_over_the_replicas_and_skips_a_stopped_one(
    topology_keys: KeyDirectory,
) -> None:
    topology = with_gw2_replicated(topology_module.load_default(), free_port_pair(), admin_port=None)
    gw2 = next(g for g in topology.gateways if g.id == "GW2")
    servers = [await replica_server(topology_keys, gw2, replica) for replica in (1, 2)]
    neighbour = plan_gateway(topology, "GW1").neighbours["GW2"]
    try:
        async with grpc.aio.secure_channel(
            neighbour.grpc_target, channel_credentials(topology_keys, "GW1"), options=channel_options("GW2")
        ) as channel:
            stub = rpc.EncapsulationKeysStub(channel)
            seen: collections.Counter[str] = collections.Counter()
            while len(seen) < 2 and sum(seen.values()) < 100:  # round robin adds a replica once it connects
                seen += await served_by(stub, 1)
            assert set(seen) == {"GW2/1", "GW2/2"}
            assert await served_by(stub, CALLS) == {"GW2/1": CALLS // 2, "GW2/2": CALLS // 2}

            await servers[0].stop(None)  # replica 1 goes away; its subchannel fails and is skipped
            assert await served_by(stub, CALLS) == {"GW2/2": CALLS}
    finally:
        for server in servers:
            await server.stop(None)


# ----- (b) listeners sharing a port -------------------------------------------------------------------


def naming_app(name: str) -> web.Application:
    async def whoami(request: web.Request) -> web.Response:
        return web.Response(text=name)

    app = web.Application()
    app.router.add_get("/", whoami)
    return app


async def answered_by(port: int, connections: int) -> collections.Counter[str]:
    """Who answered each of ``connections`` fresh connections (the kernel balances connections, not requests)."""
    names: collections.Counter[str] = collections.Counter()
    for _ in range(connections):
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
            session.get(f"http://127.0.0.1:{port}/") as response,
        ):
            assert response.status == 200
            names[await response.text()] += 1
    return names


@contextlib.asynccontextmanager
async def sites_on_one_port(names: tuple[str, ...]) -> AsyncIterator[list[RunningSite]]:
    port = free_port()
    sites = [await start_site(naming_app(name), "127.0.0.1", port, None, reuse_port=True) for name in names]
    try:
        yield sites
    finally:
        for site in sites:
            await site.stop()


async def test_listeners_with_reuse_port_share_a_port_and_a_survivor_serves_alone() -> None:
    async with sites_on_one_port(("replica-1", "replica-2")) as (first, second):
        assert first.port == second.port
        seen: collections.Counter[str] = collections.Counter()
        while len(seen) < 2 and sum(seen.values()) < 200:  # connections hash over both listeners
            seen += await answered_by(first.port, 1)
        assert set(seen) == {"replica-1", "replica-2"}

        await first.stop()
        assert await answered_by(second.port, CALLS) == {"replica-2": CALLS}


async def test_without_reuse_port_a_taken_port_still_fails_the_start() -> None:
    async with sites_on_one_port(("replica-1",)) as (site,):
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{site.port}"):
            await start_site(naming_app("intruder"), "127.0.0.1", site.port, None)


# ----- two replicas of a real gateway in one process --------------------------------------------------


@pytest.fixture
def replicated_topology() -> Topology:
    """The three-region topology on free ports, GW2 with two replicas (adjacent gRPC and admin ports)."""
    document = with_free_ports(default_document())
    taken = frozenset(
        port
        for region in document["regions"]
        for entry in region["gateways"]
        for port in (entry["etsi014_port"], entry["etsi020_port"], entry["grpc_port"], entry["admin_port"])
    )
    gw2 = document["regions"][1]["gateways"][0]
    gw2["grpc_port"] = free_port_pair(taken)
    gw2["admin_port"] = free_port_pair(taken | {gw2["grpc_port"], gw2["grpc_port"] + 1})
    gw2["replicas"] = 2
    return topology_module.parse(document)


async def test_two_replicas_of_a_gateway_start_in_one_process_on_its_shared_ports(
    replicated_topology: Topology, topology_keys: KeyDirectory, private_redis: RedisServer
) -> None:
    settings = GatewaySettings(prerelay=False, redis_url=private_redis.url)
    async with contextlib.AsyncExitStack() as stack:
        replicas = []
        for replica in (1, 2):
            plan = plan_gateway(replicated_topology, "GW2", settings, replica=replica)
            running = await start_gateway(plan, settings, topology_keys)
            stack.push_async_callback(running.stop)
            replicas.append(running)
        gw2 = replicas[0].plan.gateway
        for name, port in (("etsi014", gw2.etsi014_port), ("etsi020", gw2.etsi020_port)):
            assert [running.sites[name].port for running in replicas] == [port, port]
        assert [running.grpc_port for running in replicas] == [gw2.grpc_port, gw2.grpc_port + 1]
        assert [running.sites["admin"].port for running in replicas] == [gw2.admin_port, gw2.admin_port + 1]
        for running in replicas:
            status, _, _ = await get(f"http://127.0.0.1:{running.sites['admin'].port}/healthz")
            assert status == 200, running.plan.replica_name

        # the shared 014 port completes an mTLS handshake (whichever replica accepts it)
        context = topology_keys.client_context("SAE-R2-A")
        for _ in range(4):
            _, writer = await asyncio.open_connection("127.0.0.1", gw2.etsi014_port, ssl=context)
            assert isinstance(writer.get_extra_info("ssl_object"), ssl.SSLObject)
            writer.close()
            await writer.wait_closed()
