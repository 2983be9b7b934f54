"""One simulated QKD link: secret key accrues at a fixed rate into a bounded store, unless QBER is too high.

Accrual is computed lazily from a monotonic clock at each access rather than by a background task, so the
store is exact at any instant, costs nothing while idle, and tests can drive it with a fake clock.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


class LinkHalted(Exception):
    """QBER is above the threshold: the link distils no key and delivers none."""


class InsufficientKey(Exception):
    """The store holds fewer bits than the request needs."""


@dataclass(frozen=True)
class LinkState:
    stored_bits: int
    capacity_bits: int
    qber: float
    halted: bool


class QkdLinkSimulator:
    def __init__(
        self,
        rate_bps: float,
        capacity_bits: int,
        *,
        initial_bits: int,
        qber: float,
        qber_threshold: float,
        clock: Clock,
    ) -> None:
        self._rate_bps = rate_bps
        self._capacity_bits = capacity_bits
        self._bits = float(min(initial_bits, capacity_bits))
        self._qber = qber
        self._threshold = qber_threshold
        self._clock = clock
        self._last = clock()

    @property
    def halted(self) -> bool:
        return self._qber > self._threshold

    def state(self) -> LinkState:
        self._accrue()
        return LinkState(int(self._bits), self._capacity_bits, self._qber, self.halted)

    def set_qber(self, qber: float) -> None:
        """An eavesdropper raises QBER; while it exceeds the threshold no key is distilled."""
        if not 0.0 <= qber <= 0.5:
            raise ValueError("QBER must be between 0 and 0.5")
        self._accrue()  # bits distilled before the change are kept; none accrue while halted
        self._qber = qber

    def draw(self, number: int, size_bits: int) -> list[bytes]:
        """Take ``number`` keys of ``size_bits`` each, all or nothing."""
        self._accrue()
        if self.halted:
            raise LinkHalted(f"QBER {self._qber:.3f} is above the threshold {self._threshold:.3f}")
        needed = number * size_bits
        if needed > self._bits:
            raise InsufficientKey(f"{int(self._bits)} bits of key stored, {needed} requested")
        self._bits -= needed
        return [secrets.token_bytes(size_bits // 8) for _ in range(number)]

    def _accrue(self) -> None:
        now = self._clock()
        if not self.halted:
            self._bits = min(float(self._capacity_bits), self._bits + self._rate_bps * (now - self._last))
        self._last = now
