"""qkdr_certificate_expiry_seconds at the gateway's admin /metrics: its own certificate and the CA's."""

from __future__ import annotations

import datetime as dt

from relay.gateway.config import GatewaySettings
from relay.pki.layout import KeyDirectory
from tests.support.admin_http import admin_url, scrape
from tests.support.local_testbed import running_testbed
from tests.support.redis_servers import RedisServer

ON_DEMAND = GatewaySettings(prerelay=False)


def _seconds_left(keys: KeyDirectory, name: str) -> float:
    remaining = keys.certificate(name).not_valid_after_utc - dt.datetime.now(dt.timezone.utc)
    return remaining.total_seconds()


async def test_each_loaded_certificate_reports_its_seconds_to_expiry(
    topology_keys: KeyDirectory, private_redis: RedisServer
) -> None:
    async with running_testbed(topology_keys, private_redis.url, ON_DEMAND) as testbed:
        before = {name: _seconds_left(topology_keys, name) for name in ("GW2", "ca")}
        metrics = await scrape(admin_url(testbed.gateways["GW2"].sites["admin"]))
        after = {name: _seconds_left(topology_keys, name) for name in ("GW2", "ca")}
    samples = {s.labels["subject"]: s.value for s in metrics.all("qkdr_certificate_expiry_seconds")}
    ca_subject = topology_keys.certificate("ca").subject.rfc4514_string()
    assert set(samples) == {"CN=GW2", ca_subject}
    assert after["GW2"] <= samples["CN=GW2"] <= before["GW2"]  # the scrape happened between the two readings
    assert after["ca"] <= samples[ca_subject] <= before["ca"]
    assert 0 < samples["CN=GW2"] <= 397 * 86400 < samples[ca_subject]
