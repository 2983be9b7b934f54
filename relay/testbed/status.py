"""``qkd-relay testbed status``: one screen on processes, QKD links, relay links and pools.

Everything is read from the loopback admin listeners (vendor KMS simulators and gateways), which carry
levels and counters only, never key material.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from relay.console import Column, Screen, Table, render_plain
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
    """The status screen as plain text (what ``testbed status`` prints when stdout is not a terminal)."""
    return render_plain(screen(topology, state, admin))


def screen(topology: Topology, state: TestbedState, admin: dict[str, Any]) -> Screen:
    running = sum(is_alive(s.pid) for s in state.services)
    return [
        f"testbed {topology.name}: {running}/{len(state.services)} processes running",
        _services_table(state),
        _qkd_links_table(topology, admin),
        _relay_links_table(topology, admin),
        _gateways_table(topology, admin),
    ]


def _services_table(state: TestbedState) -> Table:
    table = Table([Column("SERVICE"), Column("PID", "right"), Column("STATE"), Column("LISTENS")])
    for service in state.services:
        listens = "  ".join(f"{what} {where}" for what, where in service.listens.items())
        table.add_row(service.name, str(service.pid), "up" if is_alive(service.pid) else "DOWN", listens)
    return table


def _qkd_links_table(topology: Topology, admin: dict[str, Any]) -> Table:
    table = Table(
        [
            Column("QKD LINK"),
            Column("RATE bit/s", "right"),
            Column("STORED bits", "right"),
            Column("QBER", "right"),
            Column("STATE"),
            Column("PULLED bit/s", "right"),
        ]
    )
    pulled = _pulled_rates(admin)
    for kms in topology.kms:
        report = admin.get(kms.id, {})
        if "error" in report:
            table.notes.append(f"{kms.id}: admin unreachable: {report['error']}")
            continue
        for link in report.get("links", []):
            rate = pulled.get(link["id"])
            table.add_row(
                link["id"],
                f"{link['rate_bps']:.0f}",
                str(link["stored_bits"]),
                f"{link['qber']:.3f}",
                "HALTED" if link["halted"] else "ok",
                "-" if rate is None else f"{rate:.0f}",
            )
    return table


def _relay_links_table(topology: Topology, admin: dict[str, Any]) -> Table:
    table = Table(
        [Column("RELAY LINK"), Column("POLICY"), Column("REACHABLE"), Column("QKD POOL LANES (level/high, state)")]
    )
    for link in topology.links:
        a, b = link.gateways
        view = _link_view(admin.get(a, {}), b)
        if view is None:
            table.add_row(f"{a}-{b}", link.policy, "?", f"gateway {a} admin unreachable")
            continue
        lanes = ", ".join(
            f"{p['name'].split(':')[-1]} {p['level']}/{p['high']} {p['state']}" for p in view["qkd_pools"]
        )
        table.add_row(f"{a}-{b}", link.policy, "yes" if view["reachable"] else "NO", lanes or "-")
    return table


def _gateways_table(topology: Topology, admin: dict[str, Any]) -> Table:
    table = Table(
        [
            Column("GATEWAY"),
            Column("READY KEYS", "right"),
            Column("RELAYED", "right"),
            Column("FAILED", "right"),
            Column("QKD->PQC", "right"),
            Column("EXHAUSTED", "right"),
        ]
    )
    for gateway in topology.gateways:
        doc = admin.get(gateway.id, {})
        if "error" in doc or not doc:
            table.notes.append(f"{gateway.id}: admin unreachable: {doc.get('error', 'no admin_port')}")
            continue
        relay = doc["relay"]
        ready = sum(pool["level"] for pool in doc["ready_pools"])
        counters = (relay["keys_relayed"], relay["relay_failures"], relay["qkd_fallbacks"], relay["qkd_exhausted"])
        table.add_row(gateway.id, str(ready), *(str(count) for count in counters))
    return table


def _link_view(gateway_doc: dict[str, Any], neighbour: str) -> dict[str, Any] | None:
    links: list[dict[str, Any]] = gateway_doc.get("links", [])
    for link in links:
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
