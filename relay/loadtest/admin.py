"""Counters and levels from the loopback admin listeners, sampled once a second during a run.

Gateways (``/status``): relay counters, pre-relay counters, ready-pool levels, QKD lane levels and the
QKD fillers' counters; on request (before and after a run, not every second: the text is larger),
their hop-frame counters by neighbour from ``/metrics``. Vendor KMS simulators (``/admin/links``):
stored key per QKD link. Levels and counters only; the admin listeners carry no key material.
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
    gateways: dict[str, dict[str, Any]]  # gateway ID -> /status document, or {"error": ...}
    kms: dict[str, dict[str, Any]]  # vendor KMS ID -> /admin/links document, or {"error": ...}
    frames: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # gateway -> neighbour -> counts

    def relay(self, gateway: str) -> dict[str, int]:
        return self.gateways.get(gateway, {}).get("relay") or {}

    def prerelayed(self, gateway: str) -> int:
        return int((self.gateways.get(gateway, {}).get("prerelay") or {}).get("keys_prerelayed", 0))

    def ready_level(self, master: str, slave: str, gateway: str) -> int | None:
        for pool in self.gateways.get(gateway, {}).get("ready_pools", []):
            if pool["name"] == f"ready:{master}->{slave}":
                return int(pool["level"])
        return None

    def ready_high(self, gateway: str) -> int | None:
        pools = self.gateways.get(gateway, {}).get("ready_pools", [])
        return int(pools[0]["high"]) if pools else None

    def fillers(self) -> dict[str, tuple[dict[str, int], int]]:
        """QKD link ID -> (its master gateway's filler counters, bits per QKD key)."""
        found = {}
        for doc in self.gateways.values():
            for link_id, metrics in (doc.get("qkd_fillers") or {}).items():
                found[link_id] = (metrics, int(doc.get("qkd_key_bits", 0)))
        return found

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


def frame_counters(metrics_text: str) -> dict[str, dict[str, int]]:
    """Neighbour -> frames sealed for it, keys in them and QKD bits they spent (:data:`FRAME_SAMPLES`)."""
    counts: dict[str, dict[str, int]] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name in FRAME_SAMPLES:
                counts.setdefault(sample.labels["neighbour"], {})[FRAME_SAMPLES[sample.name]] = int(sample.value)
    return counts


class AdminClient:
    def __init__(self, gateway_admin: dict[str, str], kms_admin: dict[str, str]) -> None:
        self._gateways = gateway_admin
        self._kms = kms_admin

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
        return Snapshot(at_s, gateways, kms, counts)

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
