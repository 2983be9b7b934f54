"""``qkd-relay testbed status``: one screen on processes, QKD links, relay links and pools.

Everything is read from the loopback admin listeners (vendor KMS simulators and gateways), which carry
levels and counters only, never key material. A gateway with replicas has one row per replica (``GW2/1``,
``GW2/2``), each from that replica's own admin port; what lives in the shared Redis (QKD lanes, ready
pools) is the same from any of them. When the regions' Redis runs as a cluster, each node's row also
says its role now (``CLUSTER NODES``, read as the Redis admin user).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from relay.console import Column, Screen, Table, render_plain
from relay.gateway.prerelay import MAX_BACKOFF_S
from relay.pki.layout import KeyDirectory
from relay.testbed.launcher import TestbedState, is_alive
from relay.testbed.region_redis import RedisSetupError, read_roles
from relay.topology import Topology

ADMIN_TIMEOUT_S = 3.0


async def collect(topology: Topology, state: TestbedState) -> dict[str, Any]:
    """Admin documents by service name; a service that cannot answer maps to ``{"error": ...}``. With a
    Redis Cluster, each node's service name maps to ``{"role": ...}`` too."""
    urls = {s.name: s.listens["admin"] for s in state.services if "admin" in s.listens}
    paths = {s.name: "/admin/links" if s.kind == "kms" else "/status" for s in state.services}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ADMIN_TIMEOUT_S)) as session:
        answers = await asyncio.gather(*(get_admin_json(session, url + paths[name]) for name, url in urls.items()))
    documents = dict(zip(urls, answers, strict=True))
    if state.redis_cluster:
        keys = KeyDirectory(Path(state.keys_root) / topology.name)
        documents |= await asyncio.to_thread(cluster_roles, state, keys)
    return documents


def cluster_roles(state: TestbedState, keys: KeyDirectory) -> dict[str, dict[str, str]]:
    """Cluster node service name -> ``{"role": "master" | "replica of <name>"}``, as any node of its region
    that answers sees it; nodes no node reports are left out (their rows say DOWN anyway)."""
    by_address = {urlsplit(s.listens["redis"]).netloc: s.name for s in state.services if s.kind == "redis"}
    roles: dict[str, dict[str, str]] = {}
    for address, name in by_address.items():
        if name in roles:
            continue  # its region was read already, from another node
        try:
            known = read_roles(address, keys)
        except RedisSetupError:
            continue
        for node, role in known.items():
            if node in by_address:
                named = "master" if role.master is None else f"replica of {by_address.get(role.master, role.master)}"
                roles[by_address[node]] = {"role": named + (", FAILED" if role.failed else "")}
    return roles


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
        _services_table(state, admin),
        _qkd_links_table(topology, admin),
        _relay_links_table(topology, admin),
        _sae_requests_table(topology, admin),
        _prerelay_table(topology, admin),
    ]


def _services_table(state: TestbedState, admin: dict[str, Any]) -> Table:
    table = Table([Column("SERVICE"), Column("PID", "right"), Column("STATE"), Column("LISTENS")])
    for service in state.services:
        listens = "  ".join(f"{what} {where}" for what, where in service.listens.items())
        running = "up" if is_alive(service.pid) else "DOWN"
        role = admin.get(service.name, {}).get("role") if service.kind == "redis" else None
        table.add_row(service.name, str(service.pid), running if role is None else f"{running}, {role}", listens)
    if state.redis_cluster:
        table.notes.append(
            "Each region's Redis is a Redis Cluster: 3 masters with a replica each (roles as CLUSTER NODES says "
            "now); the gateways run with --redis-cluster."
        )
    return table


def _qkd_links_table(topology: Topology, admin: dict[str, Any]) -> Table:
    table = Table(
        [
            Column("QKD LINK"),
            Column("KEY RATE bit/s", "right"),
            Column("QBER", "right"),
            Column("STATE"),
            Column("VENDOR STOCK bits", "right"),
            Column("STOCK AT START bits", "right"),
            Column("PULLED bits", "right"),
            Column("PULLED BEYOND STOCK bit/s", "right"),
        ]
    )
    pulls = _pulls(admin)
    for kms in topology.kms:
        report = admin.get(kms.id, {})
        if "error" in report:
            table.notes.append(f"{kms.id}: admin unreachable: {report['error']}")
            continue
        for link in report.get("links", []):
            pull = pulls.get(link["id"])
            table.add_row(
                link["id"],
                f"{link['rate_bps']:.0f}",
                f"{link['qber']:.3f}",
                "HALTED" if link["halted"] else "ok",
                str(link["stored_bits"]),
                "-" if pull is None or pull.stock_at_start_bits is None else str(pull.stock_at_start_bits),
                "-" if pull is None else str(pull.pulled_bits),
                "-" if pull is None else pull.rate_cell(),
            )
    table.notes += [
        "KEY RATE: the secret-key rate the QKD link distils (a setting of the simulator).",
        "VENDOR STOCK: key the vendor KMS holds now; STOCK AT START: what it already held when the gateway first",
        "  asked (the simulator starts with a stock). PULLED: key the link's master gateway pulled from the vendor",
        "  KME since it started, first from that stock; BEYOND STOCK: the rest, per second since the gateway",
        "  started (at most KEY RATE; less while the gateways' QKD pools are full, since pulling follows use).",
    ]
    return table


def _relay_links_table(topology: Topology, admin: dict[str, Any]) -> Table:
    table = Table(
        [Column("RELAY LINK"), Column("POLICY"), Column("REACHABLE"), Column("QKD POOL LANES (level/high, state)")]
    )
    for link in topology.links:
        a, b = link.gateways
        view = next((v for doc in _replica_documents(topology, a, admin) if (v := _link_view(doc, b))), None)
        if view is None:
            table.add_row(f"{a}-{b}", link.policy, "?", f"gateway {a} admin unreachable")
            continue
        lanes = ", ".join(
            f"{p['name'].split(':')[-1]} {p['level']}/{p['high']} {p['state']}" for p in view["qkd_pools"]
        )
        table.add_row(f"{a}-{b}", link.policy, "yes" if view["reachable"] else "NO", lanes or "-")
    table.notes += [
        "QKD POOL LANES: QKD keys the two gateways hold to seal hops, one lane per direction (master-sends: the",
        "  link's master gateway seals with it), against the lane's high watermark.",
    ]
    return table


def _sae_requests_table(topology: Topology, admin: dict[str, Any]) -> Table:
    table = Table(
        [
            Column("FOR SAEs"),
            Column("RELAYED", "right"),
            Column("FAILED TRIES", "right"),
            Column("QKD->PQC", "right"),
            Column("NO QKD KEY", "right"),
        ]
    )
    for gateway, doc in _gateway_documents(topology, admin, table):
        sae = doc["relay"]["sae"]
        counters = (sae["keys_relayed"], sae["relay_failures"], doc["relay"]["qkd_fallbacks"], sae["qkd_exhausted"])
        table.add_row(gateway, *(str(count) for count in counters))
    table.notes += [
        "Keys SAEs asked for (ETSI 014 enc_keys beyond the ready pool, ETSI 020) that this gateway relayed end to",
        "  end. FAILED TRIES: relay attempts that failed; each is retried with a fresh key on a fresh route, and",
        "  the SAE gets 503 only when its last attempt fails too. QKD->PQC: qkd+pqc hops sealed pqc-only as the",
        "  lane was dry. NO QKD KEY: hops this gateway refused to seal because a require-qkd lane was dry.",
    ]
    return table


def _prerelay_table(topology: Topology, admin: dict[str, Any]) -> Table:
    table = Table(
        [
            Column("PRE-RELAY"),
            Column("POOLS", "right"),
            Column("READY KEYS", "right"),
            Column("PRE-RELAYED", "right"),
            Column("FAILED, RETRIED", "right"),
            Column("NO QKD KEY", "right"),
            Column("STATE"),
        ]
    )
    for gateway, doc in _gateway_documents(topology, admin, table):
        ready = sum(pool["level"] for pool in doc["ready_pools"])
        background = doc["relay"]["prerelay"]
        pools = len(doc["ready_pools"])
        counters = (pools, ready, background["keys_relayed"], background["relay_failures"], background["qkd_exhausted"])
        table.add_row(gateway, *(str(count) for count in counters), _prerelay_state(gateway, doc, table))
    table.notes += [
        "Background work: each gateway keeps a ready pool of keys for the SAE pairs that asked for keys in the last",
        "  minute or that the topology pins (prerelay_to), so their enc_keys is answered without a relay; an idle",
        "  pair costs nothing. It never degrades a hop, and a failure costs no SAE anything: it waits (up to "
        f"{MAX_BACKOFF_S:.0f} s) and retries.",
        "POOLS: SAE pairs with a ready pool; READY KEYS: keys in them; PRE-RELAYED: keys relayed into them;",
        "  FAILED, RETRIED: pre-relays that failed; NO QKD KEY: pre-relay hops this gateway refused to seal for want",
        "  of QKD key (also other gateways').",
    ]
    return table


def _prerelay_state(gateway: str, doc: dict[str, Any], table: Table) -> str:
    prerelay = doc.get("prerelay")
    if prerelay is None:
        return "off"
    waiting = prerelay["waiting"]
    for wait in waiting:
        table.notes.append(f"{gateway} -> {wait['destination']}: {wait['reason']}")
    if not waiting:
        return "running"
    return "waiting: " + ", ".join(f"{w['destination']} in {w['retry_in_s']:.1f} s" for w in waiting)


def _gateway_documents(topology: Topology, admin: dict[str, Any], table: Table) -> list[tuple[str, dict[str, Any]]]:
    """Every gateway replica's status document by its name (``GW2``, or ``GW2/1``, ...); an unreachable
    one gets a note in ``table`` instead."""
    documents = []
    for name in (name for gateway in topology.gateways for name in gateway.replica_names()):
        doc = admin.get(name, {})
        if not _answered(doc):
            table.notes.append(f"{name}: admin unreachable: {doc.get('error', 'no admin_port')}")
            continue
        documents.append((name, doc))
    return documents


def _replica_documents(topology: Topology, gateway_id: str, admin: dict[str, Any]) -> list[dict[str, Any]]:
    """The status documents of the gateway's replicas that answered."""
    gateway = next(g for g in topology.gateways if g.id == gateway_id)
    return [doc for name in gateway.replica_names() if _answered(doc := admin.get(name, {}))]


def _answered(doc: dict[str, Any]) -> bool:
    """Whether a replica's admin listener gave its status document (none at all: no admin port)."""
    return bool(doc) and "error" not in doc


def _link_view(gateway_doc: dict[str, Any], neighbour: str) -> dict[str, Any] | None:
    links: list[dict[str, Any]] = gateway_doc.get("links", [])
    for link in links:
        if link["neighbour"] == neighbour:
            return link
    return None


@dataclass(frozen=True)
class Pull:
    """QKD key the master gateway of a link (all its replicas) pulled from the vendor KME since it started."""

    pulled_bits: int
    stock_at_start_bits: int | None  # what the vendor KMS held when the filler first asked
    uptime_s: float

    def plus(self, other: Pull) -> Pull:
        """Both replicas' pulls: the longer-running one's stock at start (it asked first)."""
        first = max(self, other, key=lambda pull: pull.uptime_s)
        return Pull(self.pulled_bits + other.pulled_bits, first.stock_at_start_bits, first.uptime_s)

    def rate_cell(self) -> str:
        """Key pulled beyond the initial stock per second, or ``from stock`` while it is not used up."""
        if self.stock_at_start_bits is None:
            return "-"
        beyond = self.pulled_bits - self.stock_at_start_bits
        return "from stock" if beyond <= 0 else f"{beyond / self.uptime_s:.0f}"


def _pulls(admin: dict[str, Any]) -> dict[str, Pull]:
    pulls: dict[str, Pull] = {}
    for doc in admin.values():
        uptime: float = doc.get("uptime_s") or 0.0 if isinstance(doc, dict) else 0.0
        for link_id, metrics in (doc.get("qkd_fillers") or {}).items() if uptime else ():
            stock, bits = metrics["vendor_stock_at_start"], doc["qkd_key_bits"]
            pull = Pull(metrics["keys_fetched"] * bits, None if stock is None else stock * bits, uptime)
            pulls[link_id] = pulls[link_id].plus(pull) if link_id in pulls else pull  # a replica's share
    return pulls
