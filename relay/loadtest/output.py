"""The load test's files and its printed table: ``requests.csv`` (every request), ``summary.json``."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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


def render_table(summaries: list[dict[str, Any]]) -> str:
    header = (
        f"{'SCENARIO':<20}{'MODE':<10}{'C':>4}{'HOPS':>5}{'REQ':>7}{'OK':>7}{'503':>6}{'ERR':>5}{'MISM':>5}"
        f"{'REQ/S':>8}{'KEYS/S':>8}{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}{'max':>9}"
        f"{'POOL':>7}{'RELAYED':>8}{'QKD>PQC':>8}{'QKD bits':>10}"
    )
    lines = [header, "-" * len(header)]
    for s in summaries:
        latency = s["latency_ms"]
        hops = ",".join(map(str, s["hops"]))
        mode = s["mode"] + (f"@{s['rate']:g}" if s["rate"] else "")
        qkd_bits = sum(link["bits_used_by_hops"] for link in s["qkd"].values())
        fallbacks = sum(gateway["qkd_fallbacks"] for gateway in s["gateways"].values())
        lines.append(
            f"{s['scenario']:<20}{mode:<10}{s['concurrency']:>4}{hops:>5}{s['requests']:>7}{s['ok']:>7}"
            f"{s['errors_503']:>6}{s['errors'] - s['errors_503']:>5}{s['mismatches']:>5}"
            f"{s['throughput_rps']:>8.1f}{s['keys_per_s']:>8.1f}"
            + "".join(f"{latency[p]:>9.1f}" for p in ("p50", "p90", "p99", "p99.9", "max_ms"))
            + f"{s['pool']['served_from_pool']:>7}{s['pool']['relayed_on_demand']:>8}{fallbacks:>8}{qkd_bits:>10}"
        )
    lines.append(
        "latencies in ms of successful enc_keys (open loop: from the due time); 503 and other errors "
        "counted apart; POOL / RELAYED: keys served from ready pools / relayed on demand; QKD>PQC: "
        "qkd+pqc hops sealed pqc-only for want of QKD key; QKD bits: used by hops during the run"
    )
    return "\n".join(lines)
