"""Benchmark report of the relay under load, in one run: ``qkd-relay loadtest`` pieces on local testbeds.

Run: ``python tests/bench/bench_relay.py --out DIR`` (or ``python -m tests.bench.bench_relay``); add
``--profile`` to run the throughput section with GW1 under cProfile and print where its time goes. It
prints the targets of issue 14 (hop frames), each beside the floor measured in the same run
(:mod:`tests.bench.floors`: empty gRPC calls/s at 64 callers and one caller's round trip, ML-KEM and
ML-DSA operations/s, the Redis round trip), then the runs behind them. It starts five testbeds of its
own, one after the other, on free ports (keys under ``DIR/keys``):

- ``loadtest-chain`` (GW1-GW2-GW3-GW4, pqc-only, ``--no-prerelay``): the floors, per-hop overhead at one
  SAE, on-demand relay across 2 hops at 64 concurrent SAEs, raw relay throughput of one gateway process;
- ``loadtest-pool`` (GW1-GW2, pqc-only, eight source SAEs, pre-relay on): pool-served ``enc_keys`` at 64
  and 256 concurrent SAEs;
- ``three-region`` (``--no-prerelay``): the six region pairs at once at a rate their QKD links sustain,
  compared with the published regional testbed's 100 to 700 ms;
- ``qkd-route-hkdf`` and ``qkd-route-otp``: the three-region gateways with both QKD links require-qkd at
  2 kbit/s, ``qkd_use`` hkdf or otp, and no pqc-only GW1-GW3 link (routing would take it round a dry
  lane): SAE-R1-A -> SAE-R3-A over two QKD hops, 64 SAEs x 16 keys, after a drain run that spends the
  QKD key the lanes and the vendor KMS stocked while idle, so the measured run lives on the link rate.

Closed loop at N SAEs saturates the gateways, and then latency is N / throughput (Little's law) whatever
the per-request cost; open loop at a rate below saturation shows the latency an SAE sees in service. The
report gives both. Everything runs on this machine: the load generator shares the cores with the
gateways, Redis and the simulators; cores used per process are printed for each run.
"""

from __future__ import annotations

import argparse
import os
import platform
import pstats
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from relay import topology as topology_module
from relay.loadtest.campaign import LoadtestOptions, Report, run_loadtest
from relay.loadtest.histogram import LatencyHistogram
from relay.loadtest.output import frames_line
from relay.loadtest.runner import LoopMode
from relay.loadtest.schedule import Arrival
from relay.loadtest.topologies import CHAIN, POOL, THREE_REGION, document_for, with_free_ports, write_topology
from relay.pki.layout import KeyDirectory
from relay.testbed.launcher import TestbedState, accepts_connections, down, up
from tests.bench.floors import Floors, measure

PAPER_MS = (100.0, 700.0)
POOL_SIZE = 128  # ready keys per SAE pair; eight pairs hold 1,024
KEYS_PER_REQUEST = 16
QKD_RATE_BPS = 2000  # both links of the QKD route
KEY_BITS = 256
TARGET_THROUGHPUT_X_GRPC = 3.0
TARGET_QKD_KEYS_PER_S = 500.0
TARGET_OTP_RATIO = 0.9
TARGET_HOP_OVER_PARTS = 1.2
TARGET_POOL_TAIL = 2.5
TARGET_ON_DEMAND_TAIL = 1.8


@dataclass
class Bench:
    out: Path
    keys: Path
    quick: bool
    lines: list[str]

    def seconds(self, full: float) -> float:
        return max(1.0, full / 3) if self.quick else full

    def run(self, name: str, state: Path, **options: Any) -> Report:
        settings = LoadtestOptions(out=self.out / name, state=state, keys_root=self.keys, **options)
        return run_loadtest(settings)


@contextmanager
def testbed(
    bench: Bench,
    name: str,
    gateway_options: list[str],
    document: dict[str, Any] | None = None,
    *,
    redis_cluster: bool = False,
) -> Iterator[Path]:
    """The load-test topology ``name`` (or ``document``, run under ``name``) started, each region's Redis a
    Redis Cluster with ``redis_cluster``; yields its state."""
    work = bench.out / "testbeds" / name
    work.mkdir(parents=True, exist_ok=True)
    document = with_free_ports(document or document_for(name), redis_cluster=redis_cluster)
    topology_file = write_topology(document, work / "topology.yaml")
    state = work / "state"
    print(f"\n== starting {name} {' '.join(gateway_options)}", file=sys.stderr, flush=True)
    up(
        topology_module.load(topology_file),
        topology_file,
        bench.keys,
        state,
        gateway_options,
        redis_cluster=redis_cluster,
    )
    try:
        yield state
    finally:
        down(state)


def fmt(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def row(summary: dict[str, Any], label: str) -> str:
    latency = summary["latency_ms"]
    rate = f"open {summary['rate']:g}/s" if summary["mode"] == "open" else "closed"
    cores = ", ".join(f"{k} {v:.2f}" for k, v in summary["cpu_cores"].items() if v >= 0.05)
    return (
        f"| {label} | {rate} | {summary['concurrency']} | {summary['requests']} | {summary['errors_503']} "
        f"| {summary['errors'] - summary['errors_503']} | {fmt(summary['throughput_rps'])} "
        f"| {fmt(latency['p50'])} | {fmt(latency['p90'])} | {fmt(latency['p99'])} | {fmt(latency['p99.9'])} "
        f"| {cores} |"
    )


TABLE_HEAD = (
    "| run | loop | SAEs | requests | 503 | other errors | ok/s | p50 ms | p90 ms | p99 ms | p99.9 ms "
    "| CPU cores used |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
)


def load() -> float:
    return os.getloadavg()[0]


def p99_of(summary: dict[str, Any]) -> float:
    return float(summary["latency_ms"]["p99"])


def slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)


def qkd_route_document(qkd_use: str) -> dict[str, Any]:
    """Three-region with both QKD links require-qkd at :data:`QKD_RATE_BPS` and ``qkd_use``, and no
    pqc-only GW1-GW3 link: SAE-R1-A -> SAE-R3-A then has one route, over two QKD hops."""
    document = document_for(THREE_REGION)
    for link in document["qkd_links"]:
        link["rate_bps"] = QKD_RATE_BPS
    document["links"] = [
        {**link, "policy": "require-qkd", "qkd_use": qkd_use} for link in document["links"] if "qkd_link" in link
    ]
    return document


def chain_section(bench: Bench, profile: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with testbed(bench, CHAIN, ["--no-prerelay"]) as state:
        recorded = TestbedState.load(state)
        assert recorded is not None and recorded.topology_file is not None
        topology = topology_module.load(Path(recorded.topology_file))
        figures["floors"] = measure(
            KeyDirectory(bench.keys / topology.name), topology.regions[0].redis_port, seconds=bench.seconds(3.0)
        )
        hops = bench.run(
            "hops",
            state,
            scenarios=("pqc-1hop-ondemand", "pqc-2hop-ondemand", "pqc-3hop-ondemand"),
            concurrency=(1,),
            duration_s=bench.seconds(5.0),
        )
        bench.lines += [
            "",
            "### Per-hop overhead (pqc-only chain, one SAE, closed loop, enc_keys)",
            "",
            "| hops | requests | mean ms | p50 ms | p99 ms |",
            "|--:|--:|--:|--:|--:|",
        ]
        points_mean, points_p50 = [], []
        for summary in hops.summaries:
            (count,) = summary["hops"]
            latency = summary["latency_ms"]
            points_mean.append((count, latency["mean_ms"]))
            points_p50.append((count, latency["p50"]))
            bench.lines.append(
                f"| {count} | {summary['requests']} | {latency['mean_ms']:.1f} | {latency['p50']:.1f} "
                f"| {latency['p99']:.1f} |"
            )
        figures["per_hop_ms"] = slope(points_mean)
        figures["fixed_ms"] = points_mean[0][1] - figures["per_hop_ms"]
        bench.lines.append(
            f"\nper-hop overhead (least-squares slope of the mean): {figures['per_hop_ms']:.1f} ms "
            f"(p50 slope {slope(points_p50):.1f} ms); the rest of a 1-hop request: "
            f"{figures['fixed_ms']:.1f} ms"
        )

        closed = bench.run(
            "ondemand-2hop-closed",
            state,
            scenarios=("pqc-2hop-ondemand",),
            concurrency=(64,),
            duration_s=bench.seconds(5.0),
        )
        opened = bench.run(
            "ondemand-2hop-open",
            state,
            scenarios=("pqc-2hop-ondemand",),
            concurrency=(64,),
            mode=LoopMode.OPEN,
            rate=64.0,
            arrival=Arrival.POISSON,
            duration_s=bench.seconds(5.0),
        )
        figures["on_demand_2hop"] = {"closed": closed.summaries[0], "open": opened.summaries[0]}

        figures["throughput_1key"] = bench.run(
            "throughput-1key",
            state,
            scenarios=("pqc-1hop-ondemand",),
            concurrency=(64,),
            verify=False,
            duration_s=bench.seconds(5.0),
        ).summaries[0]
        figures["throughput"] = run_throughput(bench, state, profile).summaries[0]  # last: it may restart GW1
    return figures


def relay_throughput(bench: Bench, name: str, state: Path, seconds: float) -> Report:
    """One closed-loop run of raw relay throughput: 64 SAEs, 16 keys per enc_keys over one pqc-only hop, no
    dec_keys (the slaves' fetches would load the receiving gateway)."""
    return bench.run(
        name,
        state,
        scenarios=("pqc-1hop-ondemand",),
        concurrency=(64,),
        number=KEYS_PER_REQUEST,
        verify=False,
        duration_s=seconds,
    )


def run_throughput(bench: Bench, state: Path, profile: bool) -> Report:
    if not profile:
        return relay_throughput(bench, "throughput", state, bench.seconds(8.0))
    recorded = TestbedState.load(state)
    assert recorded is not None
    gw1 = next(s for s in recorded.services if s.name == "GW1")
    os.killpg(gw1.pid, signal.SIGTERM)
    time.sleep(1.0)
    topology = topology_module.load(Path(recorded.topology_file or ""))
    profile_file = bench.out / "gw1.prof"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cProfile",
            "-o",
            str(profile_file),
            "-m",
            "relay.cli",
            "gateway",
            "run",
            "--id",
            "GW1",
            "--topology",
            str(recorded.topology_file),
            "--keys",
            str(bench.keys),
            "--no-prerelay",
        ],
        stdout=(bench.out / "gw1-profiled.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    services = tuple(replace(s, pid=process.pid) if s.name == "GW1" else s for s in recorded.services)
    replace(recorded, services=services).save(state)  # CPU accounting and `down` now see the profiled GW1
    gateway = next(g for g in topology.gateways if g.id == "GW1")
    deadline = time.monotonic() + 30
    ports = (gateway.etsi014_port, gateway.etsi020_port, gateway.grpc_port, gateway.admin_port or 0)
    while not all(accepts_connections("127.0.0.1", port) for port in ports) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        report = relay_throughput(bench, "throughput", state, bench.seconds(8.0))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    stats = pstats.Stats(str(profile_file))
    total = stats.total_tt  # type: ignore[attr-defined]
    top = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:8]  # type: ignore[attr-defined]
    bench.lines += ["", "GW1 under cProfile during the throughput run (whole process lifetime, own time):", ""]
    for (filename, line, function), (_, calls, own, _cumulative, _) in top:
        where = function if filename == "~" else f"{Path(filename).name}:{line} {function}"
        bench.lines.append(f"- {where}: {own:.2f} s ({own / total:.0%}), {calls:,} calls")
    return report


def pool_section(bench: Bench) -> dict[Any, Any]:
    figures: dict[Any, Any] = {}
    with testbed(bench, POOL, ["--ready-pool", f"4:{POOL_SIZE}"]) as state:
        for concurrency in (64, 256):
            closed = bench.run(
                f"pool-{concurrency}-closed",
                state,
                scenarios=("pqc-1hop-pool",),
                concurrency=(concurrency,),
                duration_s=None,
                requests=8 * POOL_SIZE,
                prefill_timeout_s=60.0,
            )
            opened = bench.run(
                f"pool-{concurrency}-open",
                state,
                scenarios=("pqc-1hop-pool",),
                concurrency=(concurrency,),
                mode=LoopMode.OPEN,
                rate=256.0,
                arrival=Arrival.POISSON,
                duration_s=None,
                requests=8 * POOL_SIZE // 2,
                prefill_timeout_s=60.0,
            )
            figures[concurrency] = {"closed": closed.summaries[0], "open": opened.summaries[0]}
        gentle = bench.run(
            "pool-64-open-32",
            state,
            scenarios=("pqc-1hop-pool",),
            concurrency=(64,),
            mode=LoopMode.OPEN,
            rate=32.0,
            arrival=Arrival.POISSON,
            duration_s=None,
            requests=int(32 * bench.seconds(6.0)),
            prefill_timeout_s=60.0,
        )
        figures["gentle"] = gentle.summaries[0]
    return figures


def three_region_section(bench: Bench) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with testbed(bench, THREE_REGION, ["--no-prerelay"]) as state:
        mesh = bench.run(
            "paper-mesh",
            state,
            scenarios=("qkd-mesh-ondemand",),
            concurrency=(6,),
            mode=LoopMode.OPEN,
            rate=6.0,
            arrival=Arrival.POISSON,
            duration_s=bench.seconds(15.0),
        )
        figures["mesh"] = mesh.summaries[0]
        (run,) = mesh.runs
        both = [r.latency_ms + (r.outcome.dec_ms or 0.0) for r in run.records if r.outcome.ok]
        figures["mesh_end_to_end"] = LatencyHistogram.of(both).summary()
    return figures


def qkd_route_section(bench: Bench, qkd_use: str) -> dict[str, Any]:
    """A drain run, then the measured run, of SAE-R1-A -> SAE-R3-A over two QKD hops at 64 SAEs x 16 keys."""
    with testbed(bench, f"qkd-route-{qkd_use}", ["--no-prerelay"], qkd_route_document(qkd_use)) as state:
        options = {"scenarios": ("qkd-2hop-ondemand",), "concurrency": (64,), "number": KEYS_PER_REQUEST}
        bench.run(f"qkd-route-{qkd_use}-drain", state, duration_s=bench.seconds(15.0), **options)
        return bench.run(f"qkd-route-{qkd_use}", state, duration_s=bench.seconds(20.0), **options).summaries[0]


def link_supply(summary: dict[str, Any]) -> dict[str, float]:
    """QKD bits the hops used on each link / what the link distilled during the run (rate x elapsed):
    above 1, the run drew on key stocked before it, and its figure overstates what the link sustains."""
    elapsed = max(summary["elapsed_s"], 1e-9)
    return {
        link: info["bits_used_by_hops"] / (float(info["vendor_rate_bps"] or QKD_RATE_BPS) * elapsed)
        for link, info in summary["qkd"].items()
    }


def tail(summary: dict[str, Any]) -> float:
    latency = summary["latency_ms"]
    return float(latency["p99"]) / max(float(latency["p50"]), 1e-9)


def targets_table(
    floors: Floors, chain: dict[str, Any], pool: dict[Any, Any], routes: dict[str, dict[str, Any]]
) -> list[str]:
    """The issue's targets, each with this run's figure and the floor it stands on."""

    def met(ok: bool) -> str:
        return "met" if ok else "**NOT met**"

    gw1 = chain["throughput"]["gateways"]["GW1"]["keys_relayed_per_s"]
    grpc = floors.grpc_calls_per_s
    hkdf, otp = routes["hkdf"], routes["otp"]
    otp_ratio = otp["keys_per_s"] * KEY_BITS / QKD_RATE_BPS
    per_hop = chain["per_hop_ms"]
    pool_open, on_demand = pool[64]["open"], chain["on_demand_2hop"]["open"]
    kem, dsa = floors.kem_us, floors.dsa_us

    def supply(summary: dict[str, Any]) -> str:
        return ", ".join(f"{link} {ratio:.2f}" for link, ratio in link_supply(summary).items())

    def percentiles(summary: dict[str, Any]) -> str:
        return f"p99 {p99_of(summary):,.1f} ms / p50 {summary['latency_ms']['p50']:,.1f} ms"

    return [
        "| measure | target | this run | floor (same run) | |",
        "|---|---|---|---|---|",
        f"| relayed 256-bit keys/s, one gateway process, pqc-only 1 hop, 64 SAEs x 16 keys, no slave fetch "
        f"| >= {TARGET_THROUGHPUT_X_GRPC:g}x empty gRPC = {TARGET_THROUGHPUT_X_GRPC * grpc:,.0f} "
        f"| {gw1:,.0f} keys/s = **{gw1 / grpc:.2f}x** "
        f"| empty gRPC {grpc:,.0f} calls/s at {floors.grpc_callers} callers "
        f"| {met(gw1 >= TARGET_THROUGHPUT_X_GRPC * grpc)} |",
        f"| keys/s over two QKD hops, require-qkd at 2 kbit/s, `hkdf`, 64 SAEs x 16 keys "
        f"| >= {TARGET_QKD_KEYS_PER_S:g} | **{hkdf['keys_per_s']:,.0f}** ({hkdf['errors_503']} of "
        f"{hkdf['requests']} requests 503) | link {QKD_RATE_BPS:,} bit/s = {QKD_RATE_BPS / KEY_BITS:.1f} QKD keys/s; "
        f"QKD used / distilled: {supply(hkdf)} | {met(hkdf['keys_per_s'] >= TARGET_QKD_KEYS_PER_S)} |",
        f"| same route with `otp`: relayed bits/s / link secret-key bits/s | >= {TARGET_OTP_RATIO:g} "
        f"| {otp['keys_per_s'] * KEY_BITS:,.0f} / {QKD_RATE_BPS:,} = **{otp_ratio:.2f}** "
        f"| QKD used / distilled: {supply(otp)} | {met(otp_ratio >= TARGET_OTP_RATIO)} |",
        f"| per-hop overhead at 1 SAE / sum of its parts | <= {TARGET_HOP_OVER_PARTS:g}x "
        f"| {per_hop:.2f} ms / {floors.hop_parts_ms:.2f} ms = **{per_hop / floors.hop_parts_ms:.2f}x** "
        f"| gRPC round trip {floors.grpc_round_trip_ms:.2f} + ML-DSA sign {dsa['sign'] / 1000:.2f} + verify "
        f"{dsa['verify'] / 1000:.2f} + ML-KEM encaps {kem['encaps'] / 1000:.2f} + decaps {kem['decaps'] / 1000:.2f} ms "
        f"| {met(per_hop / floors.hop_parts_ms <= TARGET_HOP_OVER_PARTS)} |",
        f"| pool-served `enc_keys` p99 / p50, 64 SAEs, open loop 256/s | <= {TARGET_POOL_TAIL:g} "
        f"| **{tail(pool_open):.2f}** ({percentiles(pool_open)}) "
        f"| Redis round trip {floors.redis_round_trip_ms:.3f} ms "
        f"| {met(tail(pool_open) <= TARGET_POOL_TAIL)} |",
        f"| on-demand 2-hop p99 / p50, 64 SAEs, open loop 64/s | <= {TARGET_ON_DEMAND_TAIL:g} "
        f"| **{tail(on_demand):.2f}** ({percentiles(on_demand)}) | two hops' parts {2 * floors.hop_parts_ms:.2f} ms "
        f"| {met(tail(on_demand) <= TARGET_ON_DEMAND_TAIL)} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark report of the relay under load (local testbeds).")
    parser.add_argument("--out", type=Path, default=Path(".testbed/bench-relay"), help="plots, CSV, JSON, keys")
    parser.add_argument("--profile", action="store_true", help="run GW1 under cProfile in the throughput section")
    parser.add_argument("--quick", action="store_true", help="a third of each duration (a smoke run)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.out.resolve(), (args.out / "keys").resolve(), args.quick, [])
    started = time.monotonic()
    load_before = f"{load():.2f}"
    chain = chain_section(bench, args.profile)
    pool = pool_section(bench)
    regions = three_region_section(bench)
    routes = {qkd_use: qkd_route_section(bench, qkd_use) for qkd_use in ("hkdf", "otp")}
    floors: Floors = chain["floors"]

    lines = [
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; load generator, "
        f"gateways, Redis and simulators on this one machine; {time.monotonic() - started:.0f} s in all; "
        f"load average before {load_before}, after {load():.2f} (other work on the machine skews figures)",
        "",
        "### Targets (issue 14)",
        "",
        *targets_table(floors, chain, pool, routes),
        "",
        "Floors, measured in the same run:",
        "",
        *floors.lines(),
    ]
    lines += bench.lines
    lines += ["", "### Runs", "", TABLE_HEAD]
    labelled = [
        (chain["on_demand_2hop"]["closed"], "on-demand, 2 pqc-only hops"),
        (chain["on_demand_2hop"]["open"], "on-demand, 2 pqc-only hops"),
        (routes["hkdf"], "on-demand, 2 QKD hops, require-qkd 2 kbit/s, hkdf, 16 keys/request"),
        (routes["otp"], "on-demand, 2 QKD hops, require-qkd 2 kbit/s, otp, 16 keys/request"),
        *((pool[c][loop], "pool-served") for c in (64, 256) for loop in ("closed", "open")),
        (pool["gentle"], "pool-served, light refill"),
        (chain["throughput_1key"], "throughput, 1 key/request, no dec_keys"),
        (chain["throughput"], "throughput, 16 keys/request, no dec_keys"),
        (regions["mesh"], "six region pairs at once (QKD links)"),
    ]
    lines += [row(summary, label) for summary, label in labelled]
    examples = {(status, detail) for summary, _ in labelled for status, detail in summary["error_examples"].items()}
    if examples:
        lines += ["", "errors seen (one example each):"]
        lines += [f"- {status}: {detail}" for status, detail in sorted(examples)]

    lines += ["", "### Hop frames and QKD bits per relayed key, per link (from the gateways' frame counters)", ""]
    lines += [f"- {label}: {frames_line(summary['frames']) or 'no frames'}" for summary, label in labelled]

    throughput = chain["throughput"]
    gw1 = throughput["gateways"]["GW1"]["keys_relayed_per_s"]
    gw2_hops = throughput["gateways"]["GW2"]["hops_received"] / max(throughput["elapsed_s"], 1e-9)
    lines += [
        "",
        "### Relay throughput of one gateway process (pqc-only, 1 hop)",
        "",
        f"GW1 originated {gw1:,.0f} relayed keys/s ({KEYS_PER_REQUEST} keys per enc_keys, 64 SAEs, closed loop); "
        f"GW2 received {gw2_hops:,.0f} keys/s in frames; CPU cores used: "
        + ", ".join(f"{k} {v:.2f}" for k, v in throughput["cpu_cores"].items() if v >= 0.05),
    ]

    mesh, e2e = regions["mesh"], regions["mesh_end_to_end"]
    qkd_bits = {link: info["bits_used_by_hops"] for link, info in mesh["qkd"].items()}
    lines += [
        "",
        "### Against the published regional testbed (100 to 700 ms at 2 to 3 kbit/s)",
        "",
        f"six region pairs at once, open loop {mesh['rate']:g} requests/s, {mesh['requests']} requests, "
        f"{mesh['ok']} ok, {mesh['errors_503']} answered 503; QKD bits used by hops: {qkd_bits}; "
        f"hops sealed pqc-only for want of QKD key: "
        f"{sum(g['qkd_fallbacks'] for g in mesh['gateways'].values())}",
        "",
        "| | p50 ms | p99 ms | p50 / 100 ms | p50 / 700 ms | p99 / 100 ms | p99 / 700 ms |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for label, p50, p99 in (
        ("enc_keys (relayed end to end before it answers)", mesh["latency_ms"]["p50"], mesh["latency_ms"]["p99"]),
        ("enc_keys + the slave's dec_keys", e2e.percentiles_ms["p50"], e2e.percentiles_ms["p99"]),
    ):
        lines.append(
            f"| {label} | {p50:.1f} | {p99:.1f} | {p50 / PAPER_MS[0]:.2f} | {p50 / PAPER_MS[1]:.3f} "
            f"| {p99 / PAPER_MS[0]:.2f} | {p99 / PAPER_MS[1]:.3f} |"
        )
    lines += ["", f"plots, CSV and JSON per run under {bench.out}/<run>/"]
    print("\n".join(lines))
    (bench.out / "report.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
