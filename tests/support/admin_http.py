"""Scraping helpers: fetch an admin endpoint and parse Prometheus text with prometheus_client's parser."""

from __future__ import annotations

from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from relay.http_server import RunningSite


def admin_url(site: RunningSite) -> str:
    return f"http://{site.host}:{site.port}"


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


class Scrape:
    """Samples of one scrape, by sample name: ``scrape.value("qkdr_relay_keys_relayed_total")``."""

    def __init__(self, text: str) -> None:
        self.families = {family.name: family for family in text_string_to_metric_families(text)}
        self.samples = [sample for family in self.families.values() for sample in family.samples]

    def all(self, name: str, **labels: str) -> list[Any]:
        return [s for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, name: str, **labels: str) -> float:
        found = self.all(name, **labels)
        assert len(found) == 1, f"{name} {labels}: {len(found)} samples"
        return found[0].value

    def total(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.all(name, **labels))


async def scrape(url: str) -> Scrape:
    status, content_type, text = await get(f"{url}/metrics")
    assert status == 200 and content_type.startswith("text/plain"), (status, content_type)
    return Scrape(text)
