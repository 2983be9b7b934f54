"""The gateway's loopback admin listener: a JSON status document, Prometheus metrics and a health check.

``GET /status`` (JSON), ``GET /metrics`` (Prometheus text format, see :mod:`relay.gateway.metrics`)
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

from relay.gateway.metrics import GatewayMetrics
from relay.gateway.prerelay import Prerelay
from relay.gateway.relay_events import ORIGIN_COUNTERS, RelayMetrics
from relay.gateway.status_view import GatewayView
from relay.observability.exposition import metrics_handler
from relay.pool import PoolUnavailable

ADMIN_HOST = "127.0.0.1"


class GatewayStatus:
    def __init__(self, view: GatewayView) -> None:
        self._started = time.monotonic()
        self._view = view

    async def document(self) -> dict[str, Any]:
        """Raises PoolUnavailable when Redis cannot answer."""
        view = self._view
        levels = await view.read_levels()
        links = [
            {
                "neighbour": link.neighbour.id,
                "policy": link.neighbour.policy.value,
                "qkd_link": link.neighbour.qkd.link_id if link.neighbour.qkd else None,
                "reachable": view.reachable(link.neighbour.id),
                "qkd_pools": [asdict(status) for _, status in link.lanes],
            }
            for link in levels.links
        ]
        return {
            "gateway": view.plan.id,
            "uptime_s": round(time.monotonic() - self._started, 3),
            "qkd_key_bits": view.qkd_key_bits,
            "links": links,
            "ready_pools": [asdict(status) for _, _, status in levels.ready],
            "relay": relay_document(view.relay),
            "qkd_fillers": {f.link_id: asdict(f.metrics) for f in view.fillers},
            "prerelay": prerelay_document(view.prerelay) if view.prerelay else None,
        }


def relay_document(relay: RelayMetrics) -> dict[str, Any]:
    """The relay counters: by origin (``sae``, ``prerelay``), and their totals under the names they always had."""
    return {**asdict(relay), **{name: getattr(relay, name) for name in ORIGIN_COUNTERS}}


def prerelay_document(prerelay: Prerelay) -> dict[str, Any]:
    """Pre-relay's counters and the destinations it is backing off from (``waiting``)."""
    return {**asdict(prerelay.metrics), "waiting": [asdict(waiting) for waiting in prerelay.waiting()]}


STATUS_KEY = web.AppKey("gateway_status", GatewayStatus)
PING_KEY: web.AppKey[Callable[[], Awaitable[object]]] = web.AppKey("gateway_ping_redis")


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
