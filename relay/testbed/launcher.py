"""``qkd-relay testbed up|down``: the topology as local processes, the embedded default of the product.

Per region a private ``redis-server``, or with ``--redis-cluster`` a Redis Cluster of three masters with a
replica each (``relay.testbed.region_redis``: AOF fsynced before every answer, the region's ACL file,
loopback plain TCP), per vendor KMS a simulator process, per foreign KMS domain the stand-in for the other
vendor's KMS (its 014 face for its SAEs, its 020 face to the bordering gateway), per gateway one process per
replica (``GW2``, or ``GW2/1``, ``GW2/2``, ...); each in its own session with its log in ``<state>/logs/``.
``up`` returns once every listener accepts connections and records the processes in
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from relay.pki.layout import KeyDirectory
from relay.pki.provision import provision
from relay.testbed.region_redis import (
    LOOPBACK,
    RedisSetupError,
    check_cluster_ports,
    cluster_node_command,
    cluster_nodes,
    form_cluster,
    server_command,
)
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
    redis_cluster: bool = False  # each region's Redis is a cluster (its nodes: redis-<region>/1 .. /6)

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


@dataclass(frozen=True)
class PlannedService:
    """A process :func:`up` starts: its command line, where it listens, and the addresses that accept
    connections once it serves."""

    name: str
    kind: str
    command: list[str]
    listens: dict[str, str]
    ready_at: tuple[tuple[str, int], ...] = ()

    def ports(self) -> list[tuple[str, int]]:
        """(what, port) of every listener, e.g. ("grpc", 19503)."""
        return [(what, _port_of(where)) for what, where in self.listens.items()]


def _port_of(where: str) -> int:
    port = urlsplit(where if "://" in where else f"//{where}").port
    if port is None:
        raise ValueError(f"no port in {where!r}")
    return port


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
    *,
    redis_cluster: bool = False,
) -> TestbedState:
    """Start Redis, then the KMSs, then the gateways, each group once the one before it accepts connections.

    With ``redis_cluster`` each region's Redis is a Redis Cluster (``relay.testbed.region_redis``) and the
    gateways connect to it with ``--redis-cluster`` and confirm each write on a replica
    (``--redis-wait-replicas 1``), so nothing they acknowledged is lost when a replica is promoted.
    """
    previous = TestbedState.load(state_dir)
    if previous and any(is_alive(s.pid) for s in previous.services):
        raise TestbedError(f"a testbed is already running from {state_dir}; run `qkd-relay testbed down` first")
    if shutil.which("redis-server") is None:
        raise TestbedError("redis-server is not installed (./run installs it, or: apt-get install redis-server)")
    keys = provision(topology, keys_root).directory
    topology_args = ["--topology", str(topology_file)] if topology_file else []
    common = [*topology_args, "--keys", str(keys_root)]
    cluster_options = ["--redis-cluster", "--redis-wait-replicas", "1"] if redis_cluster else []
    options = [*gateway_options, *cluster_options]
    services = kms_services(topology, common) + gateway_services(topology, common, options)
    started: list[ServiceProcess] = []
    try:
        redis = redis_services(topology, keys, state_dir, cluster=redis_cluster, others=services)
        (state_dir / "logs").mkdir(parents=True, exist_ok=True)
        _start(redis, started, state_dir)
        if redis_cluster:
            with ThreadPoolExecutor() as pool:  # each region's cluster mostly waits for its nodes to agree
                list(pool.map(lambda region: form_cluster(cluster_nodes(region), keys), topology.regions))
        _start([s for s in services if s.kind == "kms"], started, state_dir)
        _start([s for s in services if s.kind == "gateway"], started, state_dir)
    except RedisSetupError as exc:
        _stop(started)
        raise TestbedError(str(exc)) from None
    except BaseException:
        _stop(started)
        raise
    state = TestbedState(
        topology.name, str(topology_file) if topology_file else None, str(keys_root), tuple(started), redis_cluster
    )
    state.save(state_dir)
    return state


def redis_services(
    topology: Topology, keys: KeyDirectory, state_dir: Path, *, cluster: bool, others: Sequence[PlannedService] = ()
) -> list[PlannedService]:
    """Per region one ``redis-server``, or the six nodes of its cluster (checked against ``others``' ports)."""
    planned = []
    if cluster:
        check_cluster_ports(topology.regions, {port: f"{s.name} {what}" for s in others for what, port in s.ports()})
    for region in topology.regions:
        if not cluster:
            data = state_dir / f"redis-{region.id}"
            data.mkdir(parents=True, exist_ok=True)
            command = server_command(region.redis_port, data, keys.redis_acl_file(region.id))
            url = f"redis://127.0.0.1:{region.redis_port}/0"
            ready = ((LOOPBACK, region.redis_port),)
            planned.append(PlannedService(f"redis-{region.id}", "redis", command, {"redis": url}, ready))
            continue
        for node in cluster_nodes(region):
            data = state_dir / f"redis-{region.id}-cluster" / str(node.number)
            data.mkdir(parents=True, exist_ok=True)
            listens = {"redis": f"redis://{node.address}/0", "cluster-bus": f"127.0.0.1:{node.bus_port}"}
            planned.append(
                PlannedService(
                    node.name, "redis", cluster_node_command(node, data, keys), listens, ((LOOPBACK, node.port),)
                )
            )
    return planned


def kms_services(topology: Topology, common: Sequence[str]) -> list[PlannedService]:
    """Per vendor KMS a simulator; per foreign KMS domain with a 014 port, its stand-in."""
    planned = []
    for kms in topology.kms:
        listens = {kme.id: f"https://{kme.host}:{kme.port}" for kme in kms.kmes}
        listens["admin"] = f"http://127.0.0.1:{kms.admin_port}"
        ready = tuple((kme.host, kme.port) for kme in kms.kmes)
        planned.append(PlannedService(kms.id, "kms", _cli("kms-sim", "run", "--kms", kms.id, *common), listens, ready))
    for foreign in topology.foreign_kms:
        if foreign.etsi014_port is None:
            continue  # a real foreign KMS: not ours to run
        listens = {"etsi014": f"https://{foreign.host}:{foreign.etsi014_port}", "etsi020": foreign.etsi020_url}
        if foreign.admin_port is not None:
            listens["admin"] = f"http://127.0.0.1:{foreign.admin_port}"
        command = _cli("kms-sim", "run", "--kms", foreign.id, *common)
        planned.append(PlannedService(foreign.id, "kms", command, listens, ((foreign.host, foreign.etsi020_port),)))
    return planned


def gateway_services(topology: Topology, common: Sequence[str], options: Sequence[str]) -> list[PlannedService]:
    """Per gateway one process per replica (``GW2`` alone, else ``GW2/1``, ``GW2/2``, ...).

    Every replica is waited on at its own gRPC and admin port; the 014 and 020 ports they share are
    served by whichever replica the kernel picks, so they are waited on once.
    """
    planned = []
    for gateway in topology.gateways:
        shared = {
            "etsi014": f"https://{gateway.host}:{gateway.etsi014_port}",
            "etsi020": f"https://{gateway.host}:{gateway.etsi020_port}",
        }
        ready = [(gateway.host, gateway.etsi014_port), (gateway.host, gateway.etsi020_port)]
        for k, name in enumerate(gateway.replica_names(), start=1):
            listens = {**shared, "grpc": f"{gateway.host}:{gateway.replica_grpc_port(k)}"}
            ready.append((gateway.host, gateway.replica_grpc_port(k)))
            admin_port = gateway.replica_admin_port(k)
            if admin_port is not None:
                listens["admin"] = f"http://127.0.0.1:{admin_port}"
                ready.append((LOOPBACK, admin_port))
            command = _cli("gateway", "run", "--id", gateway.id, "--replica", str(k), *common, *options)
            planned.append(PlannedService(name, "gateway", command, listens, tuple(ready)))
            ready = []
    return planned


def gateway_urls(topology: Topology, state: TestbedState) -> dict[str, str]:
    """Gateway ID -> the ETSI 014 base URL its SAEs use (one for all its replicas)."""
    services = {s.name: s for s in state.services}
    return {g.id: services[g.replica_names()[0]].listens["etsi014"] for g in topology.gateways}


def _cli(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "relay.cli", *arguments]


def _start(group: Sequence[PlannedService], started: list[ServiceProcess], state_dir: Path) -> None:
    """Spawn every service of ``group``, then wait until each accepts connections where it should."""
    for service in group:
        started.append(_spawn(service.name, service.kind, service.command, state_dir, service.listens))
    _wait_listening(started, [address for service in group for address in service.ready_at])


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
    log = state_dir / "logs" / f"{name}.log"  # GW2/1 logs to logs/GW2/1.log
    log.parent.mkdir(parents=True, exist_ok=True)
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
