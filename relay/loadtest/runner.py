"""Drive N workers against one request function: open loop at a target rate, or closed loop back to back.

A worker is one simulated SAE; the request function is given the worker's index and does one measured
request with that worker's own clients. Open loop: requests are due on a schedule fixed in advance; a
free worker claims the next due request, waits until it is due, sends it, and its latency runs from the
due time, so when every worker is busy the wait for one counts (coordinated-omission free). Closed loop:
each worker sends its next request as soon as the previous one is answered; latency runs from the send.
Either stops at a duration or a request count, or when every worker's :class:`Budget` is spent.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

from relay.loadtest.schedule import Arrival, arrival_offsets


class LoopMode(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class Outcome:
    """What one request came to. ``status`` is ``ok`` or an error class, e.g. ``http-503``, ``mismatch``."""

    status: str
    keys: int = 0
    http_status: int | None = None
    dec_ms: float | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Both ends hold the same keys (or, without verification, enc_keys answered)."""
        return self.status == "ok"

    @property
    def enc_ok(self) -> bool:
        """``enc_keys`` answered with keys, whatever the slave's ``dec_keys`` then got."""
        return self.status == "ok" or self.status == "mismatch" or self.status.startswith("dec-")


@dataclass(frozen=True)
class RequestRecord:
    worker: int
    scheduled_s: float | None  # due time after the run start (open loop only)
    sent_s: float  # after the run start
    done_s: float
    outcome: Outcome

    @property
    def latency_ms(self) -> float:
        """From the due time in open loop, from the send in closed loop."""
        start = self.sent_s if self.scheduled_s is None else self.scheduled_s
        return (self.done_s - start) * 1000

    @property
    def service_ms(self) -> float:
        return (self.done_s - self.sent_s) * 1000


@dataclass(frozen=True)
class LoadSpec:
    mode: LoopMode
    concurrency: int
    duration_s: float | None = None
    requests: int | None = None
    rate: float | None = None  # requests per second, open loop
    arrival: Arrival = Arrival.POISSON
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if (self.duration_s is None) == (self.requests is None):
            raise ValueError("give either a duration or a request count")
        if self.duration_s is not None and self.duration_s <= 0 or self.requests is not None and self.requests < 1:
            raise ValueError("duration and request count must be positive")
        if self.mode is LoopMode.OPEN and (self.rate is None or self.rate <= 0):
            raise ValueError("open loop needs a positive rate")

    @property
    def planned_requests(self) -> int | None:
        if self.requests is not None:
            return self.requests
        if self.mode is LoopMode.OPEN:
            assert self.rate is not None and self.duration_s is not None
            return math.ceil(self.rate * self.duration_s)
        return None


class Budget:
    """How many requests may still be sent, overall and per worker group (e.g. per SAE pair whose ready
    pool holds a known number of keys). ``None`` means unlimited."""

    def __init__(self, total: int | None = None, per_group: Mapping[int, int] | None = None) -> None:
        self._total = total
        self._groups = dict(per_group) if per_group is not None else None

    def take(self, group: int) -> bool:
        if self._total is not None and self._total <= 0:
            return False
        if self._groups is not None:
            if self._groups.get(group, 0) <= 0:
                return False
            self._groups[group] -= 1
        if self._total is not None:
            self._total -= 1
        return True


RequestFn = Callable[[int], Awaitable[Outcome]]
RecordFn = Callable[[RequestRecord], None]


async def run_load(
    spec: LoadSpec,
    request: RequestFn,
    *,
    budget: Budget | None = None,
    group_of: Callable[[int], int] = lambda worker: 0,
    on_record: RecordFn = lambda record: None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, list[RequestRecord]]:
    """Run the load; returns the start time (``clock`` units) and every request's record, in completion order."""
    limit = Budget(spec.requests)
    budget = limit if budget is None else _Both(budget, limit)
    records: list[RequestRecord] = []

    def record(item: RequestRecord) -> None:
        records.append(item)
        on_record(item)

    start = clock()
    if spec.mode is LoopMode.OPEN:
        assert spec.rate is not None
        schedule = arrival_offsets(spec.rate, spec.arrival, seed=spec.seed)
        workers = [
            _open_worker(w, spec, request, budget, group_of(w), schedule, start, clock, record)
            for w in range(spec.concurrency)
        ]
    else:
        workers = [
            _closed_worker(w, spec, request, budget, group_of(w), start, clock, record) for w in range(spec.concurrency)
        ]
    await asyncio.gather(*workers)
    return start, records


class _Both(Budget):
    def __init__(self, first: Budget, second: Budget) -> None:
        super().__init__()
        self._first, self._second = first, second

    def take(self, group: int) -> bool:
        return self._first.take(group) and self._second.take(group)


async def _open_worker(
    worker: int,
    spec: LoadSpec,
    request: RequestFn,
    budget: Budget,
    group: int,
    schedule: Iterator[float],
    start: float,
    clock: Callable[[], float],
    record: RecordFn,
) -> None:
    while budget.take(group):
        offset = next(schedule)  # claimed by this worker: the next due request nobody has taken yet
        if spec.duration_s is not None and offset >= spec.duration_s:
            return
        delay = start + offset - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = clock()
        outcome = await request(worker)
        record(RequestRecord(worker, offset, sent - start, clock() - start, outcome))


async def _closed_worker(
    worker: int,
    spec: LoadSpec,
    request: RequestFn,
    budget: Budget,
    group: int,
    start: float,
    clock: Callable[[], float],
    record: RecordFn,
) -> None:
    while spec.duration_s is None or clock() - start < spec.duration_s:
        if not budget.take(group):
            return
        sent = clock()
        outcome = await request(worker)
        record(RequestRecord(worker, None, sent - start, clock() - start, outcome))
