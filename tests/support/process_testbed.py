"""The three-region testbed as real processes: per region a private ``redis-server`` (or, for the regions
named in ``redis_cluster_regions``, a Redis Cluster of three masters with a replica each), the two vendor KMS
simulators (``qkd-relay kms-sim run``), the foreign KMS domain of another vendor (the same command, its 020
stand-in) and the three gateways (``qkd-relay gateway run``).

Everything runs from one topology YAML with free ports, written to the testbed's directory. Each process
writes stdout and stderr to files there (appended across restarts), and :meth:`ProcessTestbed.logs`
gives their tails for failure reports. :meth:`ProcessTestbed.stop` kills whatever is still running and
is safe to call twice; children also get ``PR_SET_PDEATHSIG`` so that none outlives a killed pytest.
Process control is synchronous; from a running event loop use :meth:`ProcessTestbed.restart_async`, so
the loop keeps serving in-flight requests while the process starts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from relay import topology as topology_module
from relay.etsi014.client import Etsi014Client, KmeError, KmeUnreachable
from relay.etsi014.models import KeyRequest
from relay.pki.layout import KeyDirectory
from relay.topology import Topology
from tests.support.cli import QKD_RELAY, REPO_ROOT, run_cli
from tests.support.local_testbed import default_document, with_free_ports
from tests.support.redis_servers import RedisClusterProcesses, RedisServer

READY_TIMEOUT_S = 20.0
# What the gateways of a region on a Redis Cluster are told: a write they act on is held by a replica
CLUSTER_GATEWAY_OPTIONS = ("--redis-cluster", "--redis-wait-replicas", "1")
LOG_TAIL_LINES = 80
# Children die with the test process (SIGKILL when the thread that started them ends), through util-linux's
# setpriv rather than a preexec_fn: with a preexec_fn, subprocess runs the interpreter's at-fork handlers in
# the child, and grpcio's (this process runs gRPC threads) then leave the child aborting with "epoll_wait
# error: Bad file descriptor" before it reaches exec.
_DIE_WITH_PARENT = ("setpriv", "--pdeathsig", "KILL", "--") if shutil.which("setpriv") else ()


def cli(*args: str | Path, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    """One ``qkd-relay`` command run to completion (``keys init``, ``kms-sim set-qber``...)."""
    return run_cli(*args, timeout_s=timeout_s)


class ProcessFailed(RuntimeError):
    """A process exited or did not report readiness in time; the message ends with its stderr tail."""


@dataclass
class ManagedProcess:
    """One long-running ``qkd-relay`` process; ``ready_marker`` is the stdout line fragment saying it serves."""

    name: str
    command: list[str]
    directory: Path
    ready_marker: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0
    _ready_from: int = field(default=0, repr=False)  # stdout offset where the current start's output begins

    @property
    def stdout_path(self) -> Path:
        return self.directory / f"{self.file_stem}.out"

    @property
    def stderr_path(self) -> Path:
        return self.directory / f"{self.file_stem}.err"

    @property
    def file_stem(self) -> str:
        return self.name.replace("/", "-")  # a replica is named GW2/1

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.starts += 1
        banner = f"===== start {self.starts}: {' '.join(self.command)}\n".encode()
        self._ready_from = self.stdout_path.stat().st_size if self.stdout_path.exists() else 0
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            err.write(banner)
            err.flush()
            self.process = subprocess.Popen(
                [*_DIE_WITH_PARENT, *self.command],
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Block until this start printed ``ready_marker``; raise if the process died or took too long."""
        deadline = time.monotonic() + timeout_s
        while True:
            with open(self.stdout_path, "rb") as out:
                out.seek(self._ready_from)
                if self.ready_marker.encode() in out.read():
                    return
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise ProcessFailed(f"{self.name} exited ({code}) before it was ready\n{self.stderr_tail()}")
            if time.monotonic() > deadline:
                raise ProcessFailed(f"{self.name} not ready after {timeout_s:.0f} s\n{self.stderr_tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a crash."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
        if process is not None:
            process.wait(timeout=10)

    def stderr_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.stderr_path.exists():
            return f"({self.stderr_path} does not exist)"
        text = self.stderr_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""


class ProcessTestbed:
    """The whole topology as processes. ``gateway_options`` / ``kms_options`` are extra CLI arguments;
    ``document`` is a topology to run instead of the embedded one (its ports are replaced by free ones).

    A region in ``redis_cluster_regions`` gets a Redis Cluster with one replica per master
    (:attr:`redis_clusters`; its first node on the region's ``redis_port``, so the gateways' default URL
    names a node) instead of a server in :attr:`redis`, and its gateways run with
    :data:`CLUSTER_GATEWAY_OPTIONS`. Either way each gateway logs in as its own Redis user."""

    def __init__(
        self,
        directory: Path,
        keys_root: Path,
        *,
        gateway_options: Sequence[str] = (),
        kms_options: Sequence[str] = (),
        document: dict[str, Any] | None = None,
        redis_cluster_regions: Sequence[str] = (),
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.topology_path = directory / "topology.yaml"
        document = with_free_ports(document if document is not None else default_document())
        self.topology_path.write_text(yaml.safe_dump(document, sort_keys=False))
        self.topology: Topology = topology_module.load(self.topology_path)
        self.keys = KeyDirectory(keys_root / self.topology.name)
        unknown = set(redis_cluster_regions) - {region.id for region in self.topology.regions}
        if unknown:
            raise ValueError(f"no region {', '.join(sorted(unknown))} in the topology")
        self.redis: dict[str, RedisServer] = {}
        self.redis_clusters: dict[str, RedisClusterProcesses] = {}
        for region in self.topology.regions:
            users = tuple(g.id for g in self.topology.gateways if g.region == region.id)
            redis_directory = directory / f"redis-{region.id}"
            if region.id in redis_cluster_regions:
                self.redis_clusters[region.id] = RedisClusterProcesses.create(
                    redis_directory, replicas_per_master=1, keys=self.keys, gateways=users, first_port=region.redis_port
                )
            else:
                self.redis[region.id] = RedisServer(
                    redis_directory, port=region.redis_port, keys=self.keys, gateways=users
                )
        common = ["--topology", str(self.topology_path), "--keys", str(keys_root)]
        self.processes: dict[str, ManagedProcess] = {}
        for vendor in self.topology.kms:
            command = [*QKD_RELAY, "kms-sim", "run", "--kms", vendor.id, *common, *kms_options]
            self.processes[vendor.id] = ManagedProcess(vendor.id, command, directory, "admin at")
        for foreign in self.topology.foreign_kms:
            command = [*QKD_RELAY, "kms-sim", "run", "--kms", foreign.id, *common, *kms_options]
            self.processes[foreign.id] = ManagedProcess(foreign.id, command, directory, "admin at")
        for gateway in self.topology.gateways:
            command = [*QKD_RELAY, "gateway", "run", "--id", gateway.id, *common, *gateway_options]
            if gateway.region in self.redis_clusters:
                command += CLUSTER_GATEWAY_OPTIONS
            for replica, name in enumerate(gateway.replica_names(), start=1):
                replica_command = [*command, "--replica", str(replica)] if gateway.replicas > 1 else command
                self.processes[name] = ManagedProcess(name, replica_command, directory, "gRPC at")

    # ----- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Redis first, then every KMS and gateway at once (they start in parallel), then wait for all."""
        try:
            for server in self.redis.values():
                server.start()
            for cluster in self.redis_clusters.values():
                cluster.start()
            for process in self.processes.values():
                process.start()
            for process in self.processes.values():
                process.wait_ready()
            self.wait_settled()
        except BaseException:
            self.stop()
            raise

    def wait_settled(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Block until every QKD link's master gateway logged its own lane filled.

        The master stores keys in the lane it sends with only once the slave gateway accepted them over
        gRPC, so this also says each gateway reaches its QKD neighbour. Until then a first relay can meet a
        channel still backing off from a connection attempt made before its peer listened; the gateway
        would then rightly avoid that link for a while, and a test would not exercise the route it means to.
        """
        deadline = time.monotonic() + timeout_s
        for link in self.topology.qkd_links:
            # the first endpoint of a QKD link is its master; one of its replicas holds the filler's lease
            masters = self.replicas(link.endpoints[0].sae)
            alarm_cleared = f"QKD pool qkd:{link.id}:master-sends is ok"
            while not any(alarm_cleared in master.stderr_text() for master in masters):
                for master in masters:
                    if not master.running:
                        raise ProcessFailed(f"{master.name} exited while starting\n{master.stderr_tail()}")
                if time.monotonic() > deadline:
                    tails = "\n".join(master.stderr_tail() for master in masters)
                    raise ProcessFailed(f"{link.endpoints[0].sae} never logged {alarm_cleared!r}\n{tails}")
                time.sleep(0.05)

    def replicas(self, gateway_id: str) -> list[ManagedProcess]:
        """The processes of ``gateway_id``: one, or one per replica (``GW2/1``, ``GW2/2``...)."""
        gateway = next(g for g in self.topology.gateways if g.id == gateway_id)
        return [self.processes[name] for name in gateway.replica_names()]

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
        for server in self.redis.values():
            server.kill()
        for cluster in self.redis_clusters.values():
            for node in cluster.nodes:
                node.kill()

    def kill(self, name: str) -> None:
        self.processes[name].kill()

    def restart(self, name: str) -> None:
        """Start ``name`` again with the very same command (ports, options) and wait until it serves."""
        process = self.processes[name]
        process.start()
        process.wait_ready()

    async def restart_async(self, name: str) -> None:
        """:meth:`restart` from a running event loop, which keeps serving while the process starts.

        The process is started from the loop's own thread: ``PR_SET_PDEATHSIG`` ties a child to the thread
        that forked it, and an executor thread may exit long before the test ends.
        """
        process = self.processes[name]
        process.start()
        await asyncio.to_thread(process.wait_ready)

    # ----- clients and diagnostics ----------------------------------------------------------------------

    def gateway_url(self, gateway_id: str) -> str:
        gateway = next(g for g in self.topology.gateways if g.id == gateway_id)
        return f"https://{gateway.host}:{gateway.etsi014_port}"

    def sae(self, sae_id: str, *, timeout_s: float = 10.0) -> Etsi014Client:
        """An ETSI 014 client for ``sae_id`` (its own certificate) talking to its home gateway, or for an
        SAE of the foreign domain to that domain's KMS."""
        foreign = next((f for f in self.topology.foreign_kms if sae_id in f.saes), None)
        if foreign is not None:
            url = f"https://{foreign.host}:{foreign.etsi014_port}"
        else:
            url = self.gateway_url(next(sae.gateway for sae in self.topology.saes if sae.id == sae_id))
        return Etsi014Client(url, self.keys.client_context(sae_id), timeout_s=timeout_s)

    def admin_url(self, kms_id: str) -> str:
        foreign = next((f for f in self.topology.foreign_kms if f.id == kms_id), None)
        port = foreign.admin_port if foreign is not None else self.topology.vendor_kms(kms_id).admin_port
        return f"http://127.0.0.1:{port}"

    def logs(self) -> str:
        """Tail of every process's stderr, for failure reports."""
        parts = []
        for process in self.processes.values():
            state = "running" if process.running else "not running"
            parts.append(f"----- {process.name} ({state}, {process.stderr_path})\n{process.stderr_tail()}")
        return "\n".join(parts)

    def cpu_seconds(self, name: str) -> float:
        """User plus system CPU time the running process ``name`` has used (``/proc/<pid>/stat``)."""
        process = self.processes[name].process
        assert process is not None, f"{name} is not running"
        fields = Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cli(*args, "--topology", str(self.topology_path))


def running_with_aof(testbed: ProcessTestbed) -> Iterator[ProcessTestbed]:
    """``testbed`` started with AOF on every standalone Redis (``appendfsync always``, as the launcher
    deploys it, so what a gateway stored survives a crash), yielded, then stopped: a fixture's body."""
    for server in testbed.redis.values():
        server.appendonly = True
    testbed.start()
    try:
        yield testbed
    finally:
        testbed.stop()


async def round_trip(testbed: ProcessTestbed, master: str, slave: str, *, timeout_s: float = 20.0) -> float:
    """Retry master enc_keys -> slave dec_keys until one key goes through intact; returns the seconds it took.

    Right after start the QKD fillers have not filled the lanes yet (``require-qkd`` answers 503) and a
    peer may still be starting; anything other than 503 or an unreachable gateway fails at once.
    """
    started = time.monotonic()
    failures: list[str] = []
    async with testbed.sae(master) as master_client, testbed.sae(slave) as slave_client:
        while time.monotonic() - started < timeout_s:
            try:
                issued = await master_client.get_key(slave, KeyRequest(number=1))
            except KmeError as exc:
                if exc.status != 503:
                    raise
                failures.append(str(exc))
            except KmeUnreachable as exc:
                failures.append(str(exc))
            else:
                fetched = await slave_client.get_key_with_ids(master, [issued.keys[0].key_id])
                assert fetched.keys == issued.keys
                return time.monotonic() - started
            await asyncio.sleep(0.2)
    raise AssertionError(f"no key from {master} to {slave} within {timeout_s:.0f} s; last: {failures[-3:]}")
