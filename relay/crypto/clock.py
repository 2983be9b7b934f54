"""Wall-clock time in Unix milliseconds, injected wherever freshness or expiry is decided.

Every time-dependent check takes a :data:`Clock` argument instead of reading the system clock itself, so
tests can move time explicitly and a gateway can use one clock for headers, key expiry and replay windows.
"""

import time
from collections.abc import Callable

Clock = Callable[[], int]


def system_clock_ms() -> int:
    """The default :data:`Clock`."""
    return time.time_ns() // 1_000_000
