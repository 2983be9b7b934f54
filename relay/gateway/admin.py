"""The gateway's loopback admin listener: a JSON status document, Prometheus metrics and a health check.

``GET /status`` (JSON), ``GET /metrics`` (Prometheus text format, see :mod:`relay.observability.gateway`)
and ``GET /healthz`` (200 while Redis answers, else 503). It binds to loopback only and carries no key
material (levels, counters and link states), which is why it needs no client certificate,
like the vendor KMS simulator's admin listener.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from aiohttp import web

from relay.gateway.config import GatewayPlan
from relay.gateway.prerelay import Prerelay
from relay.gateway.relay_engine import RelayEngine
from relay.observability.exposition import metrics_handler
from relay.observability.gateway import GatewayMetrics
from relay.pool import PoolUnavailable, QkdFiller, RelayedKeyStore, pool_status

ADMIN_HOST = "127.0.0.1"


class GatewayStatus:
    def __init__(
        self,
        engine: RelayEngine,
        store: RelayedKeyStore,
        fillers: list[QkdFiller],
        prerelay: Prerelay | None,
        *,
        qkd_key_bits: int,
    ) -> None:
        self._started = time.monotonic()
        self._qkd_key_bits = qkd_key_bits
        self._engine = engine
        self._plan: GatewayPlan = engine.plan
        self._store = store
        self._fillers = fillers
        self._prerelay = prerelay

    async def document(self) -> dict[str, Any]:
        """Raises PoolUnavailable when Redis cannot answer."""
        links = []
        for neighbour in self._plan.neighbours.values():
            lanes = self._engine.qkd_lanes_of(neighbour.id)
            links.append(
                {
                    "neighbour": neighbour.id,
                    "policy": neighbour.policy.value,
                    "qkd_link": neighbour.qkd.link_id if neighbour.qkd else None,
                    "reachable": self._engine.neighbour_reachable(neighbour.id),
                    "qkd_pools": [asdict(s) for s in await pool_status(lanes)],
                }
            )
        pairs = [(m, s) for m in self._plan.local_saes for s in self._plan.remote_saes]
        ready = await pool_status(self._store.ready_gauge(m, s) for m, s in pairs)
        return {
            "gateway": self._plan.id,
            "uptime_s": round(time.monotonic() - self._started, 3),
            "qkd_key_bits": self._qkd_key_bits,
            "links": links,
            "ready_pools": [asdict(s) for s in ready],
            "relay": asdict(self._engine.metrics),
            "qkd_fillers": {f.link_id: asdict(f.metrics) for f in self._fillers},
            "prerelay": asdict(self._prerelay.metrics) if self._prerelay else None,
        }


STATUS_KEY = web.AppKey("gateway_status", GatewayStatus)
PING_KEY = web.AppKey("gateway_ping_redis", Callable[[], Awaitable[object]])


def create_admin_app(
    status: GatewayStatus, ping_redis: Callable[[], Awaitable[object]], metrics: GatewayMetrics | None = None
) -> web.Application:
    app = web.Application()
    app[STATUS_KEY] = status
    app[PING_KEY] = ping_redis
    app.router.add_get("/status", _status)
    app.router.add_get("/healthz", _health)
    if metrics is not None:
        app.router.add_get("/metrics", metrics_handler(metrics.registry, metrics.refresh))
    return app


async def _status(request: web.Request) -> web.Response:
    try:
        return web.json_response(await request.app[STATUS_KEY].document())
    except PoolUnavailable as exc:
        return web.json_response({"error": str(exc)}, status=503)


async def _health(request: web.Request) -> web.Response:
    """Healthy when the pools' Redis answers: without it the gateway can neither relay nor deliver."""
    try:
        await request.app[PING_KEY]()  # one PING, not the status document's reads of every pool
    except PoolUnavailable as exc:
        return web.json_response({"status": "unavailable", "reason": str(exc)}, status=503)
    return web.json_response({"status": "ok"})
