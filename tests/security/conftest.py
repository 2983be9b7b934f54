"""Fixtures for the security tests: the topology's certificates, a foreign CA's, one threaded testbed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from relay import topology as topology_module
from relay.pki.layout import KeyDirectory
from relay.pki.provision import provision
from tests.support.redis_servers import DEFAULT_GATEWAYS, RedisServer, redis_server
from tests.support.threaded_testbed import ThreadedTestbed, threaded_testbed


@pytest.fixture(scope="session")
def security_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyDirectory:
    return provision(topology_module.load_default(), tmp_path_factory.mktemp("security-keys")).directory


@pytest.fixture(scope="session")
def foreign_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyDirectory:
    """The same entity names, issued by another CA (and with other ML-DSA identities)."""
    return provision(topology_module.load_default(), tmp_path_factory.mktemp("foreign-keys")).directory


@pytest.fixture(scope="module")
def security_redis(security_keys: KeyDirectory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    directory = tmp_path_factory.mktemp("security-redis")
    with redis_server(directory, keys=security_keys, gateways=DEFAULT_GATEWAYS) as redis:
        yield redis


@pytest.fixture(scope="module")
def bed(security_keys: KeyDirectory, security_redis: RedisServer) -> Iterator[ThreadedTestbed]:
    with threaded_testbed(security_keys, security_redis.url) as bed:
        yield bed
