"""Fixtures of the fault tests: the topology's keys once per session, laid out as ``keys init`` does, so
process testbeds and in-process ones share them (a private Redis per test comes from ``tests/conftest.py``),
and the on-demand process testbed the frozen-gateway tests freeze parts of."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relay import topology as topology_module
from relay.pki.layout import KeyDirectory
from relay.pki.provision import provision
from tests.support.process_testbed import ProcessTestbed


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
def on_demand_testbed(tmp_path: Path, keys_root: Path) -> Iterator[ProcessTestbed]:
    """The three regions as processes, no pre-relay (every key relayed when asked), plenty of QKD key."""
    testbed = ProcessTestbed(
        tmp_path / "testbed", keys_root, gateway_options=["--no-prerelay"], kms_options=["--initial-keys", "5000"]
    )
    testbed.start()
    try:
        yield testbed
    finally:
        testbed.stop()
