"""Polling for a condition the code under test reaches in its own time (a pool filled, a link back up)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_until(
    check: Callable[[], object], *, timeout_s: float, interval_s: float = 0.1, what: str = "condition"
) -> float:
    """Poll a coroutine function or plain callable until it returns something truthy; returns the seconds
    it took. Raises AssertionError naming ``what`` and the last result when ``timeout_s`` passes first."""
    started = time.monotonic()
    last: object = None
    while time.monotonic() - started < timeout_s:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        last = result
        await asyncio.sleep(interval_s)
    raise AssertionError(f"{what}: not reached within {timeout_s:.0f} s (last: {last!r})")
