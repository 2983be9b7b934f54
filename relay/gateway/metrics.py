"""The gateway's Prometheus metrics: pool levels and alarms, QKD bits consumed, relay counters and latencies.

Counters are read at scrape time from the plain metric dataclasses the gateway already keeps
(:class:`RelayMetrics`, :class:`QkdPoolMetrics`, :class:`FillerMetrics`, :class:`RelayedStoreMetrics`,
:class:`PrerelayMetrics`, :class:`BackendMetrics`) through the :class:`GatewayView` the admin status
document reads too; pool levels are read from Redis by :meth:`refresh` just before rendering; latencies
go into histograms the relay feeds through :class:`RelayObserver`.
All names start with ``qkdr_``; the README lists them.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

from cryptography import x509
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import Metric

from relay.gateway.ack_delivery import AckDeliveryMetrics
from relay.gateway.relay_events import RelayObserver, RelayOrigin
from relay.gateway.status_view import GatewayView
from relay.observability.exposition import RequestCounts, counted, counter, gauge
from relay.pool import PoolState, PoolStatus, PoolUnavailable
from relay.pool.durability import RedisDurability
from relay.pool.leases import LeaseMetrics

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class _Snapshot:
    redis_up: bool = False
    lanes: list[tuple[str, str, str, str, PoolStatus]] = field(default_factory=list)  # link, nb, sender, dir
    ready: list[tuple[str, str, PoolStatus]] = field(default_factory=list)  # master, slave


class GatewayMetrics(RelayObserver):
    """One gateway's registry and the relay's observer: create it before the relay, then :meth:`attach` its view."""

    def __init__(self, gateway_id: str) -> None:
        super().__init__()
        self.gateway_id = gateway_id
        self.registry = CollectorRegistry(auto_describe=False)
        self.hop_latency = Histogram(
            "qkdr_relay_hop_latency_seconds",
            "Time from sending a hop frame to its confirmation (which implies every "
            "key in it is stored at its last gateway or failed), by neighbour and hop index",
            ["neighbour", "hop"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS_S,
        )
        self.relay_latency = Histogram(
            "qkdr_relay_latency_seconds",
            "End-to-end relay of one key originated here, by target gateway",
            ["target_gateway"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS_S,
        )
        self.requests = RequestCounts()
        self.ack_delivery = AckDeliveryMetrics()  # 020 acks to foreign KMSs' callbacks
        self.leases = LeaseMetrics()  # the leases of work done by one replica at a time
        self.foreign_handovers: Counter[tuple[str, str]] = Counter()  # by foreign domain and outcome
        self.relay_failures: Counter[tuple[str, RelayOrigin]] = Counter()  # by reason and origin
        self.hop_failures: Counter[str] = Counter()
        self.frames: Counter[str] = Counter()  # frames sealed, by neighbour
        self.frame_keys: Counter[str] = Counter()  # keys in them
        self.frame_qkd_bits: Counter[str] = Counter()  # QKD key they spent (combiner and pads)
        self.redis_durability: RedisDurability | None = None  # read once at start-up
        self.certificates: Sequence[x509.Certificate] = ()  # loaded at start-up: its own and the CA
        self._started = time.monotonic()
        self._snapshot = _Snapshot()
        self._sources: GatewayView | None = None
        self.registry.register(_Collector(self))

    # ----- RelayObserver ---------------------------------------------------------------------------

    def hop_confirmed(self, neighbour: str, hop: int, seconds: float) -> None:
        self.hop_latency.labels(neighbour, str(hop)).observe(seconds)

    def relay_done(self, target_gateway: str, seconds: float) -> None:
        self.relay_latency.labels(target_gateway).observe(seconds)

    def relay_failed(self, reason: str, origin: RelayOrigin) -> None:
        self.relay_failures[reason, origin] += 1

    def hop_refused(self, reason: str) -> None:
        self.hop_failures[reason] += 1

    def frame_sealed(self, neighbour: str, keys: int, qkd_bits: int) -> None:
        super().frame_sealed(neighbour, keys, qkd_bits)
        self.frames[neighbour] += 1
        self.frame_keys[neighbour] += keys
        self.frame_qkd_bits[neighbour] += qkd_bits

    # ----- scraping ------------------------------------------------------------------------------

    def attach(self, sources: GatewayView) -> None:
        self._sources = sources

    @property
    def sources(self) -> GatewayView | None:
        return self._sources

    async def refresh(self) -> None:
        """Read pool levels from Redis; when it cannot answer, levels are left out and ``qkdr_redis_up`` is 0."""
        sources = self.sources
        if sources is None:
            return
        try:
            levels = await sources.read_levels()
        except PoolUnavailable:
            self._snapshot = _Snapshot(redis_up=False)
            return
        lanes = [
            (qkd.link_id, link.neighbour.id, str(pool.sender), _direction(pool.sender is qkd.role), status)
            for link in levels.links
            if (qkd := link.neighbour.qkd) is not None
            for pool, status in link.lanes
        ]
        self._snapshot = _Snapshot(redis_up=True, lanes=lanes, ready=levels.ready)


def _certificate_expiry(certificates: Sequence[x509.Certificate]) -> Metric:
    """Seconds until each loaded certificate expires (negative once expired), by wall clock at scrape time."""
    now = dt.datetime.now(dt.timezone.utc)
    return gauge(
        "qkdr_certificate_expiry_seconds",
        "Seconds until a certificate the gateway loaded expires (its own and the CA's), by subject",
        ["subject"],
        [([c.subject.rfc4514_string()], (c.not_valid_after_utc - now).total_seconds()) for c in certificates],
    )


def _direction(outbound: bool) -> str:
    return "outbound" if outbound else "inbound"


def _alarm(status: PoolStatus) -> float:
    return 0.0 if status.state is PoolState.OK else 1.0


class _Collector:
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        snap = m._snapshot
        yield gauge("qkdr_up", "1 while the gateway serves", ["gateway"], [([m.gateway_id], 1)])
        yield gauge(
            "qkdr_uptime_seconds", "Seconds since the gateway started", [], [([], time.monotonic() - m._started)]
        )
        yield gauge(
            "qkdr_redis_up",
            "1 when the pools' Redis answered during this scrape",
            [],
            [([], 1.0 if snap.redis_up else 0.0)],
        )
        if (durability := m.redis_durability) is not None:
            yield gauge(
                "qkdr_redis_durable",
                "1 when Redis fsyncs every write before answering (appendonly yes, appendfsync always)",
                ["appendonly", "appendfsync"],
                [([durability.appendonly, durability.appendfsync], 1.0 if durability.durable else 0.0)],
            )
        yield _certificate_expiry(m.certificates)
        yield from self._pools(snap, prerelay=m.sources is not None and m.sources.prerelay is not None)
        yield m.requests.family("qkdr_northbound_requests", "HTTP requests served by the ETSI 014 and 020 APIs")
        yield from self._acks(m.ack_delivery)
        yield from self._leases(m.leases)
        yield counter(
            "qkdr_foreign_handovers",
            "Keys handed to a foreign KMS over 020 at this border, by outcome (relayed: acked in time, the "
            "master got it; refused, acked_not_relayed, no_ack_in_time: voided there, the master got 503; "
            "void_sent / void_unsent: ext_keys/void calls)",
            ["domain", "outcome"],
            [([domain, outcome], n) for (domain, outcome), n in sorted(m.foreign_handovers.items())],
        )
        sources = m.sources
        if sources is None:
            return
        yield from self._relay(sources)
        yield from self._qkd_usage(sources)
        yield from self._errors(sources)

    def _acks(self, acks: AckDeliveryMetrics) -> Iterator[Metric]:
        for name, help_text in (
            ("attempts", "020 ack POSTs to a foreign KMS's callback, retries included"),
            ("delivered", "020 ack requests the foreign KMS answered 200"),
            ("undeliverable", "020 ack requests given up after the retry time (their relayed keys voided)"),
            ("keys_voided", "Relayed keys voided because their 020 ack could not be delivered"),
        ):
            yield counter(f"qkdr_etsi020_ack_{name}", help_text, [], [([], getattr(acks, name))])

    def _leases(self, leases: LeaseMetrics) -> Iterator[Metric]:
        yield gauge(
            "qkdr_leases_held",
            "1 while this replica holds the lease of a piece of work done once per gateway (a QKD link's "
            "filler, a pre-relay SAE pair, the 020 ack retries), 0 once it no longer does",
            ["lease"],
            [([label], 1.0 if held else 0.0) for label, held in sorted(leases.held.items())],
        )
        yield counter(
            "qkdr_lease_changes",
            "Leases this replica took, and held ones it lost (renewal refused, or Redis unavailable too long)",
            ["change"],
            [(["taken"], leases.taken), (["lost"], leases.lost)],
        )

    def _pools(self, snap: _Snapshot, *, prerelay: bool) -> Iterator[Metric]:
        labels = ["link", "neighbour", "sender", "direction"]
        lanes: Sequence[tuple[str, str, str, str, PoolStatus]] = snap.lanes
        yield gauge(
            "qkdr_qkd_pool_keys",
            "QKD keys held in a link's lane (sender: which end seals with it; "
            "direction: outbound if this gateway seals with it)",
            labels,
            [(lane[:4], lane[4].level) for lane in lanes],
        )
        yield gauge(
            "qkdr_qkd_pool_low_watermark_keys",
            "Alarm level of a QKD lane",
            labels,
            [(lane[:4], lane[4].low) for lane in lanes],
        )
        yield gauge(
            "qkdr_qkd_pool_high_watermark_keys",
            "Fill level of a QKD lane",
            labels,
            [(lane[:4], lane[4].high) for lane in lanes],
        )
        yield gauge(
            "qkdr_qkd_pool_alarm",
            "1 when a QKD lane is below its low watermark or empty",
            labels,
            [(lane[:4], _alarm(lane[4])) for lane in lanes],
        )
        yield gauge(
            "qkdr_qkd_pool_empty",
            "1 when a QKD lane holds no key (require-qkd hops get 503)",
            labels,
            [(lane[:4], 1.0 if lane[4].state is PoolState.EMPTY else 0.0) for lane in lanes],
        )
        pair = ["master_sae", "slave_sae"]
        yield gauge(
            "qkdr_ready_pool_keys",
            "Pre-relayed keys ready for an SAE pair",
            pair,
            [((m, s), st.level) for m, s, st in snap.ready],
        )
        yield gauge(
            "qkdr_ready_pool_low_watermark_keys",
            "Alarm level of an SAE pair's ready pool",
            pair,
            [((m, s), st.low) for m, s, st in snap.ready],
        )
        yield gauge(
            "qkdr_ready_pool_high_watermark_keys",
            "Pre-relay target of an SAE pair's ready pool",
            pair,
            [((m, s), st.high) for m, s, st in snap.ready],
        )
        yield gauge(
            "qkdr_ready_pool_alarm",
            "1 when an SAE pair's ready pool is below its low watermark (always 0 "
            "when pre-relay is off: nothing fills it)",
            pair,
            [((m, s), _alarm(st) if prerelay else 0.0) for m, s, st in snap.ready],
        )

    def _relay(self, sources: GatewayView) -> Iterator[Metric]:
        m = self._metrics
        relay = sources.relay
        for name, help_text in (
            ("hops_sent", "Keys sent to a neighbour, in frames"),
            ("hops_received", "Keys received from a neighbour in frames and opened"),
            ("frames_received", "Frames received and opened"),
            ("hop_retries", "Frames re-sent (the same bytes) after a transport failure"),
            ("qkd_fallbacks", "Keys on qkd+pqc links sealed pqc-only because the QKD lane was short"),
            ("keys_voided", "Keys voided at this gateway after a failed relay"),
        ):
            yield counter(f"qkdr_relay_{name}", help_text, [], [([], getattr(relay, name))])
        for name, help_text in (
            (
                "keys_relayed",
                "Keys relayed end to end, originated here, by origin (sae: an SAE asked; prerelay: "
                "background fill of a ready pool)",
            ),
            (
                "qkd_exhausted",
                "require-qkd (or no-degrade) hops refused here for want of QKD key, by origin "
                "(prerelay: background work that retries later)",
            ),
            (
                "not_started",
                "Transfers originated here and refused before spending QKD key: every allowed route "
                "crosses a QKD lane the gateways along it reported dry, by origin",
            ),
        ):
            samples = [([str(origin)], getattr(relay.of(origin), name)) for origin in RelayOrigin]
            yield counter(f"qkdr_relay_{name}", help_text, ["origin"], samples)
        yield counter(
            "qkdr_relay_failures",
            "Relays originated here that failed, by exception type and origin (sae: the SAE got 503; prerelay: "
            "background work that retries later)",
            ["reason", "origin"],
            [([reason, str(origin)], n) for (reason, origin), n in sorted(m.relay_failures.items())],
        )
        yield counter(
            "qkdr_relay_hop_failures",
            "Keys (or whole frames) received here that failed, by exception type",
            ["reason"],
            counted(m.hop_failures),
        )
        for name, help_text, counts in (
            ("frames", "Hop frames sealed for a neighbour", m.frames),
            ("frame_keys", "Keys in the hop frames sealed for a neighbour", m.frame_keys),
            (
                "frame_qkd_bits",
                "QKD key bits the hop frames for a neighbour spent (one 256-bit key per qkd+pqc frame, plus "
                "each key's one-time pad on otp links); divided by frame_keys: QKD bits per relayed key",
                m.frame_qkd_bits,
            ),
        ):
            yield counter(f"qkdr_relay_{name}", help_text, ["neighbour"], counted(counts))
        yield gauge(
            "qkdr_neighbour_reachable",
            "0 while a neighbour is marked down: from a failed liveness probe until a probe succeeds",
            ["neighbour"],
            [([nb], 1.0 if sources.reachable(nb) else 0.0) for nb in sources.plan.neighbours],
        )
        probes = sources.health.liveness.counts
        yield counter(
            "qkdr_neighbour_probes",
            "Liveness probes of a neighbour (its health check, answered by its application), by outcome",
            ["neighbour", "outcome"],
            [([nb, outcome], getattr(c, outcome)) for nb, c in probes.items() for outcome in ("answered", "failed")],
        )
        yield counter(
            "qkdr_neighbour_marked_down",
            "Times a neighbour was marked down by a failed probe (hops waiting on it were abandoned)",
            ["neighbour"],
            [([nb], c.marked_down) for nb, c in probes.items()],
        )
        store = asdict(sources.store.metrics)
        yield counter(
            "qkdr_relayed_store_events",
            "Relayed-key store operations (ready_taken, delivered, voided, ...)",
            ["event"],
            counted(store),
        )
        if sources.prerelay is not None:
            pre = sources.prerelay.metrics
            yield counter("qkdr_prerelay_rounds", "Pre-relay rounds", [], [([], pre.rounds)])
            yield counter("qkdr_prerelay_keys", "Keys pre-relayed into ready pools", [], [([], pre.keys_prerelayed)])
            yield counter(
                "qkdr_prerelay_failures",
                "Pre-relay rounds of an SAE pair that failed (background work: it waits, then retries)",
                [],
                [([], pre.failures)],
            )
            yield gauge(
                "qkdr_prerelay_backoff_seconds",
                "Seconds until pre-relay tries a destination gateway again after failures (absent when not waiting)",
                ["destination"],
                [([w.destination], w.retry_in_s) for w in sources.prerelay.waiting()],
            )

    def _qkd_usage(self, sources: GatewayView) -> Iterator[Metric]:
        bits = sources.qkd_key_bits
        plan = sources.plan
        taken, empty = [], []
        for neighbour in plan.neighbours.values():
            if neighbour.qkd is None:
                continue
            for pool in sources.lanes.of(neighbour.id):
                labels = [neighbour.qkd.link_id, neighbour.id, str(pool.sender)]
                taken.append((labels, pool.metrics.taken))
                empty.append((labels, pool.metrics.empty))
        labels = ["link", "neighbour", "sender"]
        yield counter("qkdr_qkd_keys_consumed", "QKD keys taken from a lane to seal or open a hop", labels, taken)
        yield counter(
            "qkdr_qkd_bits_consumed",
            "QKD key bits taken from a lane to seal or open a hop",
            labels,
            [(lab, value * bits) for lab, value in taken],
        )
        yield counter("qkdr_qkd_pool_exhausted", "Times a hop found its QKD lane empty", labels, empty)
        yield counter(
            "qkdr_qkd_bits_fetched",
            "QKD key bits fetched from the vendor KMS (master end of a link)",
            ["link"],
            [([f.link_id], f.metrics.keys_fetched * bits) for f in sources.fillers],
        )
        yield gauge(
            "qkdr_qkd_vendor_stock_at_start_bits",
            "QKD key bits the vendor KME already held when the filler first asked (distilled before it pulled)",
            ["link"],
            [
                ([f.link_id], f.metrics.vendor_stock_at_start * bits)
                for f in sources.fillers
                if f.metrics.vendor_stock_at_start is not None
            ],
        )
        yield counter(
            "qkdr_qkd_keys_stored",
            "Vendor keys stored in this gateway's lanes by the filler",
            ["link"],
            [([f.link_id], f.metrics.keys_stored) for f in sources.fillers],
        )
        yield counter(
            "qkdr_qkd_keys_lost",
            "Vendor keys fetched but not accepted by the peer",
            ["link"],
            [([f.link_id], f.metrics.keys_lost) for f in sources.fillers],
        )

    def _errors(self, sources: GatewayView) -> Iterator[Metric]:
        m = self._metrics
        samples: list[tuple[list[str], float]] = []
        relay_failures: Counter[str] = Counter()
        for (reason, _origin), n in m.relay_failures.items():
            relay_failures[reason] += n
        samples += [(["relay", reason], n) for reason, n in sorted(relay_failures.items())]
        samples += [(["hop", reason], n) for reason, n in sorted(m.hop_failures.items())]
        for filler in sources.fillers:
            for kind in ("kms_errors", "announce_errors", "pool_unavailable"):
                samples.append(([f"qkd_filler:{filler.link_id}", kind], getattr(filler.metrics, kind)))
        samples.append((["redis", "unavailable"], sources.backend.metrics.unavailable))
        samples.append((["redis", "unconfirmed"], sources.backend.metrics.unconfirmed))
        statuses: Counter[str] = Counter()
        for (api, _endpoint, _method, status), n in m.requests.counts.items():
            if status >= "400":
                statuses[f"{api}:{status}"] += n
        samples += [(["northbound", status], n) for status, n in sorted(statuses.items())]
        yield counter("qkdr_errors", "Errors by component and type", ["component", "type"], samples)
        yield counter(
            "qkdr_redis_unavailable",
            "Redis commands that failed for want of a working Redis",
            [],
            [([], sources.backend.metrics.unavailable)],
        )
