"""Fixtures for the fuzzers: the topology's certificates and one threaded testbed per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from relay import topology as topology_module
from relay.pki.layout import KeyDirectory
from relay.pki.provision import provision
from tests.support.redis_servers import DEFAULT_GATEWAYS, redis_server
from tests.support.threaded_testbed import ThreadedTestbed, threaded_testbed


@pytest.fixture(scope="session")
def fuzz_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyDirectory:
    return provision(topology_module.load_default(), tmp_path_factory.mktemp("fuzz-keys")).directory


@pytest.fixture(scope="module")
def bed(fuzz_keys: KeyDirectory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedTestbed]:
    directory = tmp_path_factory.mktemp("fuzz-redis")
    with (
        redis_server(directory, keys=fuzz_keys, gateways=DEFAULT_GATEWAYS) as redis,
        threaded_testbed(fuzz_keys, redis.url) as bed,
    ):
        yield bed
