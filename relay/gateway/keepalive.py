"""gRPC keepalive between gateways: channel and server settings that agree with each other.

Keepalive pings find a connection that is dead underneath (a blackholed route, a host gone, a frozen
process: its C core does not answer pings either) within ``time_s + timeout_s``, so the channel leaves
READY and reconnects instead of sending hops into a void. It does not find a process that is alive but
unable to work (its C core still answers pings): that is :mod:`relay.gateway.liveness`'s job.

Invariant: the server accepts pings as often as our channels send them, even between calls. grpc's
server defaults (at most one ping per 5 minutes without data, ``keepalive_permit_without_calls`` off,
two strikes) would answer our channels' pings with GOAWAY ``too_many_pings`` and drop the connection.
"""

from __future__ import annotations

from dataclasses import dataclass

GrpcOptions = list[tuple[str, int]]

PING_STRIKES = 2  # misbehaving pings a server bears before GOAWAY: grpc's default, kept explicit


@dataclass(frozen=True)
class KeepaliveSettings:
    time_s: float = 10.0  # ping a connection this long idle
    timeout_s: float = 5.0  # no ping answer within this: the connection is dead

    def __post_init__(self) -> None:
        if min(self.time_s, self.timeout_s) <= 0:
            raise ValueError("keepalive time and timeout must be positive")

    @property
    def _common(self) -> GrpcOptions:
        return [
            ("grpc.keepalive_time_ms", round(self.time_s * 1000)),
            ("grpc.keepalive_timeout_ms", round(self.timeout_s * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),  # no cap: an idle link is exactly what must be watched
            # grpcio 1.85's core times a ping's ack by this (default 1 min), not by keepalive_timeout_ms:
            # without it a ping to a frozen process waited a minute (tests/gateway/test_frozen_neighbour.py)
            ("grpc.http2.ping_timeout_ms", round(self.timeout_s * 1000)),
        ]

    def channel_options(self) -> GrpcOptions:
        return self._common

    def server_options(self) -> GrpcOptions:
        """Also pings our clients; accepts their pings down to half the interval (timer jitter)."""
        return [
            *self._common,
            ("grpc.http2.min_ping_interval_without_data_ms", round(self.time_s * 500)),
            ("grpc.http2.max_ping_strikes", PING_STRIKES),
        ]
