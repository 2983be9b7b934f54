"""Low and high watermarks of a pool and the state they put it in.

``high`` is the level fillers top a pool up to; ``low`` is the alarm level: below it the pool is ``low``
(operators are warned while key remains), at zero it is ``empty`` (requests on ``require-qkd`` links get
503). Keeping the alarm separate from the fill target means the alarm fires before exhaustion, not at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PoolState(StrEnum):
    OK = "ok"
    LOW = "low"
    EMPTY = "empty"


@dataclass(frozen=True)
class Watermarks:
    low: int = 16
    high: int = 128

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high or self.high < 1:
            raise ValueError("watermarks need 0 <= low <= high and high >= 1")

    def state(self, level: int) -> PoolState:
        if level <= 0:
            return PoolState.EMPTY
        return PoolState.LOW if level < self.low else PoolState.OK

    def deficit(self, level: int) -> int:
        """How many keys a filler should add to reach ``high``."""
        return max(0, self.high - level)
