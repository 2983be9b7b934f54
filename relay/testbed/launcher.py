"""``qkd-relay testbed up|down``: the topology as local processes, the embedded default of the product.

Per region a private ``redis-server`` (AOF on and fsynced before every answer, data under the state
directory; the region's ACL file from ``keys init``: default user off, each gateway its own user, see
``relay.pki.redis_access``; loopback plain TCP), per vendor KMS a
simulator process, per foreign KMS domain the stand-in for the other vendor's KMS (its 014 face for its
SAEs, its 020 face to the bordering gateway), per gateway a gateway process; each in its own session with its log in
``<state>/logs/``. ``up`` returns once every listener accepts connections and records the processes in
``<state>/processes.json``, so ``status`` and ``down`` work from any later shell. A failed ``up`` stops
what it started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from relay.pki.provision import provision
from relay.topology import Topology

STATE_FILE = "processes.json"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class TestbedError(Exception):
    """Something the operator can act on; printed as one line."""

    __test__ = False  # not a pytest test class, despite the name


@dataclass(frozen=True)
class ServiceProcess:
    name: str
    kind: str  # redis | kms | gateway
    pid: int
    listens: dict[str, str]  # what -> address or URL
    log: str


@dataclass(frozen=True)
class TestbedState:
    __test__ = False  # not a pytest test class, despite the name

    topology: str
    topology_file: str | None
    keys_root: str
    services: tuple[ServiceProcess, ...]

    @classmethod
    def load(cls, directory: Path) -> TestbedState | None:
        path = directory / STATE_FILE
        if not path.is_file():
            return None
        document = json.loads(path.read_text())
        services = tuple(ServiceProcess(**service) for service in document.pop("services"))
        return cls(**document, services=services)

    def save(self, directory: Path) -> None:
        document = asdict(self)
        (directory / STATE_FILE).write_text(json.dumps(document, indent=2) + "\n")


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def up(
    topology: Topology,
    topology_file: Path | None,
    keys_root: Path,
    state_dir: Path,
    gateway_options: Sequence[str] = (),
) -> TestbedState:
    previous = TestbedState.load(state_dir)
    if previous and any(is_alive(s.pid) for s in previous.services):
        raise TestbedError(f"a testbed is already running from {state_dir}; run `qkd-relay testbed down` first")
    if shutil.which("redis-server") is None:
        raise TestbedError("redis-server is not installed (./run installs it, or: apt-get install redis-server)")
    keys = provision(topology, keys_root).directory
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    started: list[ServiceProcess] = []
    topology_args = ["--topology", str(topology_file)] if topology_file else []
    common = [*topology_args, "--keys", str(keys_root)]
    try:
        for region in topology.regions:
            data = state_dir / f"redis-{region.id}"
            data.mkdir(exist_ok=True)
            command = [
                "redis-server",
                "--port",
                str(region.redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(data),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--aclfile",
                str(keys.redis_acl_file(region.id).resolve()),  # redis-server resolves paths after --dir
                "--save",
                "",
                "--protected-mode",
                "yes",
            ]
            started.append(
                _spawn(
                    f"redis-{region.id}",
                    "redis",
                    command,
                    state_dir,
                    {"redis": f"redis://127.0.0.1:{region.redis_port}/0"},
                )
            )
        _wait_listening(started, [("127.0.0.1", r.redis_port) for r in topology.regions])
        for kms in topology.kms:
            listens = {kme.id: f"https://{kme.host}:{kme.port}" for kme in kms.kmes}
            listens["admin"] = f"http://127.0.0.1:{kms.admin_port}"
            command = [sys.executable, "-m", "relay.cli", "kms-sim", "run", "--kms", kms.id, *common]
            started.append(_spawn(kms.id, "kms", command, state_dir, listens))
        simulated = [foreign for foreign in topology.foreign_kms if foreign.etsi014_port is not None]
        for foreign in simulated:
            listens = {"etsi014": f"https://{foreign.host}:{foreign.etsi014_port}", "etsi020": foreign.etsi020_url}
            if foreign.admin_port is not None:
                listens["admin"] = f"http://127.0.0.1:{foreign.admin_port}"
            command = [sys.executable, "-m", "relay.cli", "kms-sim", "run", "--kms", foreign.id, *common]
            started.append(_spawn(foreign.id, "kms", command, state_dir, listens))
        _wait_listening(
            started,
            [(kme.host, kme.port) for kms in topology.kms for kme in kms.kmes]
            + [(f.host, f.etsi020_port) for f in simulated],
        )
        for gateway in topology.gateways:
            listens = {
                "etsi014": f"https://{gateway.host}:{gateway.etsi014_port}",
                "etsi020": f"https://{gateway.host}:{gateway.etsi020_port}",
                "grpc": f"{gateway.host}:{gateway.grpc_port}",
            }
            if gateway.admin_port is not None:
                listens["admin"] = f"http://127.0.0.1:{gateway.admin_port}"
            command = [
                sys.executable,
                "-m",
                "relay.cli",
                "gateway",
                "run",
                "--id",
                gateway.id,
                *common,
                *gateway_options,
            ]
            started.append(_spawn(gateway.id, "gateway", command, state_dir, listens))
        _wait_listening(
            started, [(g.host, p) for g in topology.gateways for p in (g.etsi014_port, g.etsi020_port, g.grpc_port)]
        )
    except BaseException:
        _stop(started)
        raise
    state = TestbedState(topology.name, str(topology_file) if topology_file else None, str(keys_root), tuple(started))
    state.save(state_dir)
    return state


def down(state_dir: Path) -> list[str]:
    """Stop every recorded process (SIGTERM, then SIGKILL); returns the names of those that were running."""
    state = TestbedState.load(state_dir)
    if state is None:
        return []
    running = [s for s in state.services if is_alive(s.pid)]
    _stop(list(state.services))
    (state_dir / STATE_FILE).unlink()
    return [s.name for s in running]


def _spawn(name: str, kind: str, command: list[str], state_dir: Path, listens: dict[str, str]) -> ServiceProcess:
    log = state_dir / "logs" / f"{name}.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    return ServiceProcess(name, kind, process.pid, listens, str(log))


def _wait_listening(started: list[ServiceProcess], addresses: list[tuple[str, int]]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    for host, port in addresses:
        while not accepts_connections(host, port):
            dead = [s for s in started if not is_alive(s.pid) or _exited(s.pid)]
            if dead:
                raise TestbedError(f"{dead[0].name} exited during start-up; see {dead[0].log}")
            if time.monotonic() > deadline:
                raise TestbedError(f"nothing listens on {host}:{port} after {START_TIMEOUT_S:.0f} s")
            time.sleep(0.1)


def accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _exited(pid: int) -> bool:
    """Reap a child that exited, so a zombie is not mistaken for a running service."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return reaped == pid


def _stop(services: list[ServiceProcess]) -> None:
    """Gateways first, then KMSs, then Redis: nothing loses its storage while still serving."""
    order = {"gateway": 0, "kms": 1, "redis": 2}
    for kind in sorted({s.kind for s in services}, key=order.__getitem__):
        group = [s for s in services if s.kind == kind]
        for service in group:
            _signal(service.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(is_alive(s.pid) and not _exited(s.pid) for s in group) and time.monotonic() < deadline:
            time.sleep(0.05)
        for service in group:
            if is_alive(service.pid) and not _exited(service.pid):
                _signal(service.pid, signal.SIGKILL)


def _signal(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)  # each service leads its own session and process group
    except (ProcessLookupError, PermissionError):
        pass
