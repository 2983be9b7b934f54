"""Operator controls of the simulator: link levels, and the QBER knob that plays the eavesdropper.

Served over plain HTTP on the loopback interface only; it is a test instrument, not part of the 014 API.
``GET /metrics`` serves per-link Prometheus gauges (see :mod:`relay.kms_sim.metrics`) and ``GET /healthz``
answers 200 while the simulator runs.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relay.kms_sim.foreign import Behaviour, HandoverControls
from relay.kms_sim.kms import LinkReport, SimulatedKms
from relay.kms_sim.metrics import KmsMetrics
from relay.observability.exposition import metrics_handler

KMS_KEY = web.AppKey("kms", SimulatedKms)
CONTROLS_KEY = web.AppKey("handover_controls", HandoverControls)


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


def add_handover_controls(app: web.Application, controls: HandoverControls) -> None:
    """A foreign domain's knob: how it answers hand-overs (``{"behaviour": ..., "delay_s": ...}``), and its
    counts of keys received, stored and voided and of acks sent and received."""
    app[CONTROLS_KEY] = controls
    app.router.add_get("/admin/handover", _handover)
    app.router.add_put("/admin/handover", _set_handover)


def _handover_json(controls: HandoverControls) -> dict[str, Any]:
    return {"behaviour": str(controls.behaviour), "delay_s": controls.delay_s, "counts": dict(controls.counts)}


async def _handover(request: web.Request) -> web.Response:
    return web.json_response(_handover_json(request.app[CONTROLS_KEY]))


async def _set_handover(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        body = None
    behaviours = ", ".join(b.value for b in Behaviour)
    if not isinstance(body, dict) or body.get("behaviour") not in set(Behaviour):
        return web.json_response({"message": f"body must be {{'behaviour': one of {behaviours}}}"}, status=400)
    delay = body.get("delay_s", 0.0)
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 <= delay <= 600:
        return web.json_response({"message": "delay_s must be a number of seconds from 0 to 600"}, status=400)
    controls = request.app[CONTROLS_KEY]
    controls.behaviour, controls.delay_s = Behaviour(body["behaviour"]), float(delay)
    return web.json_response(_handover_json(controls))
