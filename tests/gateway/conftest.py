"""Fixtures for gateway tests: the topology's certificates (once per session) and a private Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relay import topology as topology_module
from relay.pki.layout import KeyDirectory
from relay.pki.provision import provision
from tests.redis_harness import DEFAULT_GATEWAYS, RedisServer, redis_server


@pytest.fixture(scope="session")
def topology_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyDirectory:
    """Certificates and ML-DSA identities of the embedded three-region topology (ports do not matter)."""
    return provision(topology_module.load_default(), tmp_path_factory.mktemp("keys")).directory


@pytest.fixture
def private_redis(tmp_path: Path, topology_keys: KeyDirectory) -> Iterator[RedisServer]:
    """Shared by every gateway of the embedded topology, each as its own Redis user."""
    with redis_server(tmp_path / "redis", keys=topology_keys, gateways=DEFAULT_GATEWAYS) as server:
        yield server
