"""Group commit for hop frames: what queues while frames are in flight leaves together in the next one.

Keys bound for one neighbour are submitted one by one; a batch leaves as soon as fewer than
``in_flight`` batches are on their way, with everything queued by then (up to ``max_batch`` items and
``max_size`` in ``size_of`` units, e.g. bytes on the wire; one item alone always makes a batch). There is
no linger: at low load a key leaves on the next turn of the event loop, alone or with the keys submitted
in the same turn (the keys of one request), and under load frames fill up by themselves while earlier
ones are being answered. Each submitter gets its own item's result or exception.

Invariant: every submitted item is dispatched exactly once, and every submitter's future is settled
(by the dispatcher's result, by its exception for the whole batch, or by cancellation on close).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Dispatch = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]
"""Sends one batch; returns one result or exception per item, in order (or raises for the whole batch)."""


class Coalescer(Generic[T, R]):
    """One queue and its in-flight window (per neighbour, in :mod:`relay.gateway.forwarding`)."""

    def __init__(
        self,
        dispatch: Dispatch[T, R],
        *,
        max_batch: int,
        in_flight: int,
        size_of: Callable[[T], int] = lambda item: 1,
        max_size: int | None = None,
    ) -> None:
        if max_batch < 1 or in_flight < 1:
            raise ValueError("max_batch and in_flight must be at least 1")
        self._dispatch = dispatch
        self._max_batch = max_batch
        self._in_flight = in_flight
        self._size_of = size_of
        self._max_size = max_size
        self._queue: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._running: set[asyncio.Task[None]] = set()
        self._scheduled = False

    async def submit(self, item: T) -> R:
        """Queue ``item`` for the next batch and wait for its own result."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if not self._scheduled:  # leave on the next loop turn, with whatever else is submitted in this one
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start_batches)
        return await future

    async def close(self) -> None:
        """Cancel the batches in flight and everything still queued."""
        for _, future in self._queue:
            future.cancel()
        self._queue.clear()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    def _start_batches(self) -> None:
        self._scheduled = False
        while self._queue and len(self._running) < self._in_flight:
            batch = self._next_batch()
            if not batch:
                continue
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _next_batch(self) -> list[tuple[T, asyncio.Future[R]]]:
        """Queued items in order, as many as the limits allow; those whose submitter gave up are dropped."""
        batch: list[tuple[T, asyncio.Future[R]]] = []
        size = 0
        while self._queue and len(batch) < self._max_batch:
            item, future = self._queue[0]
            if future.done():
                self._queue.popleft()
                continue
            item_size = self._size_of(item)
            if batch and self._max_size is not None and size + item_size > self._max_size:
                break
            self._queue.popleft()
            batch.append((item, future))
            size += item_size
        return batch

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start_batches()

    async def _send(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        futures = [future for _, future in batch]
        try:
            results: Sequence[R | BaseException] = await self._dispatch([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} got {len(results)} results")
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        except Exception as exc:
            results = [exc] * len(batch)
        for future, result in zip(futures, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
