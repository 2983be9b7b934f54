"""Private ``redis-server`` processes for tests and benchmarks: standalone (optionally with AOF, optionally
with a replica) or a cluster (optionally with replicas, whose masters a test can kill to see one promoted).

Tests that kill, restart or reconfigure Redis must not touch a shared server, so each gets its own process
on free loopback ports in a directory it owns. Like every Redis the project starts, each loads an ACL file
(``relay.pki.redis_access``): the default user off, an ``admin`` (what :meth:`RedisServer.client` and
:attr:`RedisServer.admin_url` use) and, given a key directory, the users of the gateways named, whose
passwords the gateways read from ``keys/`` (:attr:`RedisServer.url` carries no credentials). Every server
also lists the ``replication`` user and logs in as it to whatever master it replicates.

Everything here is synchronous and blocking (subprocesses, short polling loops) so it works the same from
pytest fixtures and from scripts; always use the context managers, or call ``stop()`` in a ``finally``, so
no server outlives its test.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from relay import topology as topology_module
from relay.pki.layout import KeyDirectory
from relay.pki.redis_access import (
    ADMIN_USER,
    REDIS_CLIENT_ENTITY,
    REPLICATION_USER,
    acl_text,
    read_credentials,
    tls_server_arguments,
    write_acl_file,
)
from tests.support.ports import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
START_TIMEOUT_S = 10.0
FAILOVER_TIMEOUT_S = 20.0  # a dead master noticed (cluster-node-timeout), a replica elected and promoted
STOP_TIMEOUT_S = 5.0  # graceful shutdown (an AOF fsync) before SIGKILL
_TERM_REPEAT_S = 0.2  # SIGTERM again after this long (one Redis ignored: see RedisServer.stop)
# Redis acts on a SIGTERM in its next server cron: at the default 10 Hz every stop took 100 ms, and tests
# stop servers by the hundred. At 100 Hz (an idle server's cost stays negligible) a stop takes ~10 ms.
_HZ = 100
_START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it
# For a client whose caller decides what a failure means: redis-py retries every ConnectionError (a port
# not listening yet, a refused login: AuthenticationError is one) 10 times with backoff, about 4 s.
ASK_ONCE = Retry(NoBackoff(), 0)
DEFAULT_GATEWAYS = tuple(g.id for g in topology_module.load_default().gateways)  # the embedded topology's


class RedisHarnessError(RuntimeError):
    """A server did not start, or a cluster did not reach ``cluster_state:ok`` in time."""


@dataclass
class RedisServer:
    """One ``redis-server`` process; ``restart()`` reuses the same port and directory (and so its AOF)."""

    directory: Path
    appendonly: bool = False
    cluster: bool = False
    port: int = 0
    cluster_port: int = 0
    keys: KeyDirectory | None = None  # where the gateways' (and then the admin's) passwords are
    gateways: tuple[str, ...] = ()
    tls_entity: str | None = None  # TLS only, with this entity's certificate from ``keys`` (client certs required)
    replica_of: RedisServer | None = None  # standalone replication (``replicaof``); started after its master
    cluster_node_timeout_ms: int = 2000  # how soon cluster peers flag a silent node failed (and fail over)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    admin_password: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    replication_password: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)

    def __post_init__(self) -> None:
        if self.tls_entity is not None and self.keys is None:
            raise ValueError("a TLS server needs the key directory holding its certificate")
        if self.keys is not None:
            self.admin_password = read_credentials(self.keys, ADMIN_USER).password
        if self.replica_of is not None:
            self.admin_password = self.replica_of.admin_password
            self.replication_password = self.replica_of.replication_password

    @property
    def scheme(self) -> str:
        return "redis" if self.tls_entity is None else "rediss"

    @property
    def url(self) -> str:
        """Without credentials: a gateway given it authenticates as its own user, from ``keys/``."""
        return f"{self.scheme}://127.0.0.1:{self.port}/0"

    @property
    def admin_url(self) -> str:
        return f"{self.scheme}://{ADMIN_USER}:{self.admin_password}@127.0.0.1:{self.port}/0"

    @property
    def acl_file(self) -> Path:
        return self.directory / "users.acl"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.directory / "redis.log"

    def start(self) -> None:
        """Start on fresh free ports the first time; on the same ports when restarting."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write_acl_file()
        fixed_ports = self.port != 0
        for attempt in range(1 if fixed_ports else _START_ATTEMPTS):
            if not fixed_ports:
                self.port = free_port()
                self.cluster_port = free_port() if self.cluster else 0
            self.process = subprocess.Popen(
                self._command(), cwd=self.directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if self._wait_ready():
                return
            self.stop()
        raise RedisHarnessError(f"redis-server did not start on {self.address}; see {self.log_file}")

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM, repeated until it exits); SIGKILL if it does not within a few seconds.

        Redis refuses a SIGTERM that arrives while it writes its initial AOF ("Writing initial AOF, can't
        exit", after ``CONFIG SET appendonly yes``) and waits for the next one: without repeating it, every
        such test waited out the whole grace period and then crashed the server.
        """
        self._end(kill=False)

    def kill(self) -> None:
        """Crash it (SIGKILL): only what was already written to the AOF survives."""
        self._end(kill=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing (a hung or partitioned server)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def info(self, section: str) -> dict[str, Any]:
        """One ``INFO`` section, as redis-py parses it (``role``, ``master_link_status``, ``cmdstat_wait``...)."""
        with self.client() as client:
            return client.info(section)

    def wait_replicated(self, replicas: int = 1) -> None:
        """Until ``replicas`` replicas acknowledge this master's writes: ``WAIT`` behind ``FUNCTION FLUSH``, a
        replicated write that needs no key (so a cluster master runs it too) and changes nothing (the project
        stores no functions). A replica that reports its link up can still miss the first WAITs."""

        def acknowledged() -> bool:
            with self.client() as client, client.pipeline(transaction=False) as pipeline:
                pipeline.execute_command("FUNCTION", "FLUSH")
                pipeline.execute_command("WAIT", replicas, 100)
                return bool(pipeline.execute()[1] >= replicas)

        _poll(acknowledged, f"{replicas} replica(s) of {self.address} acknowledging")

    def aof_tail(self) -> Path:
        """The file Redis appends to now: the last ``incr`` file of the multi-part AOF's manifest (Redis 7
        keeps ``appendonlydir/`` with a base file, incr files and a manifest naming them in order)."""
        directory = self.directory / "appendonlydir"
        manifest = next(directory.glob("*.manifest")).read_text().split("\n")
        fields = [dict(zip(line.split()[::2], line.split()[1::2], strict=True)) for line in manifest if line]
        return directory / [f["file"] for f in fields if f["type"] == "i"][-1]

    def client(self) -> redis.Redis:
        """As the admin user (over TLS, with the admin client certificate ``keys init`` issues)."""
        tls: dict[str, str] = {}
        if self.tls_entity is not None:
            assert self.keys is not None
            files = self.keys.entity(REDIS_CLIENT_ENTITY)
            tls = {
                "ssl_ca_certs": str(self.keys.ca.cert),
                "ssl_certfile": str(files.cert),
                "ssl_keyfile": str(files.key),
            }
        return redis.Redis.from_url(self.admin_url, socket_timeout=5, **tls)

    def _write_acl_file(self) -> None:
        gateways = {g: read_credentials(self.keys, g).password for g in self.gateways} if self.keys else {}
        write_acl_file(self.acl_file, acl_text(self.admin_password, gateways, self.replication_password))

    def _command(self) -> list[str]:
        command = [
            REDIS_SERVER,
            *self._listen(),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--logfile", str(self.log_file),
            "--save", "",
            "--daemonize", "no",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--aclfile", str(self.acl_file),
            "--hz", str(_HZ),
            "--repl-diskless-sync-delay", "0",  # a replica's sync starts at once, not after 5 s
            "--masteruser", REPLICATION_USER,
            "--masterauth", self.replication_password,
        ]  # fmt: skip
        if self.replica_of is not None:
            command += ["--replicaof", "127.0.0.1", str(self.replica_of.port)]
        if self.cluster:
            command += [
                "--cluster-enabled", "yes",
                "--cluster-port", str(self.cluster_port),
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.cluster_node_timeout_ms),
            ]  # fmt: skip
        return command

    def _listen(self) -> list[str]:
        if self.tls_entity is None:
            return ["--port", str(self.port)]
        assert self.keys is not None
        files = self.keys.entity(self.tls_entity)
        return tls_server_arguments(self.port, str(self.keys.ca.cert), str(files.cert), str(files.key))

    def _wait_ready(self) -> bool:
        """PING until it answers; False if the process died first (typically: port already taken)."""
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        with self.client() as client:
            client.set_retry(ASK_ONCE)  # this loop polls; redis-py's retries would wait ~4 s for an unbound port
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except (redis.ConnectionError, redis.TimeoutError):  # BusyLoadingError while the AOF loads
                    pass
                time.sleep(0.02)
        return False

    def _end(self, *, kill: bool) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while not kill and time.monotonic() < deadline:
            process.terminate()
            try:
                process.wait(timeout=_TERM_REPEAT_S)
                return
            except subprocess.TimeoutExpired:
                pass
        process.kill()
        process.wait()


@dataclass
class RedisClusterProcesses:
    """A Redis Cluster sharing one admin password: masters only, or ``replicas_per_master`` replicas each.

    ``redis-cli --cluster create`` makes the first ``len(nodes) / (1 + replicas_per_master)`` nodes the
    masters. With replicas, a test finds the master serving a key (:meth:`master_of`) and its replica
    (:meth:`replica_of`), SIGKILLs the master, waits for the replica's promotion (:meth:`wait_promoted`) and
    starts the killed node again as the new master's replica (:meth:`rejoin`).
    """

    nodes: list[RedisServer]
    replicas_per_master: int = 0

    def __post_init__(self) -> None:
        for node in self.nodes[1:]:
            node.admin_password = self.nodes[0].admin_password
            node.replication_password = self.nodes[0].replication_password

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        masters: int = 3,
        replicas_per_master: int = 0,
        keys: KeyDirectory | None = None,
        gateways: tuple[str, ...] = (),
        first_port: int = 0,
    ) -> RedisClusterProcesses:
        """Not started yet: one sub-directory per node, users for ``gateways`` (as :class:`RedisServer`).
        With ``first_port`` the first node listens there (a topology's ``redis_port``, so a gateway's default
        Redis URL names a node), the others on free ports. With replicas, nodes flag a silent peer failed
        after a second, so a killed master's replica is promoted within a few seconds."""
        timeout_ms = 1000 if replicas_per_master else 2000
        nodes = [
            RedisServer(
                directory / f"node{i}", cluster=True, cluster_node_timeout_ms=timeout_ms, keys=keys, gateways=gateways
            )
            for i in range(masters * (1 + replicas_per_master))
        ]
        if first_port:
            nodes[0].port, nodes[0].cluster_port = first_port, free_port()
        return cls(nodes, replicas_per_master)

    @property
    def admin_url(self) -> str:
        """One startup node; the cluster client discovers the others."""
        return self.nodes[0].admin_url

    def start(self) -> None:
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [REDIS_CLI, "--user", ADMIN_USER, "--pass", self.nodes[0].admin_password, "--no-auth-warning",
                 "--cluster", "create", *(n.address for n in self.nodes),
                 "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"],
                check=True, capture_output=True, timeout=30,
            )  # fmt: skip
            _poll(lambda: all(self._node_ok(node) for node in self.nodes), "cluster_state:ok on every node")
            if self.replicas_per_master:
                for node in self.nodes:
                    if node.info("replication")["role"] == "master":
                        node.wait_replicated(self.replicas_per_master)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def master_of(self, key: str) -> RedisServer:
        """The node serving ``key``'s slot now, as a live node sees the cluster."""
        entries = self._cluster_nodes()
        with self._live()[0].client() as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        for address, entry in entries.items():
            if "master" in entry["flags"] and "fail" not in entry["flags"] and _serves(entry["slots"], slot):
                return self._node(address)
        raise RedisHarnessError(f"no live master serves slot {slot}")

    def replica_of(self, master: RedisServer) -> RedisServer:
        entries = self._cluster_nodes()
        master_id = entries[master.address]["node_id"]
        return next(self._node(a) for a, entry in entries.items() if entry["master_id"] == master_id)

    def wait_promoted(self, replica: RedisServer) -> None:
        """Until ``replica`` is a master and every live node reports ``cluster_state:ok`` again."""
        _poll(
            lambda: (
                replica.info("replication")["role"] == "master" and all(self._node_ok(node) for node in self._live())
            ),
            f"{replica.address} promoted",
            timeout_s=FAILOVER_TIMEOUT_S,
        )

    def rejoin(self, node: RedisServer) -> None:
        """Start a killed node again on its ports and wait until it replicates: it comes back empty (no AOF
        here), learns from its peers that a replica was promoted in its place and becomes that one's replica."""
        node.start()
        _poll(lambda: node.info("replication")["role"] == "slave", f"{node.address} a replica again")
        info = node.info("replication")
        self._node(f"{info['master_host']}:{info['master_port']}").wait_replicated(self.replicas_per_master)

    def _live(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.running]

    def _node(self, address: str) -> RedisServer:
        return next(node for node in self.nodes if node.address == address)

    def _cluster_nodes(self) -> dict[str, dict[str, Any]]:
        """``CLUSTER NODES`` of a live node, by ``host:port`` (redis-py's parse: flags, master_id, slots)."""
        with self._live()[0].client() as client:
            return {address.split("@")[0]: entry for address, entry in client.cluster("NODES").items()}

    def _node_ok(self, node: RedisServer) -> bool:
        with node.client() as client:
            info = client.cluster("INFO")
        if isinstance(info, bytes):
            info = info.decode()
        if isinstance(info, str):
            info = dict(line.split(":", 1) for line in info.split() if ":" in line)
        return info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == len(self.nodes)


def _serves(slots: list[list[str]], slot: int) -> bool:
    return any(int(span[0]) <= slot <= int(span[-1]) for span in slots)


def _poll(check: Callable[[], bool], what: str, *, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RedisHarnessError(f"{what}: not within {timeout_s:.0f} s")


@contextmanager
def redis_server(
    directory: Path,
    *,
    appendonly: bool = False,
    keys: KeyDirectory | None = None,
    gateways: tuple[str, ...] = (),
    tls_entity: str | None = None,
) -> Iterator[RedisServer]:
    """A standalone server in ``directory`` with users for ``gateways``, stopped on exit however the block ends."""
    server = RedisServer(directory, appendonly=appendonly, keys=keys, gateways=gateways, tls_entity=tls_entity)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def redis_replicated(
    directory: Path, *, keys: KeyDirectory | None = None, gateways: tuple[str, ...] = ()
) -> Iterator[tuple[RedisServer, RedisServer]]:
    """A standalone master with users for ``gateways`` and one replica of it (``replicaof``), replicating;
    both stopped on exit."""
    master = RedisServer(directory / "master", keys=keys, gateways=gateways)
    replica = RedisServer(directory / "replica", keys=keys, gateways=gateways, replica_of=master)
    try:
        master.start()
        replica.start()
        master.wait_replicated()
        yield master, replica
    finally:
        replica.stop()
        master.stop()


@contextmanager
def redis_cluster(
    directory: Path, *, masters: int = 3, replicas_per_master: int = 0
) -> Iterator[RedisClusterProcesses]:
    """A ``masters``-master cluster, with ``replicas_per_master`` replicas each (:meth:`RedisClusterProcesses.create`),
    stopped on exit."""
    cluster = RedisClusterProcesses.create(directory, masters=masters, replicas_per_master=replicas_per_master)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
