"""Scale figure of issue 16: the origin gateway GW1 as one process and as two replicas, in one run.

Run: ``python tests/bench/bench_replicas.py --out DIR`` (``--quick`` for a smoke run). For each replica
count it starts two testbeds with ``relay.testbed.launcher.up`` (free ports, keys under ``DIR/keys``):

- ``loadtest-pool`` (GW1-GW2, pqc-only, pre-relay on): pool-served ``enc_keys`` in a closed loop at 64
  SAEs, every request served from GW1's ready pools (the replicas share them in one Redis), 4,096
  requests after the pools are full, without the slaves' ``dec_keys``;
- ``loadtest-chain`` (pqc-only, ``--no-prerelay``): relayed keys/s of 64 SAEs asking 16 keys per
  ``enc_keys`` over one hop, the raw relay throughput of the origin; once more with one origin process on
  Redis Clusters with a replica per master and every write confirmed by ``WAIT 1`` (the cost of
  durability across a failover).

It prints requests/s and keys/s for 1 and 2 replicas and their ratio, beside the floors measured in the
same run (:mod:`tests.bench.floors`) and the CPU cores every process used. The machine has few cores
shared by the load generator, Redis, the simulators and every gateway process: the ratio is bounded by
the cores left once the one-process run already used them, which the printed CPU figures show.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from relay import topology as topology_module
from relay.loadtest.topologies import CHAIN, POOL, document_for
from relay.pki.layout import KeyDirectory
from relay.testbed.launcher import TestbedState
from tests.bench.bench_relay import KEYS_PER_REQUEST, Bench, load, relay_throughput, testbed
from tests.bench.floors import measure

REPLICA_COUNTS = (1, 2)
ORIGIN = "GW1"
POOL_PAIRS = 8  # the pool topology's source SAEs, one pair each
READY_POOL = 512  # ready keys per pair: the closed loop takes them all, 4,096 requests


def with_origin_replicas(name: str, replicas: int) -> dict[str, Any]:
    document = document_for(name)
    for region in document["regions"]:
        for gateway in region["gateways"]:
            if gateway["id"] == ORIGIN:
                gateway["replicas"] = replicas
    return document


def cores(summary: dict[str, Any]) -> str:
    used = {k: v for k, v in summary["cpu_cores"].items() if v >= 0.05}
    return ", ".join(f"{k} {v:.2f}" for k, v in used.items()) + f" (sum {sum(used.values()):.2f})"


def pool_run(bench: Bench, replicas: int) -> dict[str, Any]:
    """Without the slaves' dec_keys (``verify`` off): they would load GW2, one process in both runs."""
    name = f"{POOL}-x{replicas}"
    options = ["--ready-pool", f"4:{READY_POOL}"]
    with testbed(bench, name, options, with_origin_replicas(POOL, replicas)) as state:
        return bench.run(
            f"pool-64-closed-x{replicas}",
            state,
            scenarios=("pqc-1hop-pool",),
            concurrency=(64,),
            verify=False,
            duration_s=None,
            requests=POOL_PAIRS * READY_POOL,
            prefill_timeout_s=120.0,
        ).summaries[0]


def relay_run(bench: Bench, replicas: int, *, redis_cluster: bool = False) -> tuple[dict[str, Any], Any]:
    name = f"{CHAIN}-x{replicas}{'-cluster' if redis_cluster else ''}"
    document = with_origin_replicas(CHAIN, replicas)
    with testbed(bench, name, ["--no-prerelay"], document, redis_cluster=redis_cluster) as state:
        floors = None
        if replicas == 1 and not redis_cluster:
            recorded = TestbedState.load(state)
            assert recorded is not None and recorded.topology_file is not None
            topology = topology_module.load(Path(recorded.topology_file))
            floors = measure(
                KeyDirectory(bench.keys / topology.name), topology.regions[0].redis_port, seconds=bench.seconds(3.0)
            )
        return relay_throughput(bench, name, state, bench.seconds(8.0)).summaries[0], floors


def main() -> None:
    parser = argparse.ArgumentParser(description="Scale figure: the origin gateway as 1 and 2 replicas.")
    parser.add_argument("--out", type=Path, default=Path(".testbed/bench-replicas"), help="plots, CSV, JSON, keys")
    parser.add_argument("--quick", action="store_true", help="a third of each duration (a smoke run)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.out.resolve(), (args.out / "keys").resolve(), args.quick, [])
    started, load_before = time.monotonic(), f"{load():.2f}"
    pool = {n: pool_run(bench, n) for n in REPLICA_COUNTS}
    relays = {n: relay_run(bench, n) for n in REPLICA_COUNTS}
    clustered, _ = relay_run(bench, 1, redis_cluster=True)
    floors = relays[1][1]
    assert floors is not None

    def keys_per_s(summary: dict[str, Any]) -> float:
        return float(summary["keys_per_s"])  # every key relayed on demand: 1 hop, no pre-relay

    def requests_per_s(summary: dict[str, Any]) -> float:
        return float(summary["throughput_rps"])

    def origin_cores(summary: dict[str, Any]) -> float:
        """CPU cores all of GW1's processes used (``GW1``, or ``GW1/1`` + ``GW1/2``)."""
        return sum(v for k, v in summary["cpu_cores"].items() if k.split("/")[0] == ORIGIN)

    def table_row(label: str, runs: dict[int, dict[str, Any]], rate: Callable[[dict[str, Any]], float]) -> list[str]:
        one, two = (rate(runs[n]) for n in REPLICA_COUNTS)
        per_core = [rate(runs[n]) / max(origin_cores(runs[n]), 1e-9) for n in REPLICA_COUNTS]
        return [
            f"| {label} | {one:,.0f} | {two:,.0f} | {two / one:.2f} |",
            f"| the same per core of {ORIGIN}'s processes | {per_core[0]:,.0f} | {per_core[1]:,.0f} "
            f"| {per_core[1] / per_core[0]:.2f} |",
        ]

    relay_runs = {n: relays[n][0] for n in REPLICA_COUNTS}
    lines = [
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; load generator, "
        f"gateways, Redis and simulators on this one machine; {time.monotonic() - started:.0f} s in all; "
        f"load average before {load_before}, after {load():.2f}",
        "",
        f"### Scale: {ORIGIN} as 1 and 2 replicas (issue 16)",
        "",
        "| measure | 1 replica | 2 replicas | ratio |",
        "|---|--:|--:|--:|",
        *table_row("pool-served enc_keys/s, closed loop, 64 SAEs", pool, requests_per_s),
        *table_row(f"relayed keys/s, 64 SAEs x {KEYS_PER_REQUEST} keys, 1 pqc-only hop", relay_runs, keys_per_s),
        "",
        "With every process on this machine's cores, the ratio is bounded by the cores the one-process run "
        f"left idle (the sums below); the per-core rows show what a replica costs: equal figures mean "
        f"{ORIGIN}'s replicas add no work per request, so on hosts of their own the rate follows the cores.",
        "",
        f"Durable across a Redis failover: the same relay with {ORIGIN} as one process and every region's Redis a "
        f"Redis Cluster of 3 masters with a replica each, each write confirmed by WAIT 1: "
        f"{keys_per_s(clustered):,.0f} relayed keys/s, {keys_per_s(clustered) / keys_per_s(relays[1][0]):.2f} "
        f"of the standalone Redis run; CPU cores: {cores(clustered)}; errors: {clustered['errors']}",
        "",
        "CPU cores used per process:",
        "",
        *(f"- pool-served, {n} replica(s): {cores(pool[n])}" for n in REPLICA_COUNTS),
        *(f"- relayed, {n} replica(s): {cores(relays[n][0])}" for n in REPLICA_COUNTS),
        "",
        "errors: "
        + ", ".join(
            f"{label} x{n}: {summary['errors']}"
            for label, runs in (
                ("pool", {n: pool[n] for n in REPLICA_COUNTS}),
                ("relay", {n: relays[n][0] for n in REPLICA_COUNTS}),
            )
            for n, summary in runs.items()
        ),
        "",
        "Floors, measured in the same run:",
        "",
        *floors.lines(),
    ]
    print("\n".join(lines))
    (bench.out / "report.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
