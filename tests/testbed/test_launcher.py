"""``testbed up|status|down`` with real processes: private Redis servers, KMS simulators, gateways."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from relay import topology as topology_module
from relay.pki.layout import KeyDirectory
from relay.testbed.demo import exchange_keys
from relay.testbed.launcher import TestbedError, TestbedState, down, is_alive, up
from relay.testbed.status import collect, render
from tests.support.local_testbed import default_document, with_free_ports


def test_up_relays_keys_reports_status_and_down_stops_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative key and state directories, as `./run demo` passes them
    topology_file = Path("topology.yaml")
    topology_file.write_text(yaml.safe_dump(with_free_ports(default_document())))
    topology = topology_module.load(topology_file)
    state_dir = Path("state")
    state = up(topology, topology_file, Path("keys"), state_dir)
    try:
        # three Redis, two vendor KMSs and the foreign domain KMS-X, three gateways
        assert {s.kind for s in state.services} == {"redis", "kms", "gateway"} and len(state.services) == 9
        assert all(is_alive(s.pid) for s in state.services)
        try:
            up(topology, topology_file, Path("keys"), state_dir)
            raise AssertionError("a second up must be refused")
        except TestbedError as refused:
            assert "already running" in str(refused)
        keys = KeyDirectory(Path("keys") / topology.name)
        exchanges = asyncio.run(exchange_keys(topology, state, keys))
        assert [(e.master, e.slave, e.identical) for e in exchanges] == [
            ("SAE-R1-A", "SAE-R2-A", True),
            ("SAE-R1-A", "SAE-R3-A", True),
            ("SAE-R2-A", "SAE-R3-A", True),
            ("SAE-R1-A", "SAE-X-A", True),  # across the border to the foreign domain, over 020
            ("SAE-X-A", "SAE-R1-A", True),
        ]
        recorded = TestbedState.load(state_dir)
        assert recorded is not None
        screen = render(topology, recorded, asyncio.run(collect(topology, recorded)))
        assert "9/9 processes running" in screen
        assert "QKD-GW2-GW3" in screen and "require-qkd" in screen and "admin unreachable" not in screen
    finally:
        stopped = down(state_dir)
    assert sorted(stopped) == sorted(s.name for s in state.services)
    assert not any(is_alive(s.pid) for s in state.services)
    assert down(state_dir) == []
