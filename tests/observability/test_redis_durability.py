"""The gateway checks at start-up that its Redis fsyncs every write before answering, and says so loudly
when it does not: a WARNING line and ``qkdr_redis_durable`` 0 (with the settings found as labels)."""

from __future__ import annotations

import logging

import pytest

from relay.gateway.config import GatewaySettings
from relay.pki.layout import KeyDirectory
from relay.pki.redis_access import read_credentials
from relay.pool import RedisBackend, RedisConfig
from relay.pool.durability import RedisDurability, read_durability
from tests.support.admin_http import admin_url, scrape
from tests.support.local_testbed import running_testbed
from tests.support.redis_servers import RedisServer

ON_DEMAND = GatewaySettings(prerelay=False)


@pytest.mark.parametrize(
    ("appendonly", "appendfsync", "durable"),
    [("yes", "always", True), ("yes", "everysec", False), ("no", "always", False), ("yes", "no", False)],
)
async def test_the_gateway_user_reads_the_durability_settings(
    private_redis: RedisServer, topology_keys: KeyDirectory, appendonly: str, appendfsync: str, durable: bool
) -> None:
    with private_redis.client() as admin:
        admin.config_set("appendonly", appendonly)
        admin.config_set("appendfsync", appendfsync)
    credentials = read_credentials(topology_keys, "GW1")
    config = RedisConfig(private_redis.url, username=credentials.username, password=credentials.password)
    async with RedisBackend.connect(config) as backend:
        found = await read_durability(backend)
    assert found == RedisDurability(appendonly, appendfsync)
    assert found.durable is durable


async def test_a_gateway_on_a_redis_without_aof_warns_and_reports_it(
    private_redis: RedisServer, topology_keys: KeyDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    with private_redis.client() as admin:
        assert admin.config_get("appendonly") == {"appendonly": "no"}
    with caplog.at_level(logging.WARNING, logger="relay.gateway.storage"):
        async with running_testbed(topology_keys, private_redis.url, ON_DEMAND) as testbed:
            gw1 = await scrape(admin_url(testbed.gateways["GW1"].sites["admin"]))
    assert gw1.value("qkdr_redis_durable", appendonly="no", appendfsync="always") == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("gateway GW1:" in w and "NOT DURABLE (appendonly no, appendfsync always)" in w for w in warnings)


async def test_a_gateway_on_a_durable_redis_does_not_warn(
    private_redis: RedisServer, topology_keys: KeyDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    with private_redis.client() as admin:
        admin.config_set("appendonly", "yes")
    with caplog.at_level(logging.WARNING, logger="relay.gateway.storage"):
        async with running_testbed(topology_keys, private_redis.url, ON_DEMAND) as testbed:
            gw1 = await scrape(admin_url(testbed.gateways["GW1"].sites["admin"]))
    assert gw1.value("qkdr_redis_durable", appendonly="yes", appendfsync="always") == 1
    assert not [r for r in caplog.records if r.name == "relay.gateway.storage"]
