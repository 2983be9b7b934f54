"""Fixtures of the fault tests: the topology's keys once per session, laid out as ``keys init`` does, so
process testbeds and in-process ones share them (a private Redis per test comes from ``tests/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay import topology as topology_module
from relay.pki.layout import KeyDirectory
from relay.pki.provision import provision


@pytest.fixture(scope="session")
def keys_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates and ML-DSA identities of the embedded topology, as ``keys init --keys <root>`` lays them out."""
    root = tmp_path_factory.mktemp("fault-keys")
    provision(topology_module.load_default(), root)
    return root


@pytest.fixture(scope="session")
def topology_keys(keys_root: Path) -> KeyDirectory:
    return KeyDirectory(keys_root / topology_module.load_default().name)
