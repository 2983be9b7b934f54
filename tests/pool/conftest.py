"""Private Redis servers (standalone and a 3-master cluster) and a real vendor KMS for the pool tests.

The two servers are started once per session and shared; every test gets its own key prefix, so tests
never see each other's keys. Tests that stop or restart Redis start their own server instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from relay.crypto.at_rest import StorageCipher
from relay.etsi014.client import Etsi014Client
from relay.kms_sim.config import SimSettings
from relay.kms_sim.service import start_kms
from relay.pki.layout import KeyDirectory
from relay.pool.connection import RedisBackend, RedisConfig
from relay.pool.keys import Keyspace
from tests.support.pool_data import MASTER_SAE, SLAVE_SAE, Vendor
from tests.support.redis_servers import RedisClusterProcesses, RedisServer, redis_cluster, redis_server
from tests.support.simulated_kms import ManualClock, sim_config


@pytest.fixture(scope="session")
def standalone_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def cluster_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
async def standalone_backend(standalone_redis: RedisServer) -> AsyncIterator[RedisBackend]:
    async with RedisBackend.connect(RedisConfig(standalone_redis.admin_url)) as backend:
        yield backend


@pytest.fixture
async def cluster_backend(cluster_redis: RedisClusterProcesses) -> AsyncIterator[RedisBackend]:
    async with RedisBackend.connect(RedisConfig(cluster_redis.admin_url, cluster=True)) as backend:
        yield backend


@pytest.fixture(params=["standalone", "cluster"])
def backend(request: pytest.FixtureRequest) -> RedisBackend:
    """Each test using it runs once against a single Redis and once against the cluster."""
    return request.getfixturevalue(f"{request.param}_backend")


@pytest.fixture
def keyspace() -> Keyspace:
    return Keyspace(f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
def cipher() -> StorageCipher:
    return StorageCipher(os.urandom(32))


@pytest.fixture
def vendor_settings() -> SimSettings:
    return SimSettings(initial_key_count=200, max_key_count=1000, availability_timeout_s=10.0)


@pytest.fixture
async def vendor(pki: KeyDirectory, vendor_settings: SimSettings) -> AsyncIterator[Vendor]:
    clock = ManualClock()
    running = await start_kms(sim_config(vendor_settings), pki, clock=clock)
    master = Etsi014Client(running.kme_url("KME-A"), pki.client_context(MASTER_SAE))
    slave = Etsi014Client(running.kme_url("KME-B"), pki.client_context(SLAVE_SAE))
    try:
        yield Vendor(running, clock, master, slave)
    finally:
        await master.close()
        await slave.close()
        await running.stop()
