"""Operator controls of the simulator: link levels, and the QBER knob that plays the eavesdropper.

Served over plain HTTP on the loopback interface only; it is a test instrument, not part of the 014 API.
``GET /metrics`` serves per-link Prometheus gauges (see :mod:`relay.kms_sim.metrics`) and ``GET /healthz``
answers 200 while the simulator runs.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relay.kms_sim.kms import LinkReport, SimulatedKms
from relay.kms_sim.metrics import KmsMetrics
from relay.observability.exposition import metrics_handler

KMS_KEY = web.AppKey("kms", SimulatedKms)


def create_admin_app(kms: SimulatedKms, metrics: KmsMetrics | None = None) -> web.Application:
    app = web.Application(client_max_size=4096)
    app[KMS_KEY] = kms
    app.router.add_get("/admin/links", _links)
    app.router.add_put("/admin/links/{link_id}/qber", _set_qber)
    app.router.add_get("/healthz", _health)
    app.router.add_get("/metrics", metrics_handler((metrics or KmsMetrics(kms)).registry))
    return app


async def _health(request: web.Request) -> web.Response:
    """The simulator has no backing store: healthy while it serves, with the halted links named."""
    halted = [r.link.id for r in request.app[KMS_KEY].links() if r.state.halted]
    return web.json_response({"status": "ok", "halted_links": halted})


def link_json(report: LinkReport) -> dict[str, Any]:
    return {
        "id": report.link.id,
        "saes": [report.link.sae_a, report.link.sae_b],
        "rate_bps": report.link.rate_bps,
        "stored_bits": report.state.stored_bits,
        "capacity_bits": report.state.capacity_bits,
        "qber": report.state.qber,
        "halted": report.state.halted,
    }


async def _links(request: web.Request) -> web.Response:
    return web.json_response({"links": [link_json(r) for r in request.app[KMS_KEY].links()]})


async def _set_qber(request: web.Request) -> web.Response:
    link_id = request.match_info["link_id"]
    try:
        body = await request.json()
    except ValueError:
        body = None
    qber = body.get("qber") if isinstance(body, dict) else None
    if not isinstance(qber, (int, float)) or isinstance(qber, bool):
        return web.json_response({"message": 'body must be {"qber": <number>}'}, status=400)
    try:
        report = request.app[KMS_KEY].set_qber(link_id, float(qber))
    except KeyError:
        return web.json_response({"message": f"unknown QKD link {link_id}"}, status=404)
    except ValueError as exc:
        return web.json_response({"message": str(exc)}, status=400)
    return web.json_response(link_json(report))
