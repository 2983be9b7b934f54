"""What the relay reports: plain counters, and latencies and failures by type through observer hooks.

Every relay component (engine, hop protection, transport, voiding) is handed the one
:class:`RelayObserver` of its gateway and counts into its :attr:`RelayObserver.counts`; the default
observer only counts, so the relay stays export-agnostic and a gateway built by hand needs no metrics.
:class:`relay.gateway.metrics.GatewayMetrics` is the observer that also feeds Prometheus histograms.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RelayMetrics:
    keys_relayed: int = 0  # end-to-end, originated here
    relay_failures: int = 0
    hops_sent: int = 0
    hops_received: int = 0
    hop_retries: int = 0
    qkd_fallbacks: int = 0  # qkd+pqc hops sealed pqc-only because the QKD pool was empty
    qkd_exhausted: int = 0  # require-qkd hops refused for want of QKD key
    keys_voided: int = 0


class RelayObserver:
    def __init__(self) -> None:
        self.counts = RelayMetrics()

    def hop_confirmed(self, neighbour: str, hop: int, seconds: float) -> None:
        """A hop sent to ``neighbour`` was confirmed ``seconds`` after it was first sent."""

    def relay_done(self, target_gateway: str, seconds: float) -> None:
        """A key originated here was stored at ``target_gateway``, ``seconds`` after the relay started."""

    def relay_failed(self, reason: str) -> None:
        """A relay originated here failed; ``reason`` is the exception type (``RelayFailed``, ``QkdExhausted``)."""

    def hop_refused(self, reason: str) -> None:
        """A hop received from a neighbour failed here; ``reason`` is the exception type."""
