"""What the relay engine reports beyond its plain counters: latencies and failures by type.

The engine calls a :class:`RelayObserver`; the default one does nothing, so the engine stays
export-agnostic and tests that build an engine by hand need no metrics at all.
"""

from __future__ import annotations


class RelayObserver:
    """No-op base; :class:`relay.observability.gateway.GatewayMetrics` records into Prometheus histograms."""

    def hop_confirmed(self, neighbour: str, hop: int, seconds: float) -> None:
        """A hop sent to ``neighbour`` was confirmed ``seconds`` after it was first sent."""

    def relay_done(self, target_gateway: str, seconds: float) -> None:
        """A key originated here was stored at ``target_gateway``, ``seconds`` after the relay started."""

    def relay_failed(self, reason: str) -> None:
        """A relay originated here failed; ``reason`` is the exception type (``RelayFailed``, ``QkdExhausted``)."""

    def hop_refused(self, reason: str) -> None:
        """A hop received from a neighbour failed here; ``reason`` is the exception type."""
