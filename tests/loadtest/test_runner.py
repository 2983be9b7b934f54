"""Open- and closed-loop scheduling, with a deliberately slow request and the recorded times."""

from __future__ import annotations

import asyncio
import itertools
import statistics

import pytest

from relay.loadtest.runner import Budget, LoadSpec, LoopMode, Outcome, run_load
from relay.loadtest.schedule import Arrival, arrival_offsets

SLOW_S = 0.1


async def slow_request(worker: int) -> Outcome:
    await asyncio.sleep(SLOW_S)
    return Outcome("ok", keys=1)


async def test_open_loop_charges_the_wait_for_a_busy_worker_to_the_request() -> None:
    """One worker, requests due every 50 ms, each taking 100 ms: the k-th is sent 50 k ms late, and its
    latency counts from when it was due, so it grows by 50 ms per request (no coordinated omission)."""
    spec = LoadSpec(LoopMode.OPEN, concurrency=1, requests=8, rate=20.0, arrival=Arrival.UNIFORM)
    _, records = await run_load(spec, slow_request)
    assert [r.scheduled_s for r in records] == [k / 20 for k in range(8)]
    for k, record in enumerate(records):
        assert record.sent_s - record.scheduled_s == pytest.approx(0.05 * k, abs=0.03)
        assert record.latency_ms == pytest.approx((record.done_s - record.scheduled_s) * 1000)
        assert record.service_ms == pytest.approx(SLOW_S * 1000, abs=30)
        assert record.latency_ms == pytest.approx(100 + 50 * k, abs=30)
    assert records[-1].latency_ms > 2.5 * records[-1].service_ms


async def test_open_loop_with_enough_workers_sends_on_time() -> None:
    spec = LoadSpec(LoopMode.OPEN, concurrency=4, requests=8, rate=20.0, arrival=Arrival.UNIFORM)
    _, records = await run_load(spec, slow_request)
    assert sorted(r.scheduled_s for r in records) == [k / 20 for k in range(8)]
    assert all(r.sent_s - r.scheduled_s < 0.03 for r in records)
    assert all(r.latency_ms == pytest.approx(SLOW_S * 1000, abs=30) for r in records)


async def test_open_loop_duration_stops_scheduling_at_the_end() -> None:
    spec = LoadSpec(LoopMode.OPEN, concurrency=2, duration_s=0.5, rate=20.0, arrival=Arrival.UNIFORM)
    _, records = await run_load(spec, slow_request)
    assert len(records) == 10 and max(r.scheduled_s for r in records) < 0.5


async def test_closed_loop_sends_back_to_back_and_measures_from_the_send() -> None:
    spec = LoadSpec(LoopMode.CLOSED, concurrency=3, requests=9)
    _, records = await run_load(spec, slow_request)
    assert len(records) == 9 and all(r.scheduled_s is None for r in records)
    assert all(r.latency_ms == r.service_ms for r in records)
    per_worker = {w: sorted(r.sent_s for r in records if r.worker == w) for w in range(3)}
    for sends in per_worker.values():
        assert len(sends) == 3
        assert all(b - a == pytest.approx(SLOW_S, abs=0.03) for a, b in itertools.pairwise(sends))


async def test_budget_per_group_stops_each_groups_workers() -> None:
    spec = LoadSpec(LoopMode.CLOSED, concurrency=4, duration_s=5.0)
    budget = Budget(per_group={0: 3, 1: 1})

    async def fast(worker: int) -> Outcome:
        await asyncio.sleep(0)
        return Outcome("ok")

    _, records = await run_load(spec, fast, budget=budget, group_of=lambda w: w % 2)
    assert sorted(r.worker % 2 for r in records) == [0, 0, 0, 1]


def test_poisson_arrivals_have_the_target_rate() -> None:
    offsets = list(itertools.islice(arrival_offsets(50.0, Arrival.POISSON, seed=3), 5001))
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert offsets[0] == 0.0 and min(gaps) > 0
    assert statistics.fmean(gaps) == pytest.approx(1 / 50, rel=0.05)
    assert statistics.stdev(gaps) == pytest.approx(1 / 50, rel=0.1)  # exponential: sd = mean
    assert list(itertools.islice(arrival_offsets(50.0, Arrival.POISSON, seed=3), 5)) == offsets[:5]


def test_spec_refuses_what_cannot_run() -> None:
    with pytest.raises(ValueError):
        LoadSpec(LoopMode.OPEN, concurrency=1, requests=1)  # no rate
    with pytest.raises(ValueError):
        LoadSpec(LoopMode.CLOSED, concurrency=1, requests=1, duration_s=1.0)
    with pytest.raises(ValueError):
        LoadSpec(LoopMode.CLOSED, concurrency=0, requests=1)
