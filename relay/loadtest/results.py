"""What one run measured, summarised: latency percentiles, throughput, errors, pool use and QKD spent.

Latency percentiles are of ``enc_keys`` calls that were answered with keys (also when the slave's
``dec_keys`` then failed, which is counted as an error of its own); errors are counted by class, 503s
apart; throughput counts requests whose keys both ends hold. Pool use
and QKD consumption come from the admin counters before and after the run:

- keys relayed on demand = sum over the master gateways (all their replicas) of (keys_relayed -
  keys_prerelayed) deltas;
  a pool run is sized to what the ready pools hold, so every one of its requests is pool-served by
  construction and this count is the check (it can be off by pre-relay batches in flight);
- QKD bits pulled = the link filler's keys_fetched delta x the QKD key size (what the master gateway
  drew from the vendor KMS); QKD bits used = keys_stored delta minus the change of both lanes' levels
  at the master gateway, x the key size (what hops in either direction consumed);
- hop frames per directed link (sender -> neighbour) from the gateways' frame counters: frames sealed,
  keys in them and the QKD bits they spent, so QKD bits per relayed key on each link (256 / keys per
  frame on an ``hkdf`` link, 256 + 256 / keys per frame on an ``otp`` one, 0 on a pqc-only one).

Counters by gateway (``gateways``, key rates, hop frames by sender, CPU) are per process: a gateway with
replicas has one entry per replica (``GW2/1``, ``GW2/2``); the totals above add its replicas up.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from relay.loadtest.admin import Snapshot
from relay.loadtest.histogram import LatencyHistogram
from relay.loadtest.runner import LoadSpec, LoopMode, RequestRecord
from relay.loadtest.sae import SaePair
from relay.loadtest.scenarios import RelayMode, Scenario

RELAY_COUNTERS = (
    "keys_relayed",
    "relay_failures",
    "hops_sent",
    "hops_received",
    "qkd_fallbacks",
    "qkd_exhausted",
    "keys_voided",
)


@dataclass
class RunResult:
    group: str  # the testbed it ran on, e.g. "three-region/ondemand"
    scenario: Scenario
    spec: LoadSpec
    number: int  # keys per request
    pairs: list[SaePair]
    started_at_s: float  # on the campaign clock
    records: list[RequestRecord]
    before: Snapshot
    after: Snapshot
    pool_levels: dict[str, int] | None = None  # ready-pool level per pair when a pool run started
    cpu_cores: dict[str, float] = field(default_factory=dict)  # cores used per process during the run
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.scenario.name} c={self.spec.concurrency}"

    def pair_of(self, record: RequestRecord) -> SaePair:
        return self.pairs[record.worker % len(self.pairs)]

    def pool_served(self, record: RequestRecord) -> bool | None:
        if not record.outcome.enc_ok:
            return None
        return self.scenario.relay is RelayMode.POOL


def summarize(run: RunResult) -> dict[str, Any]:
    ok = [r for r in run.records if r.outcome.ok]
    answered = [r for r in run.records if r.outcome.enc_ok]
    statuses = Counter(r.outcome.status for r in run.records)
    elapsed = max((r.done_s for r in run.records), default=0.0)
    keys = sum(r.outcome.keys for r in ok)
    masters = sorted({pair.master_gateway for pair in run.pairs})
    deltas = {name: _relay_delta(run.before, run.after, name) for name in run.after.gateways}  # per replica
    totals = [_relay_delta(run.before, run.after, gw) for gw in masters]  # each over all its replicas
    on_demand = sum(total["keys_relayed"] - total["keys_prerelayed"] for total in totals)
    window = run.after.at_s - run.before.at_s
    summary: dict[str, Any] = {
        "run": run.label,
        "group": run.group,
        "scenario": run.scenario.name,
        "topology": run.scenario.topology,
        "relay": run.scenario.relay.value,
        "mode": run.spec.mode.value,
        "concurrency": run.spec.concurrency,
        "rate": run.spec.rate if run.spec.mode is LoopMode.OPEN else None,
        "arrival": run.spec.arrival.value if run.spec.mode is LoopMode.OPEN else None,
        "keys_per_request": run.number,
        "pairs": [f"{p.master}->{p.slave}" for p in sorted(set(run.pairs), key=run.pairs.index)],
        "hops": sorted({p.hops for p in run.pairs}),
        "requests": len(run.records),
        "ok": len(ok),
        "enc_keys_answered": len(answered),
        "errors": sum(n for status, n in statuses.items() if status != "ok"),
        "errors_503": statuses.get("http-503", 0),
        "mismatches": statuses.get("mismatch", 0),
        "statuses": dict(sorted(statuses.items())),
        "error_examples": {r.outcome.status: r.outcome.detail for r in reversed(run.records) if not r.outcome.ok},
        "elapsed_s": round(elapsed, 3),
        "throughput_rps": round(len(ok) / elapsed, 2) if elapsed else 0.0,
        "keys_per_s": round(keys / elapsed, 2) if elapsed else 0.0,
        "latency_ms": LatencyHistogram.of(r.latency_ms for r in answered).summary().to_json(),
        "latency_by_gateway_ms": {
            gw: LatencyHistogram.of(r.latency_ms for r in answered if run.pair_of(r).master_gateway == gw)
            .summary()
            .to_json()
            for gw in masters
        },
        "dec_keys_ms": LatencyHistogram.of(r.outcome.dec_ms for r in ok if r.outcome.dec_ms is not None)
        .summary()
        .to_json(),
        "pool": {
            "served_from_pool": keys if run.scenario.relay is RelayMode.POOL else 0,
            "relayed_on_demand": keys if run.scenario.relay is RelayMode.ON_DEMAND else 0,
            "on_demand_by_counters": on_demand,
            "ready_levels_at_start": run.pool_levels,
        },
        "gateways": {
            gw: {**delta, "keys_relayed_per_s": round(delta["keys_relayed"] / window, 1) if window else 0.0}
            for gw, delta in sorted(deltas.items())
        },
        "qkd": qkd_consumption(run.before, run.after),
        "frames": frame_use(run.before, run.after),
        "cpu_cores": run.cpu_cores,
        "notes": run.notes,
    }
    if run.spec.mode is LoopMode.OPEN:
        summary["service_ms"] = LatencyHistogram.of(r.service_ms for r in answered).summary().to_json()
    return summary


def qkd_consumption(before: Snapshot, after: Snapshot) -> dict[str, dict[str, Any]]:
    result = {}
    first = before.fillers()
    lasting = after.vendor_links()
    earlier = before.vendor_links()
    for link_id, (metrics, bits) in sorted(after.fillers().items()):
        was = first.get(link_id, ({}, bits))[0]
        fetched = metrics.get("keys_fetched", 0) - was.get("keys_fetched", 0)
        stored = metrics.get("keys_stored", 0) - was.get("keys_stored", 0)
        level_change = (after.lane_levels(link_id) or 0) - (before.lane_levels(link_id) or 0)
        vendor = lasting.get(link_id, {})
        result[link_id] = {
            "qkd_key_bits": bits,
            "bits_pulled": fetched * bits,
            "bits_used_by_hops": max(0, stored - level_change) * bits,
            "vendor_rate_bps": vendor.get("rate_bps"),
            "vendor_stored_bits_before": earlier.get(link_id, {}).get("stored_bits"),
            "vendor_stored_bits_after": vendor.get("stored_bits"),
        }
    return result


def frame_use(before: Snapshot, after: Snapshot) -> dict[str, dict[str, float]]:
    """Per directed link ``GWa->GWb`` that sealed frames during the run: frames, keys, QKD bits spent, keys
    per frame and QKD bits per relayed key."""
    result = {}
    for gateway, neighbours in sorted(after.frames.items()):
        for neighbour, counts in sorted(neighbours.items()):
            was = before.frames.get(gateway, {}).get(neighbour, {})
            frames, keys, bits = (counts.get(name, 0) - was.get(name, 0) for name in ("frames", "keys", "qkd_bits"))
            if frames:
                result[f"{gateway}->{neighbour}"] = {
                    "frames": frames,
                    "keys": keys,
                    "qkd_bits": bits,
                    "keys_per_frame": round(keys / frames, 2),
                    "qkd_bits_per_key": round(bits / keys, 2) if keys else 0.0,
                }
    return result


def _relay_delta(before: Snapshot, after: Snapshot, gateway: str) -> dict[str, int]:
    now, then = after.relay(gateway), before.relay(gateway)
    delta = {name: now.get(name, 0) - then.get(name, 0) for name in RELAY_COUNTERS}
    delta["keys_prerelayed"] = after.prerelayed(gateway) - before.prerelayed(gateway)
    return delta


def key_rates(samples: list[Snapshot]) -> dict[str, Any]:
    """Per-second series from consecutive samples: relayed keys per gateway, QKD bits pulled per link,
    vendor stored bits per link; plus mean and max of each rate."""
    series: dict[str, dict[str, list[tuple[float, float]]]] = {
        "keys_relayed_per_s": {},
        "hops_received_per_s": {},
        "qkd_bits_pulled_per_s": {},
        "vendor_stored_bits": {},
    }
    for earlier, later in zip(samples, samples[1:], strict=False):
        dt = later.at_s - earlier.at_s
        if dt <= 0:
            continue
        for gw in later.gateways:
            if "error" in later.gateways[gw] or "error" in earlier.gateways.get(gw, {"error": 1}):
                continue
            for name, counter in (("keys_relayed_per_s", "keys_relayed"), ("hops_received_per_s", "hops_received")):
                rate = (later.relay(gw).get(counter, 0) - earlier.relay(gw).get(counter, 0)) / dt
                series[name].setdefault(gw, []).append((later.at_s, rate))
        then = earlier.fillers()
        for link_id, (metrics, bits) in later.fillers().items():
            if link_id in then:
                pulled = metrics["keys_fetched"] - then[link_id][0]["keys_fetched"]
                series["qkd_bits_pulled_per_s"].setdefault(link_id, []).append((later.at_s, pulled * bits / dt))
    for sample in samples:
        for link_id, link in sample.vendor_links().items():
            series["vendor_stored_bits"].setdefault(link_id, []).append((sample.at_s, float(link["stored_bits"])))
    stats = {
        name: {
            node: {
                "mean": round(sum(v for _, v in points) / len(points), 1),
                "max": round(max(v for _, v in points), 1),
            }
            for node, points in nodes.items()
            if points
        }
        for name, nodes in series.items()
        if name != "vendor_stored_bits"
    }
    return {"series": series, "stats": stats}
