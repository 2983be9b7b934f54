"""/metrics on the gateway and simulator admin listeners: parseable, complete, and consistent with /status."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from relay.etsi014.models import KeyRequest
from relay.gateway.config import GatewaySettings
from relay.pki.layout import KeyDirectory
from tests.support.admin_http import admin_url, get, get_json, scrape
from tests.support.local_testbed import LocalTestbed, running_testbed
from tests.support.redis_servers import RedisServer

ON_DEMAND = GatewaySettings(prerelay=False)

GATEWAY_FAMILIES = {
    "qkdr_up",
    "qkdr_redis_up",
    "qkdr_qkd_pool_keys",
    "qkdr_qkd_pool_low_watermark_keys",
    "qkdr_qkd_pool_high_watermark_keys",
    "qkdr_qkd_pool_alarm",
    "qkdr_qkd_pool_empty",
    "qkdr_ready_pool_keys",
    "qkdr_ready_pool_alarm",
    "qkdr_qkd_bits_consumed",
    "qkdr_qkd_bits_fetched",
    "qkdr_relay_keys_relayed",
    "qkdr_relay_failures",
    "qkdr_relay_hop_retries",
    "qkdr_relay_qkd_fallbacks",
    "qkdr_relay_qkd_exhausted",
    "qkdr_relay_keys_voided",
    "qkdr_relay_hop_latency_seconds",
    "qkdr_relay_latency_seconds",
    "qkdr_northbound_requests",
    "qkdr_errors",
    "qkdr_redis_unavailable",
}


@pytest.fixture
async def testbed(topology_keys: KeyDirectory, private_redis: RedisServer) -> AsyncIterator[LocalTestbed]:
    async with running_testbed(topology_keys, private_redis.url, ON_DEMAND) as running:
        yield running


async def _relay(testbed: LocalTestbed, number: int) -> None:
    async with testbed.sae("SAE-R1-A") as master, testbed.sae("SAE-R3-A") as slave:
        issued = await master.get_key("SAE-R3-A", KeyRequest(number=number))
        await slave.get_key_with_ids("SAE-R1-A", [k.key_id for k in issued.keys])


async def test_gateway_metrics_after_a_relay(testbed: LocalTestbed) -> None:
    await _relay(testbed, 2)  # GW1 -> GW2 (qkd+pqc) -> GW3 (require-qkd)
    gw1 = await scrape(admin_url(testbed.gateways["GW1"].sites["admin"]))
    assert GATEWAY_FAMILIES <= set(gw1.families), GATEWAY_FAMILIES - set(gw1.families)
    assert gw1.value("qkdr_up", gateway="GW1") == 1
    assert gw1.value("qkdr_redis_up") == 1
    assert gw1.value("qkdr_relay_keys_relayed_total", origin="sae") >= 2
    assert gw1.value("qkdr_relay_latency_seconds_count", target_gateway="GW3") >= 2
    # the request's two keys leave in one frame: one confirmation, one 256-bit QKD key (qkd_use hkdf)
    assert gw1.value("qkdr_relay_hop_latency_seconds_count", neighbour="GW2", hop="0") == 1
    assert gw1.value("qkdr_relay_frames_total", neighbour="GW2") == 1
    assert gw1.value("qkdr_relay_frame_keys_total", neighbour="GW2") == 2
    assert gw1.value("qkdr_relay_frame_qkd_bits_total", neighbour="GW2") == 256
    assert gw1.value("qkdr_relay_latency_seconds_sum", target_gateway="GW3") > 0
    consumed = gw1.value("qkdr_qkd_bits_consumed_total", link="QKD-GW1-GW2", neighbour="GW2", sender="master")
    assert consumed == 256
    assert gw1.value("qkdr_qkd_bits_fetched_total", link="QKD-GW1-GW2") > 0  # GW1 is the link's master
    assert (
        gw1.total(
            "qkdr_northbound_requests_total",
            api="etsi014",
            endpoint="/api/v1/keys/{slave_SAE_ID}/enc_keys",
            status="200",
        )
        >= 1
    )
    assert gw1.all("qkdr_qkd_pool_alarm") and all(s.value in (0, 1) for s in gw1.all("qkdr_qkd_pool_alarm"))
    assert gw1.value("qkdr_ready_pool_keys", master_sae="SAE-R1-A", slave_sae="SAE-R3-A") == 0
    assert gw1.value("qkdr_ready_pool_alarm", master_sae="SAE-R1-A", slave_sae="SAE-R3-A") == 0  # no pre-relay

    gw2 = await scrape(admin_url(testbed.gateways["GW2"].sites["admin"]))
    # GW2 passes the frame's two keys on together: they coalesce into one frame to GW3
    assert gw2.value("qkdr_relay_hop_latency_seconds_count", neighbour="GW3", hop="1") == 1
    assert gw2.value("qkdr_relay_hops_received_total") == 2
    assert gw2.value("qkdr_relay_frames_received_total") == 1
    # GW2 opens hop 0 with GW1's key (sender master) and seals hop 1 with its own lane of QKD-GW2-GW3
    assert gw2.value("qkdr_qkd_bits_consumed_total", link="QKD-GW1-GW2", sender="master") == 256
    gw3 = await scrape(admin_url(testbed.gateways["GW3"].sites["admin"]))
    assert (
        gw3.total(
            "qkdr_northbound_requests_total",
            api="etsi014",
            endpoint="/api/v1/keys/{master_SAE_ID}/dec_keys",
            status="200",
        )
        >= 1
    )
    assert gw3.total("qkdr_relayed_store_events_total", event="delivered") >= 2


async def test_lane_levels_match_the_status_document(testbed: LocalTestbed) -> None:
    await _relay(testbed, 1)
    url = admin_url(testbed.gateways["GW2"].sites["admin"])
    for _ in range(20):  # the fillers keep running: retry until no round landed between the two reads
        status_code, status = await get_json(f"{url}/status")
        assert status_code == 200
        metrics = await scrape(url)
        again = (await get_json(f"{url}/status"))[1]
        if [link["qkd_pools"] for link in status["links"]] == [link["qkd_pools"] for link in again["links"]]:
            break
    expected = {}
    for link in status["links"]:
        for pool in link["qkd_pools"]:
            _, link_id, sender = pool["name"].removesuffix("-sends").split(":")
            expected[(link_id, sender)] = (pool["level"], pool["low"], pool["high"], pool["state"] != "ok")
    got = {
        (s.labels["link"], s.labels["sender"]): (
            int(s.value),
            int(metrics.value("qkdr_qkd_pool_low_watermark_keys", **s.labels)),
            int(metrics.value("qkdr_qkd_pool_high_watermark_keys", **s.labels)),
            metrics.value("qkdr_qkd_pool_alarm", **s.labels) == 1,
        )
        for s in metrics.all("qkdr_qkd_pool_keys")
    }
    assert got == expected and len(got) == 4  # GW2 has two QKD links, two lanes each
    directions = {(s.labels["link"], s.labels["direction"]) for s in metrics.all("qkdr_qkd_pool_keys")}
    assert ("QKD-GW2-GW3", "outbound") in directions and ("QKD-GW2-GW3", "inbound") in directions


async def test_empty_lane_raises_the_alarm_and_counts_the_fallback(testbed: LocalTestbed) -> None:
    gw1 = testbed.gateways["GW1"]
    testbed.kms["KMS-R1"].kms.set_qber("QKD-GW1-GW2", 0.3)  # halted: the filler cannot refill
    lane = gw1.qkd_lanes.outbound("GW2")
    while await lane.level():
        await lane.take(1)
    await _relay(testbed, 1)
    metrics = await scrape(admin_url(gw1.sites["admin"]))
    labels = {"link": "QKD-GW1-GW2", "sender": "master"}
    assert metrics.value("qkdr_qkd_pool_alarm", **labels) == 1
    assert metrics.value("qkdr_qkd_pool_empty", **labels) == 1
    assert metrics.value("qkdr_qkd_pool_keys", **labels) == 0
    assert metrics.value("qkdr_relay_qkd_fallbacks_total") >= 1
    assert metrics.value("qkdr_qkd_pool_exhausted_total", **labels) >= 1
    kms = await scrape(testbed.kms["KMS-R1"].admin_url)
    assert kms.value("qkdr_kms_link_halted", link="QKD-GW1-GW2") == 1


async def test_kms_simulator_metrics_and_health(testbed: LocalTestbed) -> None:
    running = testbed.kms["KMS-R2"]
    metrics = await scrape(running.admin_url)
    links = {s.labels["link"] for s in metrics.all("qkdr_kms_link_stored_bits")}
    assert links == {r.link.id for r in running.kms.links()} and links
    for link in links:
        assert metrics.value("qkdr_kms_link_halted", link=link) == 0
        assert (
            0
            <= metrics.value("qkdr_kms_link_stored_bits", link=link)
            <= metrics.value("qkdr_kms_link_capacity_bits", link=link)
        )
        assert metrics.value("qkdr_kms_link_rate_bits_per_second", link=link) > 0
        assert 0 <= metrics.value("qkdr_kms_link_qber", link=link) < 0.5
    # the gateways' fillers asked the KMEs for status and keys during startup
    assert metrics.total("qkdr_kms_requests_total", status="200") >= 1
    status, body = await get_json(f"{running.admin_url}/healthz")
    assert status == 200 and body["status"] == "ok" and body["halted_links"] == []
    running.kms.set_qber(sorted(links)[0], 0.4)
    status, body = await get_json(f"{running.admin_url}/healthz")
    assert status == 200 and body["halted_links"] == [sorted(links)[0]]
    assert (await scrape(running.admin_url)).value("qkdr_kms_link_halted", link=sorted(links)[0]) == 1


async def test_metrics_survive_redis_outage(testbed: LocalTestbed, private_redis: RedisServer) -> None:
    url = admin_url(testbed.gateways["GW1"].sites["admin"])
    private_redis.stop()
    status, _, _ = await get(f"{url}/healthz")
    assert status == 503
    metrics = await scrape(url)
    assert metrics.value("qkdr_redis_up") == 0
    assert metrics.all("qkdr_qkd_pool_keys") == []  # levels are unknown, not zero
    assert metrics.value("qkdr_redis_unavailable_total") >= 1
    assert metrics.value("qkdr_errors_total", component="redis", type="unavailable") >= 1
