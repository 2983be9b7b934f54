"""PNG plots (matplotlib, Agg backend: no display needed).

- ``latency_over_time.png``: every enc_keys latency against its send time (due time in open loop), one
  panel per run, coloured by the master SAE's gateway, refused requests as crosses; the published regional
  testbed's 100 to 700 ms band of concurrent key-request delays is shaded for comparison.
- ``latency_percentiles.png``: HdrHistogram percentile distribution of each run.
- ``key_rates.png``: per testbed, relayed keys per second per gateway, QKD bits pulled per second per
  link (with the link's secret-key rate) and the vendor KMS's stored key per link, over the campaign,
  with the runs marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: the backend must be chosen first
import matplotlib.pyplot as plt

from relay.loadtest.histogram import LatencyHistogram
from relay.loadtest.results import RunResult
from relay.loadtest.runner import RequestRecord

PAPER_BAND_MS = (100.0, 700.0)
_PERCENTILE_TICKS = (0.0, 90.0, 99.0, 99.9, 99.99)


def latency_over_time(runs: list[RunResult], path: Path) -> Path:
    figure, axes = plt.subplots(len(runs), 1, figsize=(10, 2.6 * len(runs)), squeeze=False)
    for axis, run in zip(axes[:, 0], runs, strict=True):
        gateways = sorted({run.pair_of(r).master_gateway for r in run.records})
        for gateway in gateways:
            ok = [r for r in run.records if r.outcome.enc_ok and run.pair_of(r).master_gateway == gateway]
            axis.scatter([_x(r) for r in ok], [r.latency_ms for r in ok], s=6, label=f"{gateway}")
        failed = [r for r in run.records if not r.outcome.enc_ok]
        if failed:
            axis.scatter(
                [_x(r) for r in failed],
                [r.latency_ms for r in failed],
                s=14,
                marker="x",
                color="red",
                label=f"errors ({len(failed)})",
            )
        axis.axhspan(*PAPER_BAND_MS, color="grey", alpha=0.12, label="published testbed 100-700 ms")
        axis.set_yscale("log")
        axis.set_title(f"{run.group}: {run.label}, {run.spec.mode.value} loop", fontsize=9)
        axis.set_ylabel("latency ms")
        axis.legend(fontsize=7, loc="upper right", markerscale=2)
    axes[-1, 0].set_xlabel("seconds after the run's start")
    return _save(figure, path)


def latency_percentiles(runs: list[RunResult], path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(9, 5.5))
    for run in runs:
        points = LatencyHistogram.of(r.latency_ms for r in run.records if r.outcome.enc_ok).distribution()
        points = [(p, v) for p, v in points if p < 100.0]
        if points:
            axis.plot([_nines(p) for p, _ in points], [v for _, v in points], label=f"{run.group}: {run.label}")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xticks([_nines(p) for p in _PERCENTILE_TICKS], [f"{p:g}%" for p in _PERCENTILE_TICKS])
    axis.axhspan(*PAPER_BAND_MS, color="grey", alpha=0.12, label="published testbed 100-700 ms")
    axis.set_xlabel("percentile")
    axis.set_ylabel("latency ms")
    axis.set_title("enc_keys latency distribution (HdrHistogram)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7)
    return _save(figure, path)


def key_rates(
    groups: list[tuple[str, dict[str, Any], list[RunResult]]], rates_bps: dict[str, float], path: Path
) -> Path:
    """``groups``: (testbed label, :func:`relay.loadtest.results.key_rates` of its samples, its runs)."""
    figure, axes = plt.subplots(len(groups), 3, figsize=(15, 3.4 * len(groups)), squeeze=False)
    for row, (label, rates, runs) in zip(axes, groups, strict=True):
        series = rates["series"]
        panels = (
            ("keys_relayed_per_s", "relayed keys/s (originated)"),
            ("qkd_bits_pulled_per_s", "QKD bit/s pulled from the vendor"),
            ("vendor_stored_bits", "vendor stored key (bits)"),
        )
        for axis, (name, title) in zip(row, panels, strict=True):
            for node, points in sorted(series[name].items()):
                if points:
                    (line,) = axis.plot([t for t, _ in points], [v for _, v in points], label=node, linewidth=1.2)
                    if name == "qkd_bits_pulled_per_s" and node in rates_bps:
                        axis.axhline(rates_bps[node], color=line.get_color(), linestyle="--", linewidth=0.8)
            for run in runs:
                end = run.started_at_s + max((r.done_s for r in run.records), default=0.0)
                axis.axvspan(run.started_at_s, end, color="orange", alpha=0.12)
            if not series[name]:
                axis.text(
                    0.5,
                    0.5,
                    "no QKD link" if "qkd" in name or "vendor" in name else "no data",
                    ha="center",
                    va="center",
                    transform=axis.transAxes,
                )
            axis.set_title(f"{label}: {title}", fontsize=9)
            axis.set_xlabel("seconds (runs shaded)")
            if series[name]:
                axis.legend(fontsize=7)
    return _save(figure, path)


def _x(record: RequestRecord) -> float:
    return record.sent_s if record.scheduled_s is None else record.scheduled_s


def _nines(percentile: float) -> float:
    return 1.0 / (1.0 - percentile / 100.0)


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
