"""The vendor KMS simulator's Prometheus metrics: per QKD link stored bits, rate, QBER and the halt alarm."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from relay.kms_sim.kms import LinkReport, SimulatedKms
from relay.observability.exposition import RequestCounts, gauge


class KmsMetrics:
    def __init__(self, kms: SimulatedKms) -> None:
        self.kms = kms
        self.requests = RequestCounts()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))


class _Collector:
    def __init__(self, metrics: KmsMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        kms = self._metrics.kms
        kms_id = kms.config.kms_id
        reports = kms.links()
        labels = ["kms", "link", "sae_a", "sae_b"]

        def per_link(value: Callable[[LinkReport], float]) -> list[tuple[list[str], float]]:
            return [([kms_id, r.link.id, r.link.sae_a, r.link.sae_b], float(value(r))) for r in reports]

        yield gauge(
            "qkdr_kms_link_stored_bits",
            "Distilled secret key bits held for a QKD link",
            labels,
            per_link(lambda r: r.state.stored_bits),
        )
        yield gauge(
            "qkdr_kms_link_capacity_bits",
            "Bound of a QKD link's key store",
            labels,
            per_link(lambda r: r.state.capacity_bits),
        )
        yield gauge(
            "qkdr_kms_link_rate_bits_per_second",
            "Secret key rate of a QKD link",
            labels,
            per_link(lambda r: r.link.rate_bps),
        )
        yield gauge(
            "qkdr_kms_link_qber", "Quantum bit error rate of a QKD link", labels, per_link(lambda r: r.state.qber)
        )
        yield gauge(
            "qkdr_kms_link_halted",
            "1 when a QKD link is halted (QBER above threshold): alarm",
            labels,
            per_link(lambda r: 1.0 if r.state.halted else 0.0),
        )
        yield self._metrics.requests.family("qkdr_kms_requests", "ETSI 014 requests served by the simulator's KMEs")
