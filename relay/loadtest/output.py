"""The load test's files and its printed table: ``requests.csv`` (every request), ``summary.json``."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from relay.console import Column, Table
from relay.loadtest.results import RunResult

CSV_COLUMNS = (
    "group",
    "scenario",
    "concurrency",
    "worker",
    "master",
    "slave",
    "gateway",
    "hops",
    "scheduled_s",
    "sent_s",
    "done_s",
    "latency_ms",
    "service_ms",
    "dec_ms",
    "status",
    "http_status",
    "keys",
    "pool_served",
    "detail",
)


def write_csv(runs: Iterable[RunResult], path: Path) -> Path:
    """One row per request; times in seconds after the run's start (``scheduled_s`` in open loop only)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for run in runs:
            for record in sorted(run.records, key=lambda r: r.sent_s):
                pair = run.pair_of(record)
                served = run.pool_served(record)
                outcome = record.outcome
                writer.writerow(
                    [
                        run.group,
                        run.scenario.name,
                        run.spec.concurrency,
                        record.worker,
                        pair.master,
                        pair.slave,
                        pair.master_gateway,
                        pair.hops,
                        "" if record.scheduled_s is None else f"{record.scheduled_s:.6f}",
                        f"{record.sent_s:.6f}",
                        f"{record.done_s:.6f}",
                        f"{record.latency_ms:.3f}",
                        f"{record.service_ms:.3f}",
                        "" if outcome.dec_ms is None else f"{outcome.dec_ms:.3f}",
                        outcome.status,
                        outcome.http_status or "",
                        outcome.keys,
                        "" if served is None else int(served),
                        outcome.detail[:200],
                    ]
                )
    return path


def write_json(document: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


SUMMARY_LEGEND = (
    "latencies in ms of successful enc_keys (open loop: from the due time); 503 and other errors "
    "counted apart; POOL / RELAYED: keys served from ready pools / relayed on demand; QKD>PQC: "
    "qkd+pqc hops sealed pqc-only for want of QKD key; QKD bits: used by hops during the run"
)
LATENCY_COLUMNS = {"p50": "p50", "p90": "p90", "p99": "p99", "p99.9": "p99.9", "max_ms": "max"}


def summary_table(summaries: list[dict[str, Any]]) -> Table:
    """One row per run; every number right-aligned, the legend under the table."""
    left = ("SCENARIO", "MODE")
    right = ("C", "HOPS", "REQ", "OK", "503", "ERR", "MISM", "REQ/S", "KEYS/S", *LATENCY_COLUMNS.values())
    right += ("POOL", "RELAYED", "QKD>PQC", "QKD bits")
    table = Table([*(Column(h) for h in left), *(Column(h, "right") for h in right)], notes=[SUMMARY_LEGEND])
    for s in summaries:
        latency = s["latency_ms"]
        qkd_bits = sum(link["bits_used_by_hops"] for link in s["qkd"].values())
        fallbacks = sum(gateway["qkd_fallbacks"] for gateway in s["gateways"].values())
        counts = (s["requests"], s["ok"], s["errors_503"], s["errors"] - s["errors_503"], s["mismatches"])
        table.add_row(
            s["scenario"],
            s["mode"] + (f"@{s['rate']:g}" if s["rate"] else ""),
            str(s["concurrency"]),
            ",".join(map(str, s["hops"])),
            *(str(count) for count in counts),
            f"{s['throughput_rps']:.1f}",
            f"{s['keys_per_s']:.1f}",
            *(f"{latency[p]:.1f}" for p in LATENCY_COLUMNS),
            str(s["pool"]["served_from_pool"]),
            str(s["pool"]["relayed_on_demand"]),
            str(fallbacks),
            str(qkd_bits),
        )
    return table


def frames_line(frames: dict[str, dict[str, float]]) -> str:
    """Per directed link: frames sealed, keys per frame and QKD bits spent per relayed key."""
    return "; ".join(
        f"{link} {use['frames']:,.0f} frames, {use['keys_per_frame']:g} keys/frame, "
        f"{use['qkd_bits_per_key']:g} QKD bits/key"
        for link, use in frames.items()
    )
