"""``qkd-relay compose up|status|down``: the generated compose file run for real, with podman.

``up`` installs what is missing, makes the base images present (pulled, or built from Debian), fills the
wheelhouse, builds the project image without network, lets podman-compose create networks, volumes and
containers, then starts the containers itself in the compose file's dependency order, waiting for each
one's health check before starting what depends on it: podman 4.3 neither gates ``depends_on`` on health
nor schedules health checks without systemd. The running testbed is recorded as a
:class:`~relay.testbed.launcher.TestbedState` (entity IDs, container PIDs, the URLs published on the host's
loopback), so the demo's key exchange and the status screen work on it as on the process testbed.

Invariant: ``down`` leaves no container, network or volume of the project behind (it removes leftovers by
the project label and says so), and a failed ``up`` takes down what it created.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from relay.compose import (
    COMPOSE_FILE,
    GID_VARIABLE,
    PUBLISH_HOST_IP,
    UID_VARIABLE,
    check_compose,
    compose_project_name,
    gateway_services,
    kms_service,
    redis_service,
)
from relay.containers.base_images import BaseImagePolicy, ensure_base_images, images_from_dockerfile
from relay.containers.engine import (
    Container,
    ContainerError,
    Engine,
    ensure_debian_packages,
    ensure_podman_compose,
)
from relay.containers.steps import StepTimes
from relay.containers.wheelhouse import ensure_wheelhouse
from relay.pki.provision import provision
from relay.testbed.launcher import STATE_FILE, ServiceProcess, TestbedState
from relay.topology import Topology

HEALTH_TIMEOUT_S = 180.0
DEFAULT_SERVICE_UID = 1000  # who owns the key files when root would: the services never run as root
ADMIN_PATHS = {"kms": "/admin/links", "gateway": "/status"}
# Runs inside a container: prints the admin listener's answer as {"status": ..., "body": ...}.
_ADMIN_FETCH = (
    "import json, sys, urllib.error, urllib.request\n"
    "try:\n"
    "    r = urllib.request.urlopen(sys.argv[1], timeout=3); status, body = r.status, r.read()\n"
    "except urllib.error.HTTPError as e:\n"
    "    status, body = e.code, e.read()\n"
    "print(json.dumps({'status': status, 'body': body.decode()}))\n"
)


def engine_for(topology: Topology, compose_dir: Path, variables: dict[str, str] | None = None) -> Engine:
    return Engine(compose_dir, COMPOSE_FILE, compose_project_name(topology), variables or {})


def up(
    topology: Topology, compose_dir: Path, keys_root: Path, state_dir: Path, policy: BaseImagePolicy
) -> tuple[TestbedState, StepTimes]:
    times = StepTimes()
    with times.step("apt-get install podman runc"):
        ensure_debian_packages(["podman", "runc"])
    with times.step("pip install podman-compose"):
        ensure_podman_compose()
    stale = check_compose(topology, compose_dir)
    if stale:
        raise ContainerError(f"{stale[0].splitlines()[0]}; run `qkd-relay compose render` first")
    with times.step("keys init"):
        provision(topology, keys_root)
        uid, gid = _service_owner(keys_root / topology.name)
    engine = engine_for(topology, compose_dir, {UID_VARIABLE: str(uid), GID_VARIABLE: str(gid)})
    if engine.containers():
        raise ContainerError(f"project {engine.project} already has containers; run `qkd-relay compose down` first")
    document = yaml.safe_load((compose_dir / COMPOSE_FILE).read_text())
    services: dict[str, Any] = document["services"]
    build = next(s["build"] for s in services.values() if "build" in s)
    dockerfile = compose_dir / build["context"] / build["dockerfile"]
    bases = images_from_dockerfile(dockerfile) + sorted({s["image"] for s in services.values() if "build" not in s})
    for name, how in ensure_base_images(engine, bases, policy, times).items():
        print(f"base image {name}: {how}")
    with times.step("wheelhouse (pip wheel on the host)"):
        ensure_wheelhouse((compose_dir / build["context"]).resolve(), compose_dir, _python_version(engine, bases[0]))
    with times.step("build qkd-relay image (no network)"):
        engine.compose("--podman-build-args", "--network=none --pull=never", "build")
    try:
        with times.step("create networks, volumes, containers"):
            engine.compose("up", "--no-start", "--no-build")
        with times.step("start in dependency order, healthy"):
            start_in_dependency_order(engine, services)
        state = current_state(topology, engine, keys_root)
    except BaseException as failure:
        try:
            engine.compose("down", "--volumes", "--timeout", "10")  # in dependency order
            remove(engine)
        except ContainerError as cleanup:
            failure.add_note(f"and the clean-up after it failed too: {cleanup}")
        raise
    state_dir.mkdir(parents=True, exist_ok=True)
    state.save(state_dir)
    return state, times


def start_in_dependency_order(engine: Engine, services: dict[str, Any]) -> None:
    containers = engine.containers()
    for stage in dependency_stages(services):
        engine.podman("start", *(containers[name].name for name in stage))
        for name in stage:
            wait_healthy(engine, containers[name])


def dependency_stages(services: dict[str, Any]) -> list[list[str]]:
    """Services in groups: each group depends only on earlier ones (the compose file has no cycles)."""
    remaining = {name: set(service.get("depends_on", {})) for name, service in services.items()}
    stages = []
    while remaining:
        ready = sorted(name for name, needs in remaining.items() if not needs)
        if not ready:
            raise ContainerError(f"depends_on has a cycle among {sorted(remaining)}")
        stages.append(ready)
        remaining = {name: needs - set(ready) for name, needs in remaining.items() if name not in ready}
    return stages


def wait_healthy(engine: Engine, container: Container) -> None:
    """Run the container's health check until it passes; fail early if the container stops."""
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while engine.podman("healthcheck", "run", container.name, check=False).returncode != 0:
        if not engine.inspect(container.name)["State"]["Running"]:
            raise ContainerError(f"{container.service} stopped during start-up:\n{_log_tail(engine, container)}")
        if time.monotonic() > deadline:
            raise ContainerError(f"{container.service} not healthy after {HEALTH_TIMEOUT_S:.0f} s")
        time.sleep(1.0)


def current_state(
    topology: Topology, engine: Engine, keys_root: Path, previous: TestbedState | None = None
) -> TestbedState:
    """The testbed as a :class:`TestbedState`: a running container's PID now, a stopped one's last known."""
    containers = engine.containers()
    known = {s.name: s.pid for s in previous.services} if previous else {}
    entries: list[tuple[str, str, str, dict[str, str]]] = []
    for region in topology.regions:
        redis = {"redis": f"rediss://{PUBLISH_HOST_IP}:{region.redis_port}/0"}
        entries.append((f"redis-{region.id}", "redis", redis_service(region.id), redis))
    for kms in topology.kms:
        kmes = {kme.id: f"https://{PUBLISH_HOST_IP}:{kme.port}" for kme in kms.kmes}
        entries.append((kms.id, "kms", kms_service(kms.id), kmes))
    for foreign in (f for f in topology.foreign_kms if f.etsi014_port is not None):  # the stand-in is rendered
        faces = {
            "etsi014": f"https://{PUBLISH_HOST_IP}:{foreign.etsi014_port}",
            "etsi020": f"https://{PUBLISH_HOST_IP}:{foreign.etsi020_port}",
        }
        entries.append((foreign.id, "kms", kms_service(foreign.id), faces))
    for gateway in topology.gateways:
        listens = {
            "etsi014": f"https://{PUBLISH_HOST_IP}:{gateway.etsi014_port}",
            "etsi020": f"https://{PUBLISH_HOST_IP}:{gateway.etsi020_port}",
            "grpc": f"{PUBLISH_HOST_IP}:{gateway.grpc_port}",
        }
        for name, service in zip(gateway.replica_names(), gateway_services(gateway), strict=True):
            entries.append((name, "gateway", service, listens))  # replicas share the published ports
    services = []
    for name, kind, service, listens in entries:
        container = containers.get(service)
        if container is None:
            raise ContainerError(f"no container for service {service}; run `qkd-relay compose up`")
        pid = engine.inspect(container.name)["State"]["Pid"] if container.running else known.get(name, 0)
        services.append(ServiceProcess(name, kind, pid, listens, f"podman logs {container.name}"))
    return TestbedState(topology.name, None, str(keys_root), tuple(services))


def load_state(topology: Topology, compose_dir: Path, state_dir: Path) -> tuple[Engine, TestbedState]:
    saved = TestbedState.load(state_dir)
    if saved is None:
        raise ContainerError(f"no compose testbed recorded in {state_dir}; start one with `qkd-relay compose up`")
    engine = engine_for(topology, compose_dir)
    return engine, current_state(topology, engine, Path(saved.keys_root), saved)


def admin_documents(topology: Topology, engine: Engine, state: TestbedState) -> dict[str, Any]:
    """Admin documents by entity ID, fetched inside each container (admin listeners bind its loopback)."""
    containers = engine.containers()
    ports = {kms.id: kms.admin_port for kms in topology.kms}
    services = {kms.id: kms_service(kms.id) for kms in topology.kms}
    for gateway in topology.gateways:
        if gateway.admin_port is None:
            continue
        for name, service in zip(gateway.replica_names(), gateway_services(gateway), strict=True):
            ports[name] = gateway.admin_port  # a replica's own container: the base port on its loopback
            services[name] = service
    documents: dict[str, Any] = {}
    for entry in (s for s in state.services if s.name in ports):
        container = containers[services[entry.name]]
        if not container.running:
            documents[entry.name] = {"error": "container stopped"}
            continue
        url = f"http://127.0.0.1:{ports[entry.name]}{ADMIN_PATHS[entry.kind]}"
        fetched = engine.podman("exec", container.name, "python", "-c", _ADMIN_FETCH, url, check=False)
        documents[entry.name] = _admin_answer(fetched.stdout, fetched.stderr)
    return documents


def stop_service(engine: Engine, service: str) -> None:
    containers = engine.containers()
    if service not in containers:
        raise ContainerError(f"no container for service {service}")
    engine.podman("stop", "--time", "10", containers[service].name)


def down(topology: Topology, compose_dir: Path, state_dir: Path) -> tuple[list[str], StepTimes]:
    """Remove containers, networks and volumes; returns what was removed by label after podman-compose."""
    times = StepTimes()
    engine = engine_for(topology, compose_dir)
    with times.step("down (containers, networks, volumes)"):
        if shutil.which("podman") is None:
            return [], times
        ensure_podman_compose()
        engine.compose("down", "--volumes", "--timeout", "10")
        swept = remove(engine)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return swept, times


def remove(engine: Engine) -> list[str]:
    """Remove whatever of the project is still there (by label); returns what that was."""
    left = engine.leftovers()
    if left["containers"]:
        engine.podman("rm", "--force", "--volumes", *left["containers"])
    left["networks"] = engine.leftovers()["networks"]
    if left["networks"]:
        engine.podman("network", "rm", "--force", *left["networks"])
    left["volumes"] = engine.leftovers()["volumes"]
    if left["volumes"]:
        engine.podman("volume", "rm", "--force", *left["volumes"])
    remaining = engine.leftovers()
    if any(remaining.values()):
        raise ContainerError(f"could not remove {remaining}")
    return [f"{kind[:-1]} {name}" for kind, names in left.items() for name in names]


def _service_owner(directory: Path) -> tuple[int, int]:
    """The IDs the services run as: those of the key files' owner, which must not be root (key files are
    0600 and the image refuses UID 0). Root-owned key material is handed to an unprivileged ID, which the
    host's root still reads; QKD_RELAY_UID/GID choose that ID."""
    owner = directory.stat()
    uid = int(os.environ.get(UID_VARIABLE, owner.st_uid or DEFAULT_SERVICE_UID))
    gid = int(os.environ.get(GID_VARIABLE, owner.st_gid or DEFAULT_SERVICE_UID))
    if (owner.st_uid, owner.st_gid) != (uid, gid):
        print(f"key files under {directory}: owner set to {uid}:{gid}, the services' user")
        for path in _tree(directory):
            os.chown(path, uid, gid, follow_symlinks=False)
    return uid, gid


def _tree(directory: Path) -> Iterable[Path]:
    yield directory
    yield from directory.rglob("*")


def _python_version(engine: Engine, python_image: str) -> str:
    """The Python version of the image the project image is built on, for the wheelhouse's markers."""
    probe = "import platform; print(platform.python_version())"
    command = ("run", "--rm", "--network=none", "--entrypoint", "python3", python_image, "-c", probe)
    return engine.podman(*command).stdout.strip()


def _admin_answer(stdout: str, stderr: str) -> dict[str, Any]:
    """Like the process testbed's admin fetch: the document on 200, else ``{"error": ...}``."""
    try:
        answer = json.loads(stdout)
        body = json.loads(answer["body"])
    except (ValueError, KeyError):
        return {"error": (stderr.strip().splitlines() or ["no answer"])[-1]}
    if answer["status"] == 200:
        return body if isinstance(body, dict) else {"error": "not a JSON object"}
    return {"error": body.get("error", f"HTTP {answer['status']}") if isinstance(body, dict) else answer["status"]}


def _log_tail(engine: Engine, container: Container) -> str:
    logs = engine.podman("logs", "--tail", "15", container.name, check=False)
    return (logs.stdout + logs.stderr).strip()
