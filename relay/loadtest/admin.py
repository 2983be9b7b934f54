"""Counters and levels from the loopback admin listeners, sampled once a second during a run.

Gateways (``/status``): relay counters, pre-relay counters, ready-pool levels, QKD lane levels and the
QKD fillers' counters; on request (before and after a run, not every second: the text is larger),
their hop-frame counters by neighbour from ``/metrics``. Vendor KMS simulators (``/admin/links``):
stored key per QKD link. Levels and counters only; the admin listeners carry no key material.

A gateway with replicas is read at each replica's own admin port, and its documents are kept per replica
(``GW2/1``, ``GW2/2``). Asked about a gateway, a snapshot sums its replicas' counters (each counts its own
work) and reads levels from any replica that answered (ready pools and QKD lanes live in the shared Redis).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from relay.testbed.status import get_admin_json

ADMIN_TIMEOUT_S = 3.0
FRAME_SAMPLES = {
    "qkdr_relay_frames_total": "frames",
    "qkdr_relay_frame_keys_total": "keys",
    "qkdr_relay_frame_qkd_bits_total": "qkd_bits",
}
"""The gateway's hop-frame counters (by ``neighbour``) and the names the load test gives them."""


@dataclass(frozen=True)
class Snapshot:
    at_s: float  # on the campaign clock
    gateways: dict[str, dict[str, Any]]  # gateway (replica) name -> /status document, or {"error": ...}
    kms: dict[str, dict[str, Any]]  # vendor KMS ID -> /admin/links document, or {"error": ...}
    frames: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # sender -> neighbour -> counts
    replicas: dict[str, tuple[str, ...]] = field(default_factory=dict)  # gateway ID -> its replicas' names

    def relay(self, gateway: str) -> dict[str, int]:
        """Relay counters of a gateway (summed over its replicas) or of one replica."""
        return _summed([doc.get("relay") or {} for doc in self._documents(gateway)])

    def prerelayed(self, gateway: str) -> int:
        return sum(int((doc.get("prerelay") or {}).get("keys_prerelayed", 0)) for doc in self._documents(gateway))

    def ready_level(self, master: str, slave: str, gateway: str) -> int | None:
        for doc in self._documents(gateway):
            for pool in doc.get("ready_pools", []):
                if pool["name"] == f"ready:{master}->{slave}":
                    return int(pool["level"])
        return None

    def ready_high(self, gateway: str) -> int | None:
        pools = [pool for doc in self._documents(gateway) for pool in doc.get("ready_pools", [])]
        return int(pools[0]["high"]) if pools else None

    def fillers(self) -> dict[str, tuple[dict[str, int], int]]:
        """QKD link ID -> (its master gateway's filler counters, summed over the replicas that ran the
        filler, bits per QKD key)."""
        counters: dict[str, list[dict[str, int]]] = {}
        bits: dict[str, int] = {}
        for doc in self.gateways.values():
            for link_id, metrics in (doc.get("qkd_fillers") or {}).items():
                counters.setdefault(link_id, []).append(metrics)
                bits[link_id] = int(doc.get("qkd_key_bits", 0))
        return {link_id: (_summed(found), bits[link_id]) for link_id, found in counters.items()}

    def lane_levels(self, link_id: str) -> int | None:
        """QKD keys held in both lanes of ``link_id`` at its master gateway (the one running its filler)."""
        for doc in self.gateways.values():
            if link_id in (doc.get("qkd_fillers") or {}):
                for link in doc.get("links", []):
                    if link.get("qkd_link") == link_id:
                        return sum(int(pool["level"]) for pool in link["qkd_pools"])
        return None

    def vendor_links(self) -> dict[str, dict[str, Any]]:
        return {link["id"]: link for doc in self.kms.values() for link in doc.get("links", [])}

    def to_json(self) -> dict[str, Any]:
        return {"at_s": round(self.at_s, 3), "gateways": self.gateways, "kms": self.kms, "frames": self.frames}

    def _documents(self, gateway: str) -> list[dict[str, Any]]:
        """The documents of the gateway's replicas (or of the one replica named) that answered."""
        names = self.replicas.get(gateway, (gateway,))
        return [doc for name in names if "error" not in (doc := self.gateways.get(name, {}))]


NOT_COUNTERS = frozenset({"vendor_stock_at_start"})
"""Integers in the counter documents that are levels seen once, not counts to add up over replicas."""


def _summed(counters: list[dict[str, Any]]) -> dict[str, Any]:
    """Integer counters added up; anything else (:data:`NOT_COUNTERS`, None, nested documents) taken from
    the first document that has it."""
    total: dict[str, Any] = {}
    for found in counters:
        for name, value in found.items():
            was = total.get(name)
            if name not in NOT_COUNTERS and type(value) is int and type(was) is int:
                total[name] = was + value
            elif was is None:
                total[name] = value
    return total


def frame_counters(metrics_text: str) -> dict[str, dict[str, int]]:
    """Neighbour -> frames sealed for it, keys in them and QKD bits they spent (:data:`FRAME_SAMPLES`)."""
    counts: dict[str, dict[str, int]] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name in FRAME_SAMPLES:
                counts.setdefault(sample.labels["neighbour"], {})[FRAME_SAMPLES[sample.name]] = int(sample.value)
    return counts


class AdminClient:
    def __init__(
        self,
        gateway_admin: dict[str, str],
        kms_admin: dict[str, str],
        replicas: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self._gateways = gateway_admin  # gateway (replica) name -> its admin base URL
        self._kms = kms_admin
        self._replicas = replicas or {}  # gateway ID -> its replicas' names

    async def gateways(self) -> dict[str, dict[str, Any]]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ADMIN_TIMEOUT_S)) as session:
            return await self._fetch(session, self._gateways, "/status")

    async def snapshot(
        self, at_s: float, session: aiohttp.ClientSession | None = None, frames: bool = False
    ) -> Snapshot:
        """Status documents now; with ``frames``, also each gateway's hop-frame counters (empty when its
        ``/metrics`` cannot be read)."""
        if session is None:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ADMIN_TIMEOUT_S)) as own:
                return await self.snapshot(at_s, own, frames)
        gateways, kms = await asyncio.gather(
            self._fetch(session, self._gateways, "/status"), self._fetch(session, self._kms, "/admin/links")
        )
        counts = {}
        if frames:
            texts = await asyncio.gather(*(self._text(session, url + "/metrics") for url in self._gateways.values()))
            counts = {gw: frame_counters(text) for gw, text in zip(self._gateways, texts, strict=True) if text}
        return Snapshot(at_s, gateways, kms, counts, self._replicas)

    async def _text(self, session: aiohttp.ClientSession, url: str) -> str:
        try:
            async with session.get(url) as response:
                return await response.text() if response.status == 200 else ""
        except (aiohttp.ClientError, TimeoutError):
            return ""

    async def _fetch(self, session: aiohttp.ClientSession, urls: dict[str, str], path: str) -> dict[str, Any]:
        answers = await asyncio.gather(*(get_admin_json(session, url + path) for url in urls.values()))
        return dict(zip(urls, answers, strict=True))


@dataclass
class Sampler:
    """Takes a snapshot every ``interval_s`` until stopped; the samples feed the key-rate statistics."""

    admin: AdminClient
    clock: Callable[[], float]  # seconds on the campaign clock
    interval_s: float = 1.0
    samples: list[Snapshot] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ADMIN_TIMEOUT_S)) as session:
            next_at = time.monotonic()
            while not stop.is_set():
                self.samples.append(await self.admin.snapshot(self.clock(), session))
                next_at += self.interval_s
                try:
                    await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
                except TimeoutError:
                    pass
            self.samples.append(await self.admin.snapshot(self.clock(), session))
