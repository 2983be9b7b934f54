"""What ``appendfsync always`` costs the relay, against ``everysec``, measured A/B in one run.

The durability rule (no key acknowledged before its writes are on disk) needs ``appendfsync always``.
This benchmark starts the pqc-only chain testbed once and alternates every region's Redis between
``always`` and ``everysec`` (``CONFIG SET``, as the admin user), running the same closed-loop load after
each switch: 64 SAEs asking 16 keys per ``enc_keys`` over one hop, no slave fetch. Alternating rounds
(A B A B ...) cancel the slow drift of a shared machine's load; the figure is the ratio of the medians.
The floor beside it: redis-benchmark SET with 50 clients in each mode, on the same Redis.

    .venv/bin/python tests/bench/bench_fsync.py [--rounds 3] [--seconds 4]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from relay import topology as topology_module
from relay.loadtest.topologies import CHAIN
from relay.pki.provision import provision
from relay.pki.redis_access import ADMIN_USER, read_credentials
from relay.testbed.launcher import TestbedState
from tests.bench.bench_relay import KEYS_PER_REQUEST, Bench, relay_throughput, testbed

MODES = ("always", "everysec")


def redis_ports(state: Path) -> list[int]:
    recorded = TestbedState.load(state)
    assert recorded is not None and recorded.topology_file is not None
    return [region.redis_port for region in topology_module.load(Path(recorded.topology_file)).regions]


def redis_cli(port: int, password: str, *command: str) -> str:
    args = ["redis-cli", "-p", str(port), "--user", ADMIN_USER, "--pass", password, "--no-auth-warning", *command]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def set_ops_per_s(port: int, password: str) -> float:
    """redis-benchmark SET, 50 clients: the floor a key's durable write stands on."""
    args = ["redis-benchmark", "-p", str(port), "--user", ADMIN_USER, "-a", password, "-t", "set", "-c", "50"]
    out = subprocess.run([*args, "-n", "20000", "-q"], check=True, capture_output=True, text=True).stdout
    [rate] = re.findall(r"SET: ([0-9.,]+) requests per second", out)  # past the progress lines
    return float(rate.replace(",", ""))


def run_load(bench: Bench, state: Path, name: str, seconds: float) -> float:
    """Relayed keys/s of one closed-loop run (:func:`tests.bench.bench_relay.relay_throughput`)."""
    report = relay_throughput(bench, name, state, seconds)
    return float(report.summaries[0]["throughput_rps"]) * KEYS_PER_REQUEST


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".testbed/bench-fsync"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="load per round and mode")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.out.resolve(), (args.out / "keys").resolve(), False, [])
    relayed: dict[str, list[float]] = {mode: [] for mode in MODES}
    floor: dict[str, list[float]] = {mode: [] for mode in MODES}
    with testbed(bench, CHAIN, ["--no-prerelay"]) as state:
        ports = redis_ports(state)
        recorded = TestbedState.load(state)
        assert recorded is not None and recorded.topology_file is not None
        keys = provision(topology_module.load(Path(recorded.topology_file)), bench.keys).directory
        password = read_credentials(keys, ADMIN_USER).password
        run_load(bench, state, "warm-up", args.seconds)  # connections, encapsulation keys, caches: not counted
        for round_number in range(args.rounds):
            for mode in MODES if round_number % 2 == 0 else reversed(MODES):
                for port in ports:
                    redis_cli(port, password, "CONFIG", "SET", "appendfsync", mode)
                relayed[mode].append(run_load(bench, state, f"{mode}-{round_number}", args.seconds))
                floor[mode].append(set_ops_per_s(ports[0], password))
                print(f"round {round_number} {mode}: {relayed[mode][-1]:,.0f} keys/s", file=sys.stderr, flush=True)
        for port in ports:
            redis_cli(port, password, "CONFIG", "SET", "appendfsync", "always")

    print("| appendfsync | relayed keys/s per round (1 hop, 64 SAEs x 16 keys) | median | redis SET/s, 50 clients |")
    print("|---|---|--:|--:|")
    for mode in MODES:
        rounds = ", ".join(f"{value:,.0f}" for value in relayed[mode])
        print(
            f"| {mode} | {rounds} | {statistics.median(relayed[mode]):,.0f} | {statistics.median(floor[mode]):,.0f} |"
        )
    ratio = statistics.median(relayed["always"]) / statistics.median(relayed["everysec"])
    floor_ratio = statistics.median(floor["always"]) / statistics.median(floor["everysec"])
    print(f"\nalways / everysec: relay {ratio:.2f}x, Redis SET floor {floor_ratio:.2f}x")


if __name__ == "__main__":
    main()
