"""A region's Redis in the local testbed: one ``redis-server``, or a Redis Cluster of three masters with a
replica each (``testbed up --redis-cluster``).

Every node gets what the standalone server gets: AOF on and fsynced before every answer (a key handed out
must survive a crash), data under the state directory, the region's ACL file from ``keys init`` (default
user off, each gateway its own user: ``relay.pki.redis_access``), loopback plain TCP. A cluster's replicas
replicate as the ``admin`` user (the default user is off); its password reaches them in a 0600 config file
in the node's directory, never on a command line.

Cluster ports are derived from the region's ``redis_port`` so the operator configures one number: node
``k`` (1..6) serves clients on ``redis_port + 10 (k - 1)`` and its cluster bus on that port ``+ 5``. Node 1
sits on ``redis_port`` itself, so the gateways' Redis URL (the region's, from the topology) names a node
from which the cluster client discovers the others. Regions whose ``redis_port`` differ by less than 5
(the embedded topology's are consecutive) interleave without a clash; :func:`check_cluster_ports` refuses
any clash with another listener of the testbed, naming both.

The cluster is created once (``redis-cli --cluster create``) and kept in ``nodes.conf`` beside each node's
AOF: a later ``testbed up`` on the same state directory finds it formed and only waits for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from relay.crypto.files import write_private_file
from relay.pki.layout import KeyDirectory
from relay.pki.redis_access import ADMIN_USER, read_credentials
from relay.topology import Region

CLUSTER_MASTERS = 3
CLUSTER_NODES = 2 * CLUSTER_MASTERS  # one replica per master
NODE_PORT_STRIDE = 10
BUS_PORT_OFFSET = 5
NODE_TIMEOUT_MS = 3000  # a master unreachable this long is failed over to its replica
FORM_TIMEOUT_S = 30.0
LOOPBACK = "127.0.0.1"


class RedisSetupError(Exception):
    """A region's Redis cannot be configured or did not come up; printed as one line."""


@dataclass(frozen=True)
class ClusterNode:
    """Node ``number`` (1-based) of a region's cluster."""

    region: str
    number: int
    port: int
    bus_port: int

    @property
    def name(self) -> str:
        return f"redis-{self.region}/{self.number}"

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"


def cluster_nodes(region: Region) -> tuple[ClusterNode, ...]:
    nodes = []
    for number in range(1, CLUSTER_NODES + 1):
        port = region.redis_port + NODE_PORT_STRIDE * (number - 1)
        nodes.append(ClusterNode(region.id, number, port, port + BUS_PORT_OFFSET))
    return tuple(nodes)


def cluster_port_offsets() -> tuple[int, ...]:
    """Every port of a region's cluster (node and bus ports) as an offset from its ``redis_port``."""
    return tuple(port for node in cluster_nodes(Region("", 0)) for port in (node.port, node.bus_port))


def check_cluster_ports(regions: Iterable[Region], others: dict[int, str]) -> None:
    """Refuse a derived cluster port that is out of range or taken by another listener (``others``: port ->
    what listens there), or by another region's cluster."""
    taken = dict(others)
    for region in regions:
        for node in cluster_nodes(region):
            for port, what in ((node.port, f"{node.name}"), (node.bus_port, f"{node.name} cluster bus")):
                if port > 65535:
                    raise RedisSetupError(
                        f"{what} would listen on port {port} (region {region.id}'s redis_port "
                        f"{region.redis_port} + {port - region.redis_port}); choose a redis_port below "
                        f"{65535 - (port - region.redis_port) + 1}"
                    )
                if taken.get(port, what) != what:
                    raise RedisSetupError(
                        f"port {port} of {what} (derived from region {region.id}'s redis_port "
                        f"{region.redis_port}) is also {taken[port]}'s; move redis_port to leave "
                        f"redis_port..redis_port+{NODE_PORT_STRIDE * (CLUSTER_NODES - 1) + BUS_PORT_OFFSET} free"
                    )
                taken[port] = what


def server_command(port: int, data: Path, acl_file: Path) -> list[str]:
    """``redis-server`` as every region Redis of the testbed runs: loopback, AOF fsynced always, the ACL file."""
    return [
        "redis-server",
        "--port", str(port),
        "--bind", LOOPBACK,
        "--dir", str(data),
        "--appendonly", "yes",
        "--appendfsync", "always",
        "--aclfile", str(acl_file.resolve()),  # redis-server resolves paths after --dir
        "--save", "",
        "--protected-mode", "yes",
    ]  # fmt: skip


def cluster_node_command(node: ClusterNode, data: Path, keys: KeyDirectory) -> list[str]:
    """A cluster node: the standalone command, cluster mode on, and the replication login in a 0600 file."""
    config = data / "replication.conf"
    password = read_credentials(keys, ADMIN_USER).password
    config.unlink(missing_ok=True)  # the admin password may have been regenerated (keys init --force)
    write_private_file(config, f"masteruser {ADMIN_USER}\nmasterauth {password}\n".encode())
    command = server_command(node.port, data, keys.redis_acl_file(node.region))
    return [
        command[0],
        str(config.resolve()),  # the config file comes first; the options after it override nothing it sets
        *command[1:],
        "--cluster-enabled", "yes",
        "--cluster-port", str(node.bus_port),
        "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
        "--repl-diskless-sync-delay", "0",  # one replica per master: nothing to wait for before syncing it
    ]  # fmt: skip


def form_cluster(nodes: tuple[ClusterNode, ...], keys: KeyDirectory) -> None:
    """Create the cluster unless its nodes already form one (a restart), then wait until it serves:
    ``cluster_state:ok`` on every node, three masters, and each replica's link to its master up."""
    password = read_credentials(keys, ADMIN_USER).password
    with _admin_client(nodes[0].port, password) as first:
        formed = int(_info(first.execute_command("CLUSTER", "INFO")).get("cluster_slots_assigned", 0)) > 0
    if not formed:
        _create(nodes, password)
    deadline = time.monotonic() + FORM_TIMEOUT_S
    why = "not checked yet"
    while time.monotonic() < deadline:
        why = _not_serving(nodes, password)
        if not why:
            return
        time.sleep(0.2)
    raise RedisSetupError(
        f"the Redis Cluster of region {nodes[0].region} did not come up within {FORM_TIMEOUT_S:.0f} s: {why}"
    )


@dataclass(frozen=True)
class NodeRole:
    """A node's place in the cluster as ``CLUSTER NODES`` says: a master, or the replica of ``master``."""

    master: str | None  # the master's address, for a replica
    failed: bool


def node_roles(nodes_text: str) -> dict[str, NodeRole]:
    """``CLUSTER NODES`` output as node address -> its role."""
    entries = [line.split() for line in nodes_text.splitlines() if len(line.split()) >= 8]
    addresses = {fields[0]: fields[1].split("@")[0] for fields in entries}
    roles = {}
    for node_id, address, flags, master_id, *_ in entries:
        master = None if "master" in flags.split(",") else addresses.get(master_id, master_id)
        roles[addresses[node_id]] = NodeRole(master, "fail" in flags.split(","))
    return roles


def read_roles(address: str, keys: KeyDirectory) -> dict[str, NodeRole]:
    """Every node's role as the node at ``address`` (``host:port``) sees the cluster now."""
    host, _, port = address.rpartition(":")
    try:
        with _admin_client(int(port), read_credentials(keys, ADMIN_USER).password, host) as client:
            text = client.execute_command("CLUSTER", "NODES")
    except redis.RedisError as exc:
        raise RedisSetupError(f"cannot read the cluster's nodes from {address}: {exc}") from None
    return node_roles(text.decode() if isinstance(text, bytes) else str(text))


def _create(nodes: tuple[ClusterNode, ...], password: str) -> None:
    redis_cli = shutil.which("redis-cli")
    if redis_cli is None:
        raise RedisSetupError("redis-cli is not installed (it comes with redis-server: apt-get install redis-tools)")
    command = [redis_cli, "--user", ADMIN_USER, "--no-auth-warning", "--cluster", "create"]
    command += [node.address for node in nodes] + ["--cluster-replicas", "1", "--cluster-yes"]
    environment = {**os.environ, "REDISCLI_AUTH": password}  # not on the command line, where ps shows it
    try:
        done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=FORM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RedisSetupError(f"redis-cli --cluster create did not finish in {FORM_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        last = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
        raise RedisSetupError(f"redis-cli --cluster create failed for region {nodes[0].region}: {last[0]}")


def _not_serving(nodes: tuple[ClusterNode, ...], password: str) -> str:
    """Why the cluster does not serve yet, or "" once it does."""
    try:
        for node in nodes:
            with _admin_client(node.port, password) as client:
                info = _info(client.execute_command("CLUSTER", "INFO"))
                if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) != len(nodes):
                    return f"{node.name}: cluster_state {info.get('cluster_state')}"
                replication = client.info("replication")
                if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                    return f"{node.name}: its link to the master is {replication.get('master_link_status')}"
            with _admin_client(nodes[0].port, password) as client:
                text = client.execute_command("CLUSTER", "NODES")
            roles = node_roles(text.decode() if isinstance(text, bytes) else str(text))
            masters = sum(role.master is None for role in roles.values())
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "" if masters == CLUSTER_MASTERS else f"{masters} masters"


def _admin_client(port: int, password: str, host: str = LOOPBACK) -> redis.Redis:
    # one try per poll: redis-py's own retries would stretch each poll of a node not up yet to seconds
    return redis.Redis(
        host, port, username=ADMIN_USER, password=password, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )


def _info(reply: object) -> dict[str, str]:
    text = reply.decode() if isinstance(reply, bytes) else reply
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    return dict(line.split(":", 1) for line in str(text).split() if ":" in line)
