"""Background loops that stop when cancelled, even if a library swallowed the cancellation.

On Python 3.11, a cancellation that lands as a client library's own timeout fires (aiohttp's request
timeout, redis-py's socket timeout) can come out as ``TimeoutError``; a loop that counts such errors and
carries on would then never stop, and the gateway's shutdown would wait for it forever. The task's
``cancelling()`` count survives the swallowing, so checking it after each round ends the loop anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def repeat_until_cancelled(step: Callable[[], Awaitable[object]], interval_s: float) -> None:
    """Run ``step`` every ``interval_s`` seconds (after it finishes) until the task is cancelled."""
    task = asyncio.current_task()
    while True:
        await step()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        await asyncio.sleep(interval_s)
