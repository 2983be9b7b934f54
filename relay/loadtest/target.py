"""The processes under load: a testbed the load test starts itself, or one already running.

Its own testbed is ``relay.testbed.launcher.up`` on a load-test topology with free ports, in a temporary
state directory, stopped (and its logs kept) afterwards. A running one is read from its state directory
(``qkd-relay testbed up``); whether its gateways pre-relay is read from their admin status.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from relay import topology as topology_module
from relay.loadtest.admin import AdminClient
from relay.loadtest.topologies import document_for, with_free_ports, write_topology
from relay.pki.layout import KeyDirectory
from relay.testbed.launcher import TestbedError, TestbedState, down, gateway_urls, up
from relay.topology import Topology


class TargetError(Exception):
    """The testbed cannot be started or attached to; printed as one line."""


@dataclass(frozen=True)
class Target:
    topology: Topology
    keys: KeyDirectory
    etsi014: dict[str, str]  # gateway ID -> northbound base URL (shared by its replicas)
    gateway_admin: dict[str, str]  # gateway (replica) name, GW2 or GW2/1 -> admin base URL
    kms_admin: dict[str, str]  # vendor KMS ID -> admin base URL
    prerelay: bool
    own: bool  # started by the load test
    pids: dict[str, int]  # service name -> process ID, for CPU accounting

    @property
    def replicas(self) -> dict[str, tuple[str, ...]]:
        """Gateway ID -> its replicas' names (``("GW2",)`` for a single process)."""
        return {gateway.id: gateway.replica_names() for gateway in self.topology.gateways}

    def admin(self) -> AdminClient:
        return AdminClient(self.gateway_admin, self.kms_admin, self.replicas)

    @property
    def label(self) -> str:
        return f"{self.topology.name}/{'pool' if self.prerelay else 'ondemand'}"


def attach(state_dir: Path) -> Target:
    state = TestbedState.load(state_dir)
    if state is None:
        raise TargetError(f"no testbed recorded in {state_dir}; start one with `qkd-relay testbed up`")
    topology = (
        topology_module.load(Path(state.topology_file)) if state.topology_file else topology_module.load_default()
    )
    target = _target(topology, KeyDirectory(Path(state.keys_root) / topology.name), state, prerelay=True, own=False)
    documents = asyncio.run(target.admin().gateways())
    if any("error" in doc for doc in documents.values()):
        broken = {gw: doc["error"] for gw, doc in documents.items() if "error" in doc}
        raise TargetError(f"gateway admin unreachable in {state_dir}: {broken}")
    prerelay = {doc.get("prerelay") is not None for doc in documents.values()}
    if len(prerelay) != 1:
        raise TargetError(f"the gateways in {state_dir} disagree on pre-relay (some run with --no-prerelay)")
    return _target(topology, target.keys, state, prerelay=prerelay.pop(), own=False)


@contextmanager
def own_testbed(
    topology_name: str,
    keys_root: Path,
    *,
    prerelay: bool,
    ready_high: int,
    logs_to: Path | None = None,
) -> Iterator[Target]:
    """Start the named load-test topology on free ports; stop it on exit and copy its logs to ``logs_to``."""
    work = Path(tempfile.mkdtemp(prefix="qkd-relay-loadtest-"))
    state_dir = work / "state"
    try:
        topology_file = write_topology(with_free_ports(document_for(topology_name)), work / "topology.yaml")
        topology = topology_module.load(topology_file)
        options = ["--no-prerelay"] if not prerelay else ["--ready-pool", f"{min(4, ready_high)}:{ready_high}"]
        try:
            state = up(topology, topology_file, keys_root, state_dir, options)
        except TestbedError as exc:
            raise TargetError(f"cannot start {topology_name}: {exc}") from None
        try:
            yield _target(topology, KeyDirectory(keys_root / topology.name), state, prerelay=prerelay, own=True)
        finally:
            down(state_dir)
    finally:
        if logs_to is not None and (state_dir / "logs").is_dir():
            shutil.copytree(state_dir / "logs", logs_to, dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)


def _target(topology: Topology, keys: KeyDirectory, state: TestbedState, *, prerelay: bool, own: bool) -> Target:
    gateways = [s for s in state.services if s.kind == "gateway"]
    missing = [s.name for s in gateways if "admin" not in s.listens]
    if missing:
        raise TargetError(f"gateways without an admin_port in the topology: {', '.join(missing)}")
    return Target(
        topology=topology,
        keys=keys,
        etsi014=gateway_urls(topology, state),
        gateway_admin={s.name: s.listens["admin"] for s in gateways},
        kms_admin={s.name: s.listens["admin"] for s in state.services if s.kind == "kms"},
        prerelay=prerelay,
        own=own,
        pids={s.name: s.pid for s in state.services},
    )
