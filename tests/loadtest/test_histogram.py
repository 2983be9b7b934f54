"""Percentiles from HdrHistogram against samples whose percentiles are known exactly."""

from __future__ import annotations

import math
import random

import pytest

from relay.loadtest.histogram import LatencyHistogram


def nearest_rank(samples: list[float], percentile: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(percentile / 100 * len(ordered)) - 1)]


def test_uniform_milliseconds_give_the_textbook_percentiles() -> None:
    summary = LatencyHistogram.of(float(ms) for ms in range(1, 1001)).summary()
    assert summary.count == 1000
    assert summary.min_ms == 1.0
    # three significant digits: each value is reported as the top of its 0.1 % wide bucket
    for label, exact in (("p50", 500), ("p90", 900), ("p99", 990), ("p99.9", 999)):
        assert exact <= summary.percentiles_ms[label] <= exact * 1.001, label
    assert 1000 <= summary.max_ms <= 1001
    assert summary.mean_ms == pytest.approx(500.5, rel=1e-3)


def test_skewed_samples_match_nearest_rank_within_the_histogram_precision() -> None:
    rng = random.Random(7)
    samples = [rng.lognormvariate(2.0, 1.0) for _ in range(20_000)]  # a long tail, like latencies
    histogram = LatencyHistogram.of(samples)
    for percentile in (50.0, 90.0, 99.0, 99.9):
        exact = nearest_rank(samples, percentile)
        assert histogram.percentile_ms(percentile) == pytest.approx(exact, rel=2e-3, abs=0.002), percentile


def test_a_single_outlier_is_the_p99_9_of_a_thousand() -> None:
    samples = [5.0] * 999 + [700.0]
    summary = LatencyHistogram.of(samples).summary()
    assert summary.percentiles_ms["p50"] == pytest.approx(5.0, rel=1e-3)
    assert summary.percentiles_ms["p99"] == pytest.approx(5.0, rel=1e-3)
    assert summary.percentiles_ms["p99.9"] == pytest.approx(5.0, rel=1e-3)  # rank 999 of 1000
    assert summary.max_ms == pytest.approx(700.0, rel=1e-3)
    assert LatencyHistogram.of(samples + [700.0]).percentile_ms(99.9) == pytest.approx(700.0, rel=1e-3)


def test_sub_microsecond_and_empty() -> None:
    assert LatencyHistogram.of([0.0001]).summary().min_ms == 0.001  # clamped to the 1 µs resolution
    empty = LatencyHistogram().summary()
    assert empty.count == 0 and empty.percentiles_ms == {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p99.9": 0.0}
    assert LatencyHistogram().distribution() == []
