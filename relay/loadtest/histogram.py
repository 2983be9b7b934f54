"""Latency percentiles with HdrHistogram: microsecond resolution, three significant digits, up to 10 min.

HdrHistogram reports a percentile as the highest value equivalent to the recorded one at its precision,
so p50 of 1..100 ms is 50.015 ms rather than 50 ms: exact to three significant digits, as the format
promises, and mergeable across runs without keeping every sample.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 600_000_000  # 10 minutes
SIGNIFICANT_DIGITS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


@dataclass(frozen=True)
class LatencySummary:
    count: int
    min_ms: float
    mean_ms: float
    max_ms: float
    percentiles_ms: dict[str, float]  # "p50", "p90", "p99", "p99.9"

    def to_json(self) -> dict[str, object]:
        return {
            "count": self.count,
            "min_ms": self.min_ms,
            "mean_ms": self.mean_ms,
            "max_ms": self.max_ms,
            **self.percentiles_ms,
        }


def percentile_label(percentile: float) -> str:
    return f"p{percentile:g}"


class LatencyHistogram:
    def __init__(self) -> None:
        self._histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)

    @classmethod
    def of(cls, latencies_ms: Iterable[float]) -> LatencyHistogram:
        histogram = cls()
        for latency in latencies_ms:
            histogram.record_ms(latency)
        return histogram

    def record_ms(self, latency_ms: float) -> None:
        micros = min(HIGHEST_US, max(LOWEST_US, round(latency_ms * 1000)))
        self._histogram.record_value(micros)

    @property
    def count(self) -> int:
        return int(self._histogram.get_total_count())

    def percentile_ms(self, percentile: float) -> float:
        return int(self._histogram.get_value_at_percentile(percentile)) / 1000

    def summary(self, percentiles: Iterable[float] = PERCENTILES) -> LatencySummary:
        if self.count == 0:
            return LatencySummary(0, 0.0, 0.0, 0.0, {percentile_label(p): 0.0 for p in percentiles})
        return LatencySummary(
            count=self.count,
            min_ms=self._histogram.get_min_value() / 1000,
            mean_ms=round(self._histogram.get_mean_value() / 1000, 3),
            max_ms=self._histogram.get_max_value() / 1000,
            percentiles_ms={percentile_label(p): self.percentile_ms(p) for p in percentiles},
        )

    def distribution(self, ticks_per_half_distance: int = 5) -> list[tuple[float, float]]:
        """(percentile, latency ms) points for a percentile plot, as HdrHistogram's own reports draw them."""
        if self.count == 0:
            return []
        return [
            (item.percentile_level_iterated_to, item.value_iterated_to / 1000)
            for item in self._histogram.get_percentile_iterator(ticks_per_half_distance)
        ]
