"""Admission onto a require-qkd link: no more keys wait for its QKD key than it can distil in their time.

Keys on a ``require-qkd`` link wait for QKD key when the lane is empty (:mod:`relay.gateway.hop_protection`).
Under a load beyond the link's secret-key rate, a queue without a bound fills with keys that cannot be
served before their deadline: each then spends QKD key (on this hop, and on the hops before it) only to
expire further on, and the link's whole output is wasted. So a key is admitted only while the QKD key it
and every key already waiting need fits in what the lane holds plus what the link distils (its topology
``rate_bps``) before the key's deadline; otherwise it is refused at once with :class:`QkdExhausted`
(503), before anything is spent. Invariant: ``waiting`` is the sum of the needs of the keys admitted and
not yet answered.

A gateway run as N replicas keeps ``waiting`` in each process (a count in Redis would cost a round trip
per request on the hot path), so each replica admits against 1/N of the lane and of the link's rate:
together they never admit more than the link can serve, and while one replica is down the others admit
less than they could, the safe side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

from relay.crypto import pad_keys_needed
from relay.gateway.errors import QkdExhausted

MIN_SEND_S = 0.25  # left of a key's time for sending it after waiting for QKD key


class QkdAdmission:
    """The waiting keys of one require-qkd link, in QKD keys (a share of a frame's key, plus a pad on otp)."""

    def __init__(
        self,
        link: str,
        rate_keys_per_s: float,
        frame_keys: int,
        *,
        padded: bool,
        level: Callable[[], int | None],
        replicas: int = 1,
    ) -> None:
        """``level``: the lane's last measured level (None: unknown, counted as empty); ``replicas``: how many
        processes of the gateway admit onto the link, each with its share."""
        if replicas < 1:
            raise ValueError("replicas must be at least 1")
        self._link = link
        self._replicas = replicas
        self._rate = rate_keys_per_s
        self._frame_keys = frame_keys
        self._padded = padded
        self._level = level
        self.waiting = 0.0

    def admit(self, key_sizes_bits: Sequence[int], time_left_s: float) -> AbstractContextManager[None]:
        """A place for the keys while they wait and travel (released on exit), all or none; raises
        :class:`QkdExhausted` at once if they cannot be served in time."""
        pads = sum(pad_keys_needed(-(-bits // 8)) for bits in key_sizes_bits) if self._padded else 0
        need = len(key_sizes_bits) / self._frame_keys + pads
        supply = ((self._level() or 0) + self._rate * max(0.0, time_left_s - MIN_SEND_S)) / self._replicas
        if self.waiting + need > supply:
            raise QkdExhausted(
                f"QKD key on link {self._link} is oversubscribed ({self.waiting:.0f} QKD keys' worth of keys wait, "
                f"{supply:.0f} can be had in time) and its policy is require-qkd"
            )
        self.waiting += need
        return self._held(need)

    @contextmanager
    def _held(self, need: float) -> Iterator[None]:
        try:
            yield
        finally:
            self.waiting -= need
