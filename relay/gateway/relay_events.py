"""What the relay reports: plain counters, and latencies and failures by type through observer hooks.

Every relay component (engine, hop protection, transport, voiding) is handed the one
:class:`RelayObserver` of its gateway and counts into its :attr:`RelayObserver.counts`; the default
observer only counts, so the relay stays export-agnostic and a gateway built by hand needs no metrics.
:class:`relay.gateway.metrics.GatewayMetrics` is the observer that also feeds Prometheus histograms.

Relays are counted by :class:`RelayOrigin`, because background pre-relay and the keys SAEs wait for fail
for different reasons and cost different things: a pre-relay that finds a lane dry retries later and no
SAE notices, an SAE's relay that fails is a 503. Totals over both origins keep their old names.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum


class RelayOrigin(StrEnum):
    SAE = "sae"  # a key an SAE asked for (ETSI 014 enc_keys, ETSI 020 relay): someone waits for it
    PRERELAY = "prerelay"  # background: a key relayed ahead into an SAE pair's ready pool

    @property
    def no_degrade(self) -> bool:
        """Pre-relay, and only pre-relay, forbids degrading a hop for want of QKD key (see the proto)."""
        return self is RelayOrigin.PRERELAY

    @classmethod
    def of_hop(cls, no_degrade: bool) -> RelayOrigin:
        """The origin of a hop received from a neighbour: hops carry only the ``no_degrade`` mark of it."""
        return cls.PRERELAY if no_degrade else cls.SAE


@dataclass
class OriginCounts:
    keys_relayed: int = 0  # end-to-end, originated here
    relay_failures: int = 0  # relays originated here that failed
    qkd_exhausted: int = 0  # hops this gateway refused to seal for want of QKD key (require-qkd or no-degrade)
    not_started: int = 0  # of the failures, those not started: every allowed route crosses a lane known dry


ORIGIN_COUNTERS = tuple(f.name for f in fields(OriginCounts))


@dataclass
class RelayMetrics:
    hops_sent: int = 0  # keys sent to a neighbour (each in a frame)
    hops_received: int = 0  # keys received from a neighbour (each in a frame)
    hop_retries: int = 0  # frames resent with the same bytes
    frames_sent: int = 0
    frames_received: int = 0
    qkd_fallbacks: int = 0  # qkd+pqc hops sealed pqc-only because the QKD pool was empty (never pre-relay)
    keys_voided: int = 0
    sae: OriginCounts = field(default_factory=OriginCounts)
    prerelay: OriginCounts = field(default_factory=OriginCounts)

    def of(self, origin: RelayOrigin) -> OriginCounts:
        return self.sae if origin is RelayOrigin.SAE else self.prerelay

    @property
    def keys_relayed(self) -> int:
        return self.sae.keys_relayed + self.prerelay.keys_relayed

    @property
    def relay_failures(self) -> int:
        return self.sae.relay_failures + self.prerelay.relay_failures

    @property
    def qkd_exhausted(self) -> int:
        return self.sae.qkd_exhausted + self.prerelay.qkd_exhausted

    @property
    def not_started(self) -> int:
        return self.sae.not_started + self.prerelay.not_started


class RelayObserver:
    def __init__(self) -> None:
        self.counts = RelayMetrics()

    def hop_confirmed(self, neighbour: str, hop: int, seconds: float) -> None:
        """A hop sent to ``neighbour`` was confirmed ``seconds`` after it was first sent."""

    def relay_done(self, target_gateway: str, seconds: float) -> None:
        """A key originated here was stored at ``target_gateway``, ``seconds`` after the relay started."""

    def relay_failed(self, reason: str, origin: RelayOrigin) -> None:
        """A relay originated here failed; ``reason`` is the exception type (``RelayFailed``, ``QkdExhausted``)."""

    def hop_refused(self, reason: str) -> None:
        """A key (or a whole frame) received from a neighbour failed here; ``reason`` is the exception type."""

    def frame_sealed(self, neighbour: str, keys: int, qkd_bits: int) -> None:
        """A frame of ``keys`` keys was sealed for ``neighbour``, spending ``qkd_bits`` bits of QKD key."""
        self.counts.frames_sent += 1
