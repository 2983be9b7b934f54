"""``testbed up|status|down`` with real processes: private Redis servers, KMS simulators, gateways."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from relay import topology as topology_module
from relay.pki.layout import KeyDirectory
from relay.testbed.demo import exchange_keys
from relay.testbed.launcher import (
    ServiceProcess,
    TestbedError,
    TestbedState,
    down,
    gateway_services,
    is_alive,
    kms_services,
    up,
)
from relay.testbed.status import collect, render
from tests.support.cli import one_line_error, run_cli
from tests.support.local_testbed import default_document, with_free_ports


def test_up_relays_keys_reports_status_and_down_stops_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded topology with GW2 (the transit gateway) as two replicas: keys cross them both ways."""
    monkeypatch.chdir(tmp_path)  # relative key and state directories, as `./run demo` passes them
    topology_file = Path("topology.yaml")
    topology_file.write_text(yaml.safe_dump(with_free_ports(_with_replicas(default_document(), "GW2", 2))))
    topology = topology_module.load(topology_file)
    state_dir = Path("state")
    state = up(topology, topology_file, Path("keys"), state_dir)
    try:
        # three Redis, two vendor KMSs and the foreign domain KMS-X, GW1, GW2/1, GW2/2, GW3
        assert {s.kind for s in state.services} == {"redis", "kms", "gateway"} and len(state.services) == 10
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
        # `testbed status` without --topology reads the topology the testbed was started with
        shown = run_cli("testbed", "status", "--state", state_dir, "--keys", "keys", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        screen = shown.stdout
        assert "10/10 processes running" in screen
        assert "QKD-GW2-GW3" in screen and "require-qkd" in screen and "admin unreachable" not in screen
        sae_rows = [line.split()[0] for line in screen.split("FOR SAEs")[1].split("PRE-RELAY")[0].splitlines()[1:5]]
        assert sae_rows == ["GW1", "GW2/1", "GW2/2", "GW3"]
        recorded = TestbedState.load(state_dir)
        assert recorded is not None
        assert_an_unreachable_replica_is_named(topology, recorded)
    finally:
        stopped = down(state_dir)
    assert sorted(stopped) == sorted(s.name for s in state.services)
    assert not any(is_alive(s.pid) for s in state.services)
    assert down(state_dir) == []


def assert_an_unreachable_replica_is_named(topology: topology_module.Topology, state: TestbedState) -> None:
    """GW2/2's admin listener down: its rows say so, and the links are read from GW2/1."""
    admin = asyncio.run(collect(topology, state))
    documents = {**admin, "GW2/2": {"error": "ClientConnectorError"}}
    screen = render(topology, state, documents)
    assert "GW2/2: admin unreachable: ClientConnectorError" in screen
    assert "GW1-GW2" in screen and "gateway GW2 admin unreachable" not in screen


def _with_replicas(document: dict[str, Any], gateway_id: str, replicas: int) -> dict[str, Any]:
    for region in document["regions"]:
        for gateway in region["gateways"]:
            if gateway["id"] == gateway_id:
                gateway["replicas"] = replicas
    return document


def test_each_replica_is_a_process_waited_on_at_its_own_grpc_and_admin_port() -> None:
    topology = topology_module.parse(with_free_ports(_with_replicas(default_document(), "GW2", 2)))
    gw2 = next(g for g in topology.gateways if g.id == "GW2")
    assert gw2.admin_port is not None
    services = gateway_services(topology, ["--keys", "keys"], ["--no-prerelay"])
    assert [s.name for s in services] == ["GW1", "GW2/1", "GW2/2", "GW3"]
    first, second = services[1], services[2]
    for k, service in ((1, first), (2, second)):
        assert service.command[service.command.index("gateway") :] == [
            "gateway", "run", "--id", "GW2", "--replica", str(k), "--keys", "keys", "--no-prerelay",
        ]  # fmt: skip
        assert service.listens == {
            "etsi014": f"https://127.0.0.1:{gw2.etsi014_port}",  # one URL for the SAEs, served by either
            "etsi020": f"https://127.0.0.1:{gw2.etsi020_port}",
            "grpc": f"127.0.0.1:{gw2.grpc_port + k - 1}",
            "admin": f"http://127.0.0.1:{gw2.admin_port + k - 1}",
        }
    shared = [("127.0.0.1", gw2.etsi014_port), ("127.0.0.1", gw2.etsi020_port)]
    assert first.ready_at == (*shared, ("127.0.0.1", gw2.grpc_port), ("127.0.0.1", gw2.admin_port))
    assert second.ready_at == (("127.0.0.1", gw2.grpc_port + 1), ("127.0.0.1", gw2.admin_port + 1))
    assert "--replica" in services[0].command and services[0].name == "GW1"  # one process: replica 1, named GW1


def test_with_free_ports_leaves_room_for_every_replica() -> None:
    topology = topology_module.parse(with_free_ports(_with_replicas(default_document(), "GW2", 3)))
    services = gateway_services(topology, [], []) + kms_services(topology, [])
    ports = sorted({port for service in services for _, port in service.ports()})
    listed = [port for service in services for _, port in service.ports()]
    assert len(ports) == len(listed) - 2 * 2  # only GW2's 014 and 020 ports repeat, for its replicas 2 and 3
    for port in ports:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))  # free now: the kernel handed none of them out meanwhile


def test_the_state_file_names_every_replica_and_down_stops_each_of_them(tmp_path: Path) -> None:
    """Real processes in their own sessions, recorded as ``testbed up`` records replicas; ``down`` signals each."""
    names = ["redis-region1/1", "redis-region1/2", "GW2/1", "GW2/2", "GW2/3"]
    services = []
    for name in names:
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
        kind = "gateway" if name.startswith("GW") else "redis"
        services.append(ServiceProcess(name, kind, process.pid, {}, str(tmp_path / f"{name}.log")))
    try:
        TestbedState("three-region", None, "keys", tuple(services), redis_cluster=True).save(tmp_path)
        recorded = TestbedState.load(tmp_path)
        assert recorded is not None and recorded.redis_cluster
        assert [s.name for s in recorded.services] == names
        assert sorted(down(tmp_path)) == sorted(names)
        assert not any(is_alive(s.pid) for s in services)
        assert TestbedState.load(tmp_path) is None
    finally:
        for service in services:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.pid, signal.SIGKILL)


def test_a_cluster_port_clashing_with_a_listener_is_refused_naming_both(tmp_path: Path) -> None:
    document = with_free_ports(default_document())
    region1 = document["regions"][0]
    region1["gateways"][0]["grpc_port"] = region1["redis_port"] + 20  # node 3 of region1's cluster
    topology = topology_module.parse(document)
    with pytest.raises(TestbedError) as refused:
        up(topology, None, tmp_path / "keys", tmp_path / "state", redis_cluster=True)
    port = region1["redis_port"] + 20
    assert str(refused.value).startswith(f"port {port} of redis-region1/3 (derived from region region1's redis_port")
    assert "GW1 grpc" in str(refused.value)
    assert TestbedState.load(tmp_path / "state") is None


def test_gateway_run_refuses_a_replica_the_topology_does_not_have(tmp_path: Path) -> None:
    finished = run_cli("gateway", "run", "--id", "GW2", "--replica", "2", cwd=tmp_path)
    assert (
        one_line_error(finished) == "qkd-relay: error: gateway GW2 has 1 replica in the topology; there is no replica 2"
    )
