"""The standard gRPC health service (grpc.health.v1) on the gateway's gRPC server.

The overall status ("") and each relay service are SERVING while the pools' Redis answers a PING and
NOT_SERVING otherwise: without Redis the gateway can neither relay nor deliver. A background task checks
every ``interval_s``; ``Watch`` callers see the change as it happens.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from relay.aio import repeat_until_cancelled

log = logging.getLogger(__name__)

OVERALL = ""
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class GatewayHealth:
    def __init__(self, services: Sequence[str]) -> None:
        self.servicer = health.aio.HealthServicer()
        self._services = [OVERALL, *services]
        self.serving: bool | None = None

    def add_to(self, server: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    async def set(self, serving: bool) -> None:
        if serving is self.serving:
            return
        self.serving = serving
        for service in self._services:
            await self.servicer.set(service, SERVING if serving else NOT_SERVING)

    async def check_once(self, ping: Callable[[], Awaitable[object]]) -> bool:
        try:
            await ping()
        except Exception as exc:  # PoolUnavailable mostly; any failure to answer means NOT_SERVING
            if self.serving is not False:
                log.warning("health: NOT_SERVING, the pools' Redis does not answer: %s", exc)
            await self.set(False)
            return False
        if self.serving is False:
            log.info("health: SERVING again, Redis answers")
        await self.set(True)
        return True

    async def run(self, ping: Callable[[], Awaitable[object]], interval_s: float) -> None:
        """Check forever; cancel the task to stop."""
        await repeat_until_cancelled(lambda: self.check_once(ping), interval_s)
