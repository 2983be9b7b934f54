"""``qkd-relay testbed status``: one screen on processes, QKD links, relay links and pools.

Everything is read from the loopback admin listeners (vendor KMS simulators and gateways), which carry
levels and counters only, never key material.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from relay.testbed.launcher import TestbedState, is_alive
from relay.topology import Topology

ADMIN_TIMEOUT_S = 3.0


async def collect(topology: Topology, state: TestbedState) -> dict[str, Any]:
    """Admin documents by service name; a service that cannot answer maps to ``{"error": ...}``."""
    urls = {s.name: s.listens["admin"] for s in state.services if "admin" in s.listens}
    paths = {s.name: "/admin/links" if s.kind == "kms" else "/status" for s in state.services}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ADMIN_TIMEOUT_S)) as session:
        answers = await asyncio.gather(*(get_admin_json(session, url + paths[name]) for name, url in urls.items()))
    return dict(zip(urls, answers, strict=True))


async def get_admin_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """An admin listener's JSON document, or ``{"error": ...}`` saying why there is none."""
    try:
        async with session.get(url) as response:
            body = await response.json(content_type=None)
            return body if response.status == 200 else {"error": body.get("error", f"HTTP {response.status}")}
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__}


def render(topology: Topology, state: TestbedState, admin: dict[str, Any]) -> str:
    lines = [
        f"testbed {topology.name}: {sum(is_alive(s.pid) for s in state.services)}/{len(state.services)} "
        "processes running",
        "",
    ]
    lines.append(f"{'SERVICE':<16}{'PID':>8}  {'STATE':<6} LISTENS")
    for service in state.services:
        listens = "  ".join(f"{what} {where}" for what, where in service.listens.items())
        lines.append(f"{service.name:<16}{service.pid:>8}  {'up' if is_alive(service.pid) else 'DOWN':<6} {listens}")

    lines += ["", f"{'QKD LINK':<16}{'RATE bit/s':>11}{'STORED bits':>13}{'QBER':>7}  STATE   PULLED bit/s"]
    pulled = _pulled_rates(admin)
    for kms in topology.kms:
        report = admin.get(kms.id, {})
        if "error" in report:
            lines.append(f"{kms.id:<16} admin unreachable: {report['error']}")
            continue
        for link in report.get("links", []):
            state_text = "HALTED" if link["halted"] else "ok"
            rate = pulled.get(link["id"])
            lines.append(
                f"{link['id']:<16}{link['rate_bps']:>11.0f}{link['stored_bits']:>13}{link['qber']:>7.3f}  "
                f"{state_text:<7} {'-' if rate is None else f'{rate:.0f}'}"
            )

    lines += ["", f"{'RELAY LINK':<16}{'POLICY':<13}{'REACHABLE':<11}QKD POOL LANES (level/high, state)"]
    for link in topology.links:
        a, b = link.gateways
        view = _link_view(admin.get(a, {}), b)
        if view is None:
            lines.append(f"{a}-{b:<13}{link.policy:<13}{'?':<11}gateway {a} admin unreachable")
            continue
        lanes = (
            ", ".join(f"{p['name'].split(':')[-1]} {p['level']}/{p['high']} {p['state']}" for p in view["qkd_pools"])
            or "-"
        )
        lines.append(f"{a + '-' + b:<16}{link.policy:<13}{'yes' if view['reachable'] else 'NO':<11}{lanes}")

    lines += ["", f"{'GATEWAY':<10}{'READY KEYS':>11}{'RELAYED':>9}{'FAILED':>8}{'QKD->PQC':>10}{'EXHAUSTED':>11}"]
    for gateway in topology.gateways:
        doc = admin.get(gateway.id, {})
        if "error" in doc or not doc:
            lines.append(f"{gateway.id:<10} admin unreachable: {doc.get('error', 'no admin_port')}")
            continue
        relay = doc["relay"]
        ready = sum(pool["level"] for pool in doc["ready_pools"])
        lines.append(
            f"{gateway.id:<10}{ready:>11}{relay['keys_relayed']:>9}{relay['relay_failures']:>8}"
            f"{relay['qkd_fallbacks']:>10}{relay['qkd_exhausted']:>11}"
        )
    return "\n".join(lines)


def _link_view(gateway_doc: dict[str, Any], neighbour: str) -> dict[str, Any] | None:
    for link in gateway_doc.get("links", []):
        if link["neighbour"] == neighbour:
            return link
    return None


def _pulled_rates(admin: dict[str, Any]) -> dict[str, float]:
    """QKD key actually pulled per link since the master gateway started, in bit/s."""
    rates = {}
    for doc in admin.values():
        uptime = doc.get("uptime_s") if isinstance(doc, dict) else None
        for link_id, metrics in (doc.get("qkd_fillers") or {}).items() if uptime else ():
            rates[link_id] = metrics["keys_fetched"] * doc["qkd_key_bits"] / uptime
    return rates
