"""Benchmark report of the relay under load, in one run: ``qkd-relay loadtest`` pieces on local testbeds.

Run: ``python tests/bench/bench_relay.py --out DIR`` (or ``python -m tests.bench.bench_relay``); add
``--profile`` to run the throughput section with GW1 under cProfile and print where its time goes. It
starts three testbeds of its own, one after the other, on free ports (keys under ``DIR/keys``):

- ``loadtest-chain`` (GW1-GW2-GW3-GW4, pqc-only, ``--no-prerelay``): per-hop overhead at one SAE,
  on-demand relay across 2 hops at 64 concurrent SAEs, raw relay throughput of one gateway process;
- ``loadtest-pool`` (GW1-GW2, pqc-only, eight source SAEs, pre-relay on): pool-served ``enc_keys`` at 64
  and 256 concurrent SAEs;
- ``three-region`` (``--no-prerelay``): the six region pairs at once at a rate their QKD links sustain,
  compared with the published regional testbed's 100 to 700 ms, then 2 hops over QKD at 64 SAEs.

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
from relay.loadtest.runner import LoopMode
from relay.loadtest.schedule import Arrival
from relay.loadtest.topologies import CHAIN, POOL, THREE_REGION, document_for, with_free_ports, write_topology
from relay.testbed.launcher import TestbedState, accepts_connections, down, up

PAPER_MS = (100.0, 700.0)
POOL_SIZE = 128  # ready keys per SAE pair; eight pairs hold 1,024
TARGET_POOL_P99_MS = 10.0
TARGET_ON_DEMAND_2HOP_P99_MS = 50.0
TARGET_KEYS_PER_S = 1000.0


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
def testbed(bench: Bench, name: str, gateway_options: list[str]) -> Iterator[Path]:
    work = bench.out / "testbeds" / name
    work.mkdir(parents=True, exist_ok=True)
    topology_file = write_topology(with_free_ports(document_for(name)), work / "topology.yaml")
    state = work / "state"
    print(f"\n== starting {name} {' '.join(gateway_options)}", file=sys.stderr, flush=True)
    up(topology_module.load(topology_file), topology_file, bench.keys, state, gateway_options)
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


def chain_section(bench: Bench, profile: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with testbed(bench, CHAIN, ["--no-prerelay"]) as state:
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


def run_throughput(bench: Bench, state: Path, profile: bool) -> Report:
    options = {
        "scenarios": ("pqc-1hop-ondemand",),
        "concurrency": (64,),
        "number": 16,
        "verify": False,
        "duration_s": bench.seconds(8.0),
    }
    if not profile:
        return bench.run("throughput", state, **options)
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
        report = bench.run("throughput", state, **options)
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


def pool_section(bench: Bench) -> dict[str, Any]:
    figures: dict[str, Any] = {}
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
        figures["qkd_2hop"] = bench.run(
            "qkd-2hop-64", state, scenarios=("qkd-2hop-ondemand",), concurrency=(64,), duration_s=bench.seconds(5.0)
        ).summaries[0]
    return figures


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

    lines = [
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; load generator, "
        f"gateways, Redis and simulators on this one machine; {time.monotonic() - started:.0f} s in all; "
        f"load average before {load_before}, after {load():.2f} (other work on the machine skews figures)",
        "",
    ]
    lines += bench.lines
    lines += ["", "### Runs", "", TABLE_HEAD]
    lines.append(row(chain["on_demand_2hop"]["closed"], "on-demand, 2 pqc-only hops"))
    lines.append(row(chain["on_demand_2hop"]["open"], "on-demand, 2 pqc-only hops"))
    lines.append(row(regions["qkd_2hop"], "on-demand, 2 QKD hops (GW2-GW3 require-qkd)"))
    for concurrency in (64, 256):
        lines.append(row(pool[concurrency]["closed"], "pool-served"))
        lines.append(row(pool[concurrency]["open"], "pool-served"))
    lines.append(row(pool["gentle"], "pool-served, light refill"))
    lines.append(row(chain["throughput_1key"], "throughput, 1 key/request, no dec_keys"))
    lines.append(row(chain["throughput"], "throughput, 16 keys/request, no dec_keys"))
    lines.append(row(regions["mesh"], "six region pairs at once (QKD links)"))

    runs = [
        chain["on_demand_2hop"]["closed"],
        chain["on_demand_2hop"]["open"],
        regions["qkd_2hop"],
        *(pool[c][loop] for c in (64, 256) for loop in ("closed", "open")),
        pool["gentle"],
        chain["throughput_1key"],
        chain["throughput"],
        regions["mesh"],
    ]
    examples = {(status, detail) for run in runs for status, detail in run["error_examples"].items()}
    if examples:
        lines += ["", "errors seen (one example each):"]
        lines += [f"- {status}: {detail}" for status, detail in sorted(examples)]

    throughput = chain["throughput"]
    gw1 = throughput["gateways"]["GW1"]["keys_relayed_per_s"]
    gw2_hops = throughput["gateways"]["GW2"]["hops_received"] / max(throughput["elapsed_s"], 1e-9)
    lines += [
        "",
        "### Relay throughput of one gateway process (pqc-only, 1 hop)",
        "",
        f"GW1 originated {gw1:,.0f} relayed keys/s (16 keys per enc_keys, 64 SAEs, closed loop); GW2 received "
        f"{gw2_hops:,.0f} hops/s; CPU cores used: "
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

    def verdict(value: float, bound: float, below: bool = True) -> str:
        met = value < bound if below else value >= bound
        return f"{value:,.1f} ({'met' if met else 'NOT met'})"

    pool_64, pool_256 = pool[64], pool[256]
    two_hops = chain["on_demand_2hop"]
    lines += [
        "",
        "### Targets",
        "",
        f"- pool-served enc_keys p99 < {TARGET_POOL_P99_MS:g} ms at 64 SAEs: open loop 256/s "
        f"{verdict(p99_of(pool_64['open']), TARGET_POOL_P99_MS)} ms, closed loop "
        f"{verdict(p99_of(pool_64['closed']), TARGET_POOL_P99_MS)} ms, open loop 32/s "
        f"{verdict(p99_of(pool['gentle']), TARGET_POOL_P99_MS)} ms; at 256 SAEs: open "
        f"{p99_of(pool_256['open']):,.1f} ms, closed {p99_of(pool_256['closed']):,.1f} ms",
        f"- on-demand 2 hops p99 < {TARGET_ON_DEMAND_2HOP_P99_MS:g} ms at 64 SAEs (pqc-only hops): open loop "
        f"64/s {verdict(p99_of(two_hops['open']), TARGET_ON_DEMAND_2HOP_P99_MS)} ms, closed loop "
        f"{verdict(p99_of(two_hops['closed']), TARGET_ON_DEMAND_2HOP_P99_MS)} ms",
        f"- >= {TARGET_KEYS_PER_S:,.0f} relayed keys/s per gateway process: "
        f"{verdict(gw1, TARGET_KEYS_PER_S, below=False)}",
        "",
        f"plots, CSV and JSON per run under {bench.out}/<run>/",
    ]
    print("\n".join(lines))
    (bench.out / "report.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
