"""The ``qkd-relay loadtest`` command line: its options, and the run that prints the results table.

The campaign (and with it matplotlib) is imported only when the command runs, so the other
``qkd-relay`` commands, gateways and simulators among them, start without it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from relay.console import show
from relay.loadtest.runner import LoopMode
from relay.loadtest.scenarios import DEFAULT_SCENARIOS, SCENARIOS
from relay.loadtest.schedule import Arrival

DEFAULT_CONCURRENCY = 4
DEFAULT_DURATION_S = 3.0


class LoadtestError(Exception):
    """Bad options, or a testbed that cannot be started or reached; printed as one line."""


def add_arguments(parser: argparse.ArgumentParser, *, state_dir: Path, keys_root: Path) -> None:
    parser.set_defaults(loadtest_out_root=state_dir / "loadtest")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        metavar="NAME",
        help=f"repeatable; one of {', '.join(SCENARIOS)} (default: {' '.join(DEFAULT_SCENARIOS)})",
    )
    parser.add_argument(
        "--concurrency",
        action="append",
        type=int,
        metavar="N",
        help=f"concurrent SAEs (workers), repeatable (default: {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--mode",
        choices=[m.value for m in LoopMode],
        default=LoopMode.CLOSED.value,
        help="open: requests due at --rate, latency from the due time; closed: back to back (default: %(default)s)",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="open loop: requests per second (default: 20)")
    parser.add_argument(
        "--arrival",
        choices=[a.value for a in Arrival],
        default=Arrival.POISSON.value,
        help="open loop: inter-arrival times (default: %(default)s)",
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--duration", type=float, help=f"seconds per run (default: {DEFAULT_DURATION_S:g})")
    length.add_argument("--requests", type=int, help="requests per run")
    parser.add_argument("--number", type=int, default=1, help="keys per enc_keys request (default: 1)")
    parser.add_argument("--no-verify", action="store_true", help="skip the slave's dec_keys and the comparison")
    parser.add_argument(
        "--out", type=Path, help=f"output directory (default: a new {state_dir / 'loadtest'}/<date-time>)"
    )
    parser.add_argument(
        "--state", type=Path, help=f"load a running testbed (e.g. {state_dir}) instead of starting testbeds"
    )
    parser.add_argument("--keys", type=Path, default=keys_root, help="key directory root (default: %(default)s)")
    parser.add_argument(
        "--pool-size",
        type=int,
        default=32,
        help="pool scenarios: ready-pool high watermark per SAE pair of the gateways started for "
        "them (default: %(default)s)",
    )
    parser.add_argument("--no-plots", action="store_true", help="write CSV and JSON only")


def run(args: argparse.Namespace) -> int:
    from relay.loadtest.campaign import LoadtestOptions, run_loadtest
    from relay.loadtest.output import frames_line, summary_table
    from relay.loadtest.target import TargetError
    from relay.testbed.launcher import TestbedError

    try:
        options = LoadtestOptions(
            out=args.out or args.loadtest_out_root / time.strftime("%Y%m%d-%H%M%S"),
            scenarios=tuple(args.scenario or DEFAULT_SCENARIOS),
            concurrency=tuple(args.concurrency or (DEFAULT_CONCURRENCY,)),
            mode=LoopMode(args.mode),
            rate=args.rate,
            arrival=Arrival(args.arrival),
            duration_s=None if args.requests else (args.duration or DEFAULT_DURATION_S),
            requests=args.requests,
            number=args.number,
            verify=not args.no_verify,
            state=args.state,
            keys_root=args.keys,
            pool_size=args.pool_size,
            plots=not args.no_plots,
        )
        report = run_loadtest(options)
    except (TargetError, TestbedError, ValueError) as exc:
        raise LoadtestError(str(exc)) from None
    show([summary_table(report.summaries)], sys.stdout)
    for summary in report.summaries:
        for note in summary["notes"]:
            print(f"{summary['run']}: {note}")
        cores = ", ".join(f"{name} {value:.2f}" for name, value in summary["cpu_cores"].items() if value >= 0.05)
        print(f"{summary['run']}: CPU cores used: {cores or '-'}")
        if summary["frames"]:
            print(f"{summary['run']}: hop frames: {frames_line(summary['frames'])}")
    for skipped in report.skipped:
        print(f"skipped {skipped['scenario']}: {skipped['reason']}")
    print(f"\nwrote {options.out}: {', '.join(path.name for path in report.files)}")
    return 1 if any(summary["mismatches"] for summary in report.summaries) else 0
