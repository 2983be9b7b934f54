"""``qkd-relay``: the one console script. Each subcommand parses its arguments and calls into a module."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp

from relay import topology as topology_module
from relay.compose import check_compose, write_compose
from relay.console import show
from relay.containers import demo as compose_demo
from relay.containers import testbed as compose_testbed
from relay.containers.base_images import BaseImagePolicy
from relay.containers.engine import ContainerError
from relay.containers.wheelhouse import WHEELHOUSE_DIR, ensure_wheelhouse
from relay.etsi014.client import Etsi014Client, KmeClientError, KmeError
from relay.etsi014.models import KeyRequest
from relay.gateway.config import GatewaySettings, plan_gateway
from relay.gateway.qkd_filler import FillerSettings
from relay.gateway.service import RunningGateway, start_gateway
from relay.http_server import ListenerLimits
from relay.kms_sim.config import SimSettings, from_topology
from relay.kms_sim.service import ADMIN_HOST, RunningKms, start_foreign_kms, start_kms
from relay.loadtest import command as loadtest_command
from relay.observability.logs import LOG_FORMATS, configure_logging
from relay.pki.layout import KeyDirectory, MissingKeyMaterial
from relay.pki.provision import provision
from relay.pool import QkdPoolSettings, RelayedStoreSettings, Watermarks
from relay.testbed.demo import Exchange, exchange_keys, wait_until_settled
from relay.testbed.launcher import TestbedError, TestbedState
from relay.testbed.launcher import down as testbed_down
from relay.testbed.launcher import up as testbed_up
from relay.testbed.status import collect as collect_status
from relay.testbed.status import screen as status_screen
from relay.topology import Topology, TopologyError

DEFAULT_KEYS_ROOT = Path("keys")
DEFAULT_STATE_DIR = Path(".testbed")
DEFAULT_COMPOSE_DIR = Path("compose")
DEFAULT_COMPOSE_STATE_DIR = Path(".compose-testbed")
LOG_FORMAT_ENV = "QKD_RELAY_LOG_FORMAT"  # default of --log-format, e.g. "json" in containers


class CliError(Exception):
    """A failure the user can fix; printed as one line, exit status 2."""


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        configure_logging(args.log_format, args.log_level)
    except ValueError as exc:
        print(f"qkd-relay: error: {exc}", file=sys.stderr)
        return 2
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (CliError, TopologyError, MissingKeyMaterial, OSError) as exc:
        print(f"qkd-relay: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qkd-relay", description=__doc__)
    _log_options(parser, top_level=True)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    keys = commands.add_parser("keys", help="certificates and identities").add_subparsers(required=True)
    init = keys.add_parser("init", help="create a private CA and certificates for every entity of a topology")
    _topology_options(init)
    init.add_argument("--force", action="store_true", help="regenerate everything, CA included")
    init.set_defaults(handler=_keys_init)

    demo = commands.add_parser("demo", help="testbed up, SAEs in every pair of regions share keys, testbed down")
    _testbed_options(demo)
    demo.add_argument("--keep", action="store_true", help="leave the testbed running afterwards")
    _redis_cluster_option(demo)
    demo.set_defaults(handler=_demo)

    compose = commands.add_parser("compose", help="the docker-compose testbed: rendered, and run with podman")
    compose_commands = compose.add_subparsers(required=True)
    for name, help_text, handler in (
        ("render", "write docker-compose.yml and the container topology", _compose_render),
        ("check", "fail if the files differ from a fresh render", _compose_check),
        ("up", "install what is missing, build the images, start the containers healthy", _compose_up),
        ("status", "containers, QKD links, relay links and pools", _compose_status),
        ("demo", "keys between the first SAEs of every region pair, then the transit gateway stopped", _compose_demo),
        ("down", "remove the containers, networks and volumes", _compose_down),
        ("wheelhouse", "fill compose/wheelhouse/, which the image is built from (up does this)", _compose_wheelhouse),
    ):
        command = compose_commands.add_parser(name, help=help_text)
        _topology_options(command)
        command.add_argument("--dir", type=Path, default=DEFAULT_COMPOSE_DIR, help="default: %(default)s")
        if name == "wheelhouse":
            command.add_argument("--python", default="3.11", help="the image's Python version (default: %(default)s)")
        elif name not in ("render", "check"):
            command.add_argument(
                "--state", type=Path, default=DEFAULT_COMPOSE_STATE_DIR, help="testbed record (default: %(default)s)"
            )
        if name == "up":
            command.add_argument(
                "--base-images",
                choices=[p.value for p in BaseImagePolicy],
                default=BaseImagePolicy.AUTO.value,
                help="pull the official base images, else build stand-ins from Debian (auto); "
                "only pull; only build from Debian, never contacting a registry (default: %(default)s)",
            )
        command.set_defaults(handler=handler)

    testbed = commands.add_parser("testbed", help="the topology as local processes").add_subparsers(required=True)
    testbed_up = testbed.add_parser("up", help="start Redis, vendor KMSs and gateways in the background")
    _testbed_options(testbed_up)
    _redis_cluster_option(testbed_up)
    testbed_up.set_defaults(handler=_testbed_up)
    testbed_status = testbed.add_parser("status", help="processes, QKD links, relay links and pools")
    _testbed_options(testbed_status)
    testbed_status.set_defaults(handler=_testbed_status)
    testbed_down = testbed.add_parser("down", help="stop every process of the testbed")
    _testbed_options(testbed_down)
    testbed_down.set_defaults(handler=_testbed_down)

    loadtest = commands.add_parser(
        "loadtest",
        help="concurrent SAEs against the gateways: latency percentiles, "
        "throughput, errors, QKD spent; CSV, JSON and PNG plots",
    )
    loadtest_command.add_arguments(loadtest, state_dir=DEFAULT_STATE_DIR, keys_root=DEFAULT_KEYS_ROOT)
    loadtest.set_defaults(handler=_loadtest)

    kms_sim = commands.add_parser("kms-sim", help="simulated vendor KMS (ETSI 014 over mutual TLS)")
    kms_commands = kms_sim.add_subparsers(required=True)
    run = kms_commands.add_parser("run", help="serve one vendor KMS of the topology until interrupted")
    _topology_options(run)
    run.add_argument("--kms", required=True, help="vendor KMS ID from the topology, e.g. KMS-R1")
    run.add_argument(
        "--availability-timeout",
        type=float,
        default=SimSettings.availability_timeout_s,
        help="seconds a fetched key waits for its slave (default: %(default)s)",
    )
    run.add_argument(
        "--initial-keys",
        type=int,
        default=SimSettings.initial_key_count,
        help="keys stored per link at start (default: %(default)s)",
    )
    run.add_argument(
        "--max-key-count",
        type=int,
        default=SimSettings.max_key_count,
        help="bound of each link's key store (default: %(default)s)",
    )
    run.add_argument(
        "--qber-threshold",
        type=float,
        default=SimSettings.qber_threshold,
        help="QBER above which a link halts (default: %(default)s)",
    )
    _log_options(run)
    run.set_defaults(handler=_kms_sim_run)
    links = kms_commands.add_parser("links", help="show each QKD link's stored key and QBER")
    _admin_options(links)
    links.set_defaults(handler=_kms_sim_links)
    qber = kms_commands.add_parser("set-qber", help="set a link's QBER (above the threshold plays an eavesdropper)")
    _admin_options(qber)
    qber.add_argument("link", help="QKD link ID")
    qber.add_argument("qber", type=float, help="new QBER, 0 to 0.5")
    qber.set_defaults(handler=_kms_sim_set_qber)

    gateway = commands.add_parser("gateway", help="the key-relay gateway").add_subparsers(required=True)
    gateway_run = gateway.add_parser("run", help="serve one gateway of the topology until interrupted")
    _topology_options(gateway_run)
    gateway_run.add_argument("--id", required=True, help="gateway ID from the topology, e.g. GW1")
    gateway_run.add_argument(
        "--replica",
        type=int,
        default=1,
        metavar="K",
        help="which of the gateway's replicas (topology `replicas: N`) this process is, 1 to N (default: 1)",
    )
    gateway_run.add_argument(
        "--redis-url",
        help="Redis for the pools (default: the region's, from the topology); rediss:// for TLS with the "
        "gateway's certificate; it logs in as its own Redis user from the key directory",
    )
    gateway_run.add_argument(
        "--redis-cluster",
        action="store_true",
        help="the Redis URL names one node of a Redis Cluster (the client discovers the others)",
    )
    gateway_run.add_argument(
        "--redis-wait-replicas",
        type=int,
        default=GatewaySettings.redis_wait_replicas,
        metavar="N",
        help="with Redis replicas: each write waits until N replicas hold it (WAIT), else the request gets 503, "
        "so nothing acknowledged is lost when a replica is promoted (default: %(default)s, no waiting)",
    )
    gateway_run.add_argument(
        "--listen-host", default=GatewaySettings.listen_host, help="address to listen on (default: %(default)s)"
    )
    gateway_run.add_argument("--no-prerelay", action="store_true", help="relay on demand only")
    gateway_run.add_argument(
        "--hop-timeout",
        type=float,
        default=GatewaySettings.hop_timeout_s,
        help="seconds one hop, with the hops behind it, may take (default: %(default)s)",
    )
    gateway_run.add_argument(
        "--foreign-ack-deadline",
        type=float,
        default=GatewaySettings.foreign_ack_deadline_s,
        help="seconds a foreign KMS has to ack a key handed over to it relayed, else it is voided "
        "(default: %(default)s)",
    )
    gateway_run.add_argument(
        "--foreign-synchronous",
        action="store_true",
        help="hand keys to foreign KMSs in the 020 synchronous mode where their versions allow it",
    )
    gateway_run.add_argument(
        "--idle-timeout",
        type=float,
        default=ListenerLimits.idle_timeout_s,
        help="seconds an HTTP connection may wait for (the rest of) a request before it is closed "
        "(default: %(default)s)",
    )
    gateway_run.add_argument(
        "--qkd-pool",
        type=_watermarks,
        default=QkdPoolSettings().watermarks,
        metavar="LOW:HIGH",
        help="QKD pool watermarks per lane: alarm below LOW, fill up to HIGH (default: 16:128)",
    )
    gateway_run.add_argument(
        "--ready-pool",
        type=_watermarks,
        default=RelayedStoreSettings().ready_watermarks,
        metavar="LOW:HIGH",
        help="pre-relayed keys per SAE pair (default: 4:32)",
    )
    gateway_run.add_argument(
        "--qkd-fill-interval",
        type=float,
        default=FillerSettings.interval_s,
        help="seconds between QKD filler rounds on the master end of each QKD link (default: %(default)s)",
    )
    gateway_run.add_argument(
        "--qkd-fill-batch",
        type=int,
        default=FillerSettings.max_batch,
        help="QKD keys fetched from the vendor KME per filler round, over both lanes (default: %(default)s)",
    )
    _log_options(gateway_run)
    gateway_run.set_defaults(handler=_gateway_run)

    sae = commands.add_parser("sae", help="act as an SAE against a KME or gateway (ETSI 014 client)")
    sae_commands = sae.add_subparsers(required=True)
    for name, help_text, handler in (
        ("status", "Get status", _sae_status),
        ("get-key", "Get key (master)", _sae_get_key),
        ("get-key-with-ids", "Get key with key IDs (slave)", _sae_get_key_with_ids),
    ):
        command = sae_commands.add_parser(name, help=help_text)
        _topology_options(command)
        command.add_argument("--sae", required=True, help="our SAE ID (selects the client certificate)")
        command.add_argument("--url", required=True, help="KME or gateway base URL, e.g. https://127.0.0.1:18411")
        command.add_argument("--post", action="store_true", help="use the POST form")
        command.set_defaults(handler=handler)
        if name == "get-key-with-ids":
            command.add_argument("master", help="master SAE ID")
            command.add_argument("key_ids", nargs="+", metavar="KEY_ID")
        else:
            command.add_argument("slave", help="slave SAE ID")
        if name == "get-key":
            command.add_argument("--number", type=int)
            command.add_argument("--size", type=int, help="bits")
    return parser


def _log_options(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """``--log-format`` / ``--log-level``, before the command or after ``gateway run`` / ``kms-sim run``."""
    env_format = os.environ.get(LOG_FORMAT_ENV, "text")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=env_format if top_level else argparse.SUPPRESS,
        help=f"text for people, json for one JSON object per line (default: ${LOG_FORMAT_ENV} or text)",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        default="INFO" if top_level else argparse.SUPPRESS,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: INFO",
    )


def _topology_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topology", type=Path, help="topology YAML (default: the embedded three-region one)")
    parser.add_argument("--keys", type=Path, default=DEFAULT_KEYS_ROOT, help="key directory root (default: keys)")


def _testbed_options(parser: argparse.ArgumentParser) -> None:
    _topology_options(parser)
    parser.add_argument(
        "--state",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where process records, logs and Redis data live (default: %(default)s)",
    )
    parser.add_argument("--no-prerelay", action="store_true", help="gateways relay on demand only")


def _redis_cluster_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        help="run each region's Redis as a Redis Cluster: 3 masters with a replica each, on redis_port, "
        "redis_port+10, ... +50 (cluster bus: each +5)",
    )


def _admin_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topology", type=Path, help="topology YAML (default: the embedded three-region one)")
    parser.add_argument("--kms", required=True, help="vendor KMS ID from the topology")


def _load_topology(path: Path | None) -> Topology:
    return topology_module.load(path) if path else topology_module.load_default()


def _key_directory(args: argparse.Namespace) -> KeyDirectory:
    return KeyDirectory(args.keys / _load_topology(args.topology).name)


def _keys_init(args: argparse.Namespace) -> int:
    report = provision(_load_topology(args.topology), args.keys, force=args.force)
    print(f"key material in {report.directory.root}: created {len(report.created)}, kept {len(report.kept)}")
    for name in report.created:
        print(f"  created {name}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    topology = _load_topology(args.topology)
    state = _start_testbed(args, topology)
    try:
        asyncio.run(wait_until_settled(topology, state))
        exchanges = asyncio.run(exchange_keys(topology, state, KeyDirectory(args.keys / topology.name)))
        _print_exchanges(exchanges)
        print()
        _print_status(topology, args.state)
    finally:
        if not args.keep:
            print(f"\nstopped: {', '.join(testbed_down(args.state))}")
    return 0 if all(exchange.identical for exchange in exchanges) else 1


def _compose_render(args: argparse.Namespace) -> int:
    for path in write_compose(_load_topology(args.topology), args.dir):
        print(f"wrote {path}")
    return 0


def _compose_check(args: argparse.Namespace) -> int:
    differences = check_compose(_load_topology(args.topology), args.dir)
    for difference in differences:
        print(difference)
    if differences:
        print("run `qkd-relay compose render` to regenerate", file=sys.stderr)
        return 1
    print(f"{args.dir} matches the topology")
    return 0


def _compose_up(args: argparse.Namespace) -> int:
    topology = _load_topology(args.topology)
    try:
        state, times = compose_testbed.up(topology, args.dir, args.keys, args.state, BaseImagePolicy(args.base_images))
    except ContainerError as exc:
        raise CliError(str(exc)) from None
    print(f"compose testbed {topology.name} is up and healthy:")
    for service in state.services:
        print(f"  {service.name:<14} " + "  ".join(f"{what} {where}" for what, where in service.listens.items()))
    print(f"\n{times.render()}")
    print("\n`qkd-relay compose demo` relays keys through it; `qkd-relay compose down` removes it")
    return 0


def _compose_status(args: argparse.Namespace) -> int:
    topology = _load_topology(args.topology)
    try:
        engine, state = compose_testbed.load_state(topology, args.dir, args.state)
        print(compose_demo.status_screen(topology, engine, state))
    except ContainerError as exc:
        raise CliError(str(exc)) from None
    return 0


def _compose_demo(args: argparse.Namespace) -> int:
    topology = _load_topology(args.topology)
    keys = KeyDirectory(args.keys / topology.name)
    try:
        engine, state = compose_testbed.load_state(topology, args.dir, args.state)
        exchanges = compose_demo.exchange(topology, state, keys)
        _print_exchanges(exchanges)
        print(f"\n{compose_demo.status_screen(topology, engine, state)}\n")
        report = compose_demo.fault(topology, engine, state, keys)
        print(f"fault: stopped the container of {report.stopped}, the transit gateway")
        _print_exchanges(report.exchanges)
        for gateway, count in report.relayed_after_stop.items():
            print(f"{gateway} relayed {count} keys end-to-end after {report.stopped} stopped, around it")
        state = compose_demo.refreshed(topology, engine, state)
        print(f"\n{compose_demo.status_screen(topology, engine, state)}")
    except ContainerError as exc:
        raise CliError(str(exc)) from None
    rerouted = all(report.relayed_after_stop.values())
    return 0 if rerouted and all(e.identical for e in [*exchanges, *report.exchanges]) else 1


def _compose_down(args: argparse.Namespace) -> int:
    try:
        swept, times = compose_testbed.down(_load_topology(args.topology), args.dir, args.state)
    except ContainerError as exc:
        raise CliError(str(exc)) from None
    if swept:
        print(f"removed what podman-compose left: {', '.join(swept)}")
    print(f"no container, network or volume of the project is left\n{times.render()}")
    return 0


def _compose_wheelhouse(args: argparse.Namespace) -> int:
    try:
        built = ensure_wheelhouse(args.dir.resolve().parent, args.dir, args.python)
    except ContainerError as exc:
        raise CliError(str(exc)) from None
    print(f"{args.dir / WHEELHOUSE_DIR} {'filled' if built else 'is current'}")
    return 0


def _print_exchanges(exchanges: list[Exchange]) -> None:
    for exchange in exchanges:
        verdict = "identical key" if exchange.identical else "KEYS DIFFER"
        print(
            f"{exchange.master} -> {exchange.slave}: key_ID {exchange.key_id}: {verdict} ({exchange.latency_ms:.0f} ms)"
        )


def _testbed_up(args: argparse.Namespace) -> int:
    _start_testbed(args, _load_topology(args.topology))
    print("\n`qkd-relay testbed status` shows links and pools; `qkd-relay testbed down` stops everything")
    return 0


def _start_testbed(args: argparse.Namespace, topology: Topology) -> TestbedState:
    options = ["--no-prerelay"] if args.no_prerelay else []
    try:
        state = testbed_up(topology, args.topology, args.keys, args.state, options, redis_cluster=args.redis_cluster)
    except TestbedError as exc:
        raise CliError(str(exc)) from None
    print(f"testbed {topology.name} is up (state in {args.state}, logs in {args.state / 'logs'}):")
    for service in state.services:
        print(f"  {service.name:<14} " + "  ".join(f"{what} {where}" for what, where in service.listens.items()))
    return state


def _testbed_status(args: argparse.Namespace) -> int:
    """Without ``--topology``, the topology the testbed was started with (its replicas, its ports)."""
    topology = None if args.topology is None else _load_topology(args.topology)
    return _print_status(topology, args.state)


def _print_status(topology: Topology | None, state_dir: Path) -> int:
    state = TestbedState.load(state_dir)
    if state is None:
        raise CliError(f"no testbed recorded in {state_dir}; start one with `qkd-relay testbed up`")
    if topology is None:
        topology = _load_topology(Path(state.topology_file) if state.topology_file else None)
    show(status_screen(topology, state, asyncio.run(collect_status(topology, state))), sys.stdout)
    return 0


def _testbed_down(args: argparse.Namespace) -> int:
    stopped = testbed_down(args.state)
    print(f"stopped: {', '.join(stopped)}" if stopped else f"nothing was running from {args.state}")
    return 0


def _loadtest(args: argparse.Namespace) -> int:
    try:
        return loadtest_command.run(args)
    except loadtest_command.LoadtestError as exc:
        raise CliError(str(exc)) from None


def _kms_sim_run(args: argparse.Namespace) -> int:
    topology = _load_topology(args.topology)
    try:
        settings = SimSettings(
            availability_timeout_s=args.availability_timeout,
            initial_key_count=args.initial_keys,
            max_key_count=args.max_key_count,
            qber_threshold=args.qber_threshold,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    keys = KeyDirectory(args.keys / topology.name)
    if any(foreign.id == args.kms for foreign in topology.foreign_kms):
        return _foreign_kms_run(topology, args.kms, keys, settings)
    config = from_topology(topology, args.kms, settings)

    def listening(running: RunningKms) -> list[str]:
        kmes = running.kme_sites.items()
        lines = [f"{config.kms_id}: {kme_id} serving ETSI 014 at {site.url}" for kme_id, site in kmes]
        return [*lines, f"{config.kms_id}: admin at {running.admin_url}"]

    _serve_until_signalled(lambda: start_kms(config, keys), listening)
    return 0


def _foreign_kms_run(topology: Topology, kms_id: str, keys: KeyDirectory, settings: SimSettings) -> int:
    """The stand-in for a foreign KMS domain: 014 for its SAEs, 020 to and from its bordering gateway."""

    def listening(running: RunningKms) -> list[str]:
        lines = [f"{kms_id}: {kme_id} serving ETSI 014 at {site.url}" for kme_id, site in running.kme_sites.items()]
        assert running.etsi020_site is not None
        lines.append(f"{kms_id}: ETSI 020 at {running.etsi020_site.url}")
        return [*lines, f"{kms_id}: admin at {running.admin_url}"]

    try:
        _serve_until_signalled(lambda: start_foreign_kms(topology, kms_id, keys, settings), listening)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return 0


def _gateway_run(args: argparse.Namespace) -> int:
    topology = _load_topology(args.topology)
    try:
        settings = GatewaySettings(
            listen_host=args.listen_host,
            redis_url=args.redis_url,
            redis_cluster=args.redis_cluster,
            redis_wait_replicas=args.redis_wait_replicas,
            prerelay=not args.no_prerelay,
            hop_timeout_s=args.hop_timeout,
            foreign_ack_deadline_s=args.foreign_ack_deadline,
            foreign_synchronous=args.foreign_synchronous,
            listener=ListenerLimits(idle_timeout_s=args.idle_timeout),
            qkd_pool=replace(QkdPoolSettings(), watermarks=args.qkd_pool),
            relayed_store=replace(RelayedStoreSettings(), ready_watermarks=args.ready_pool),
            qkd_filler=FillerSettings(interval_s=args.qkd_fill_interval, max_batch=args.qkd_fill_batch),
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    plan = plan_gateway(topology, args.id, settings, replica=args.replica)
    keys = KeyDirectory(args.keys / topology.name)

    def listening(running: RunningGateway) -> list[str]:
        return [
            f"{plan.replica_name}: ETSI 014 at {running.sites['etsi014'].url}",
            f"{plan.replica_name}: ETSI 020 at {running.sites['etsi020'].url}",
            f"{plan.replica_name}: gRPC at {settings.listen_host}:{running.grpc_port}",
        ]

    _serve_until_signalled(lambda: start_gateway(plan, settings, keys), listening)
    return 0


def _watermarks(text: str) -> Watermarks:
    low, sep, high = text.partition(":")
    try:
        if not sep:
            raise ValueError("expected LOW:HIGH")
        return Watermarks(int(low), int(high))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _admin_url(args: argparse.Namespace) -> str:
    return f"http://{ADMIN_HOST}:{_load_topology(args.topology).vendor_kms(args.kms).admin_port}"


def _kms_sim_links(args: argparse.Namespace) -> int:
    body = asyncio.run(_admin_call("GET", f"{_admin_url(args)}/admin/links"))
    print(json.dumps(body, indent=2))
    return 0


def _kms_sim_set_qber(args: argparse.Namespace) -> int:
    url = f"{_admin_url(args)}/admin/links/{args.link}/qber"
    body = asyncio.run(_admin_call("PUT", url, {"qber": args.qber}))
    state = "HALTED" if body["halted"] else "delivering"
    print(f"{body['id']}: QBER {body['qber']:.3f}, {state}")
    return 0


async def _admin_call(method: str, url: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        async with aiohttp.ClientSession() as session:
            async with session.request(method, url, json=payload) as response:
                body: dict[str, Any] = await response.json(content_type=None)
                if response.status != 200:
                    raise CliError(body.get("message", f"admin answered {response.status}"))
                return body
    except aiohttp.ClientError as exc:
        raise CliError(f"cannot reach the simulator admin at {url}: {exc}") from None


def _sae_status(args: argparse.Namespace) -> int:
    return _run_sae(args, lambda client: client.get_status(args.slave))


def _sae_get_key(args: argparse.Namespace) -> int:
    request = KeyRequest(number=args.number, size=args.size)
    return _run_sae(args, lambda client: client.get_key(args.slave, request, use_post=args.post))


def _sae_get_key_with_ids(args: argparse.Namespace) -> int:
    return _run_sae(args, lambda client: client.get_key_with_ids(args.master, args.key_ids, use_post=args.post))


def _run_sae(args: argparse.Namespace, call: Callable[[Etsi014Client], Coroutine[Any, Any, Any]]) -> int:
    context = _key_directory(args).client_context(args.sae)

    async def run() -> Any:
        async with Etsi014Client(args.url, context) as client:
            return await call(client)

    try:
        result = asyncio.run(run())
    except KmeError as exc:
        print(json.dumps({"http_status": exc.status, **(exc.error.to_json() if exc.error else {})}, indent=2))
        return 1
    except KmeClientError as exc:  # no answer, or one that breaks the spec
        raise CliError(str(exc)) from None
    print(json.dumps(result.to_json(), indent=2))
    return 0


class _Service(Protocol):
    async def stop(self) -> None: ...


S = TypeVar("S", bound=_Service)


def _serve_until_signalled(start: Callable[[], Awaitable[S]], listening: Callable[[S], list[str]]) -> None:
    """Start a service, say where it listens (tests and the testbed wait for these lines), serve until
    SIGINT or SIGTERM, then stop it cleanly."""

    async def serve() -> None:
        running = await start()
        for line in listening(running):
            print(line, flush=True)
        try:
            await _until_signalled()
        finally:
            await running.stop()

    asyncio.run(serve())


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


if __name__ == "__main__":
    sys.exit(main())
