"""Fixtures of the fault tests: the topology's keys once per session, a private Redis per test.

Failure reports of process testbeds carry every process's stderr (the end-to-end tests' hook).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relay import topology as topology_module
from relay.pki.layout import KeyDirectory
from relay.pki.provision import provision
from tests.e2e.conftest import pytest_runtest_makereport  # noqa: F401  (re-exported hook)
from tests.redis_harness import DEFAULT_GATEWAYS, RedisServer, redis_server


@pytest.fixture(scope="session")
def keys_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates and ML-DSA identities of the embedded topology, as ``keys init --keys <root>`` lays them out."""
    root = tmp_path_factory.mktemp("fault-keys")
    provision(topology_module.load_default(), root)
    return root


@pytest.fixture(scope="session")
def topology_keys(keys_root: Path) -> KeyDirectory:
    return KeyDirectory(keys_root / topology_module.load_default().name)


@pytest.fixture
def private_redis(tmp_path: Path, topology_keys: KeyDirectory) -> Iterator[RedisServer]:
    """Shared by every gateway of the embedded topology, each as its own Redis user."""
    with redis_server(tmp_path / "redis", keys=topology_keys, gateways=DEFAULT_GATEWAYS) as server:
        yield server
