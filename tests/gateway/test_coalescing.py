"""The group commit of hop frames (:class:`Coalescer`) in plain asyncio: what is submitted in one loop turn
leaves in one batch, no more than ``in_flight`` batches are on their way, a batch holds at most
``max_batch`` items, and every submitter gets its own item's result or exception, exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from relay.gateway.coalescing import Coalescer


class Dispatcher:
    """Records each batch, holds it until ``gate`` is open, then answers ``answer(item)`` per item."""

    def __init__(self, answer: Callable[[int], int | BaseException] = lambda item: item * 10) -> None:
        self.answer = answer
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.running = 0
        self.most_running = 0

    async def __call__(self, batch: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(batch))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.gate.wait()
        finally:
            self.running -= 1
        return [self.answer(item) for item in batch]


async def settle() -> None:
    """Let every ready callback and task run (batches start on the loop turn after a submit)."""
    for _ in range(10):
        await asyncio.sleep(0)


def submit(coalescer: Coalescer[int, int], *items: int) -> list[asyncio.Task[int]]:
    """Submit ``items`` from tasks of their own, all in this loop turn (as the keys of one request are)."""
    return [asyncio.create_task(coalescer.submit(item)) for item in items]


async def test_items_submitted_in_one_loop_turn_leave_in_one_batch() -> None:
    dispatch = Dispatcher()
    coalescer = Coalescer(dispatch, max_batch=100, in_flight=4)
    assert await asyncio.gather(*submit(coalescer, 1, 2, 3, 4, 5)) == [10, 20, 30, 40, 50]
    assert dispatch.batches == [[1, 2, 3, 4, 5]]
    assert await coalescer.submit(6) == 60  # at low load a lone item leaves at once, alone
    assert dispatch.batches[-1] == [6]


async def test_no_more_than_in_flight_batches_are_on_their_way_and_the_rest_coalesce() -> None:
    dispatch = Dispatcher()
    dispatch.gate.clear()
    coalescer = Coalescer(dispatch, max_batch=100, in_flight=2)
    first = submit(coalescer, 1)
    await settle()
    second = submit(coalescer, 2)
    await settle()
    queued = submit(coalescer, 3) + submit(coalescer, 4)
    await settle()
    queued += submit(coalescer, 5)
    await settle()
    assert dispatch.batches == [[1], [2]] and dispatch.running == 2  # 3, 4 and 5 wait for a free slot
    dispatch.gate.set()
    assert await asyncio.gather(*first, *second, *queued) == [10, 20, 30, 40, 50]
    assert dispatch.batches == [[1], [2], [3, 4, 5]]  # everything queued meanwhile shares the next batch
    assert dispatch.most_running == 2


async def test_a_batch_holds_at_most_max_batch_items() -> None:
    dispatch = Dispatcher()
    dispatch.gate.clear()
    coalescer = Coalescer(dispatch, max_batch=3, in_flight=10)
    submitted = submit(coalescer, *range(7))
    await settle()
    assert dispatch.running == 3  # the window lets all three batches go at once
    dispatch.gate.set()
    assert await asyncio.gather(*submitted) == [item * 10 for item in range(7)]
    assert dispatch.batches == [[0, 1, 2], [3, 4, 5], [6]]


async def test_max_batch_and_the_window_together_send_every_item_exactly_once() -> None:
    dispatch = Dispatcher()
    coalescer = Coalescer(dispatch, max_batch=4, in_flight=1)
    results = await asyncio.gather(*submit(coalescer, *range(10)))
    assert results == [item * 10 for item in range(10)]
    assert dispatch.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


async def test_each_submitter_gets_its_own_items_exception() -> None:
    refusal = ValueError("item 2 refused")
    dispatch = Dispatcher(lambda item: refusal if item == 2 else item * 10)
    coalescer = Coalescer(dispatch, max_batch=10, in_flight=1)
    results = await asyncio.gather(*submit(coalescer, 1, 2, 3), return_exceptions=True)
    assert results == [10, refusal, 30] and len(dispatch.batches) == 1


async def test_a_failure_of_the_whole_batch_reaches_every_submitter() -> None:
    down = ConnectionError("the neighbour is gone")

    async def failing(batch: list[int]) -> Sequence[int | BaseException]:
        raise down

    coalescer = Coalescer(failing, max_batch=10, in_flight=1)
    assert await asyncio.gather(*submit(coalescer, 1, 2, 3), return_exceptions=True) == [down] * 3


async def test_a_dispatcher_answering_the_wrong_number_of_results_fails_the_whole_batch() -> None:
    async def short(batch: list[int]) -> Sequence[int | BaseException]:
        return batch[:-1]

    coalescer = Coalescer(short, max_batch=10, in_flight=1)
    results = await asyncio.gather(*submit(coalescer, 1, 2), return_exceptions=True)
    assert all(isinstance(result, RuntimeError) and "a batch of 2 got 1" in str(result) for result in results)


async def test_close_cancels_the_batches_in_flight_and_everything_queued() -> None:
    dispatch = Dispatcher()
    dispatch.gate.clear()
    coalescer = Coalescer(dispatch, max_batch=10, in_flight=1)
    in_flight = submit(coalescer, 1, 2)
    await settle()
    queued = submit(coalescer, 3)
    await settle()
    assert dispatch.batches == [[1, 2]]
    await coalescer.close()
    for task in in_flight + queued:
        with pytest.raises(asyncio.CancelledError):
            await task
    assert dispatch.running == 0 and dispatch.batches == [[1, 2]]  # the queued item was never dispatched


async def test_a_submitter_that_gave_up_is_skipped() -> None:
    dispatch = Dispatcher()
    dispatch.gate.clear()
    coalescer = Coalescer(dispatch, max_batch=10, in_flight=1)
    first = submit(coalescer, 1)
    await settle()
    gave_up, waiting = submit(coalescer, 2) + submit(coalescer, 3)
    alone = submit(coalescer, 4)
    await settle()
    gave_up.cancel()  # its caller's deadline passed while its item was queued
    await settle()
    dispatch.gate.set()
    assert await asyncio.gather(*first, waiting, *alone) == [10, 30, 40]
    assert dispatch.batches == [[1], [3, 4]]  # item 2 never left
    with pytest.raises(asyncio.CancelledError):
        await gave_up


async def test_a_batch_whose_submitters_all_gave_up_is_not_sent() -> None:
    dispatch = Dispatcher()
    dispatch.gate.clear()
    coalescer = Coalescer(dispatch, max_batch=1, in_flight=1)
    first = submit(coalescer, 1)
    await settle()
    gave_up = submit(coalescer, 2)
    later = submit(coalescer, 3)
    await settle()
    gave_up[0].cancel()
    await settle()
    dispatch.gate.set()
    assert await asyncio.gather(*first, *later) == [10, 30]
    assert dispatch.batches == [[1], [3]]  # the batch of item 2 alone was dropped, and the next one went


def test_max_batch_and_in_flight_must_be_positive() -> None:
    for max_batch, in_flight in ((0, 1), (1, 0)):
        with pytest.raises(ValueError, match="at least 1"):
            Coalescer(Dispatcher(), max_batch=max_batch, in_flight=in_flight)
