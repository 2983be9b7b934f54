"""``testbed up --redis-cluster``: each region's Redis a real 6-node Redis Cluster, gateways on it.

One region with two gateways (GW1, GW2, a pqc-only link) keeps it to six Redis nodes, one KMS simulator
and two gateway processes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from relay import topology as topology_module
from relay.crypto.at_rest import StorageCipher
from relay.domain import Key, gateway_key_prefix
from relay.gateway.config import GatewaySettings, plan_gateway
from relay.gateway.storage import redis_config
from relay.loadtest.topologies import with_free_ports
from relay.pki.layout import KeyDirectory
from relay.pki.redis_access import ADMIN_USER, read_credentials
from relay.pool import RedisBackend, RelayedStoreSettings
from relay.pool.keys import Keyspace
from relay.pool.relayed_store import RelayedKeyStore
from relay.testbed.demo import exchange_keys
from relay.testbed.launcher import TestbedState, down, is_alive, up
from relay.testbed.region_redis import node_roles
from relay.testbed.status import collect, render
from relay.topology import Topology
from tests.support.pool_data import deliver_to_slave, make_keys

CIPHER = StorageCipher(b"c" * 32)


def one_region_document() -> dict[str, Any]:
    gateways = [{"id": f"GW{n}", "etsi014_port": 1, "etsi020_port": 2, "grpc_port": 3, "admin_port": 4} for n in (1, 2)]
    return {
        "name": "cluster-pair",
        "kms": [{"id": "KMS-P", "region": "r1", "admin_port": 5, "kmes": [{"id": "KME-P", "port": 6}]}],
        "regions": [
            {
                "id": "r1",
                "redis_port": 7,
                "gateways": gateways,
                "saes": [{"id": "SAE-P1", "gateway": "GW1"}, {"id": "SAE-P2", "gateway": "GW2"}],
            }
        ],
        "links": [{"gateways": ["GW1", "GW2"], "policy": "pqc-only"}],
    }


@contextlib.asynccontextmanager
async def gateway_store(topology: Topology, keys: KeyDirectory) -> AsyncIterator[RelayedKeyStore]:
    """GW1's relayed-key store as GW1 opens it: its own ``redis_config`` (its Redis login) with the cluster flag."""
    plan = plan_gateway(topology, "GW1", GatewaySettings(redis_cluster=True))
    config = redis_config(plan, keys)
    assert config.cluster and config.username == "GW1"
    async with RedisBackend.connect(config) as backend:
        yield RelayedKeyStore(backend, CIPHER, Keyspace(gateway_key_prefix("GW1")), RelayedStoreSettings())


async def store_and_take(topology: Topology, keys: KeyDirectory) -> Key:
    """Ready keys taken once, a key delivered to its slave once; returns a key left waiting for its slave."""
    ready, waiting = make_keys(2), make_keys(2)
    async with gateway_store(topology, keys) as store:
        await store.put_ready("SAE-P1", "SAE-P2", ready)
        taken = await store.take_ready("SAE-P1", "SAE-P2", 2)
        assert {(k.key_id, k.key) for k in taken} == {(k.key_id, k.key) for k in ready}
        assert await store.take_ready("SAE-P1", "SAE-P2", 1) == []  # taken once
        await store.put_for_slave("SAE-P1", "SAE-P2", waiting)
        delivered = await deliver_to_slave(store, "SAE-P2", "SAE-P1", [waiting[0].key_id])
        assert [(k.key_id, k.key) for k in delivered] == [(waiting[0].key_id, waiting[0].key)]
    return waiting[1]


async def deliver(topology: Topology, keys: KeyDirectory, key: Key) -> list[Key]:
    async with gateway_store(topology, keys) as store:
        return await deliver_to_slave(store, "SAE-P2", "SAE-P1", [key.key_id])


def test_redis_cluster_of_three_masters_with_replicas_serves_the_gateways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    topology_file = Path("topology.yaml")
    topology_file.write_text(yaml.safe_dump(with_free_ports(one_region_document(), redis_cluster=True)))
    topology = topology_module.load(topology_file)
    keys = KeyDirectory(Path("keys") / topology.name)
    state = up(topology, topology_file, Path("keys"), Path("state"), ["--no-prerelay"], redis_cluster=True)
    try:
        nodes = [s for s in state.services if s.kind == "redis"]
        assert state.redis_cluster and [s.name for s in nodes] == [f"redis-r1/{k}" for k in range(1, 7)]
        gateways = [s for s in state.services if s.kind == "gateway"]
        assert all("--redis-cluster" in Path(f"/proc/{s.pid}/cmdline").read_text().split("\0") for s in gateways)

        port = topology.regions[0].redis_port
        password = read_credentials(keys, ADMIN_USER).password
        with redis.Redis("127.0.0.1", port, username=ADMIN_USER, password=password) as admin:
            roles = node_roles(admin.execute_command("CLUSTER", "NODES").decode())
        masters = {address for address, role in roles.items() if role.master is None}
        assert len(roles) == 6 and len(masters) == 3
        assert sorted(role.master for role in roles.values() if role.master is not None) == sorted(masters)

        kept = asyncio.run(store_and_take(topology, keys))
        (exchange,) = asyncio.run(exchange_keys(topology, state, keys))  # GW1 relays to GW2, both on the cluster
        assert (exchange.master, exchange.slave, exchange.identical) == ("SAE-P1", "SAE-P2", True)

        recorded = TestbedState.load(Path("state"))
        assert recorded is not None and recorded.redis_cluster
        screen = render(topology, recorded, asyncio.run(collect(topology, recorded)))
        assert "9/9 processes running" in screen and "admin unreachable" not in screen
        assert screen.count(", master") == 3 and screen.count(", replica of redis-r1/") == 3
    finally:
        stopped = down(Path("state"))
    assert sorted(stopped) == sorted(s.name for s in state.services)
    assert not any(is_alive(s.pid) for s in state.services)

    # up again on the same state: the nodes find their cluster in nodes.conf and the AOF kept the key
    again = up(topology, topology_file, Path("keys"), Path("state"), ["--no-prerelay"], redis_cluster=True)
    try:
        assert [(k.key_id, k.key) for k in asyncio.run(deliver(topology, keys, kept))] == [(kept.key_id, kept.key)]
    finally:
        down(Path("state"))
    assert not any(is_alive(s.pid) for s in again.services)
