"""Fair share end to end: three real gateways, real Redis buckets, real gRPC. One greedy SAE pair is
refused with 503 saying it is over its share while another pair keeps getting keys, and a refused
request spends no QKD key (the review's case: one SAE asking number=128&size=8192 drew 111 of the 128
keys of a require-qkd lane in 0.44 s). A pair pays what its keys spend on each QKD link: one QKD key per
frame, plus each key's one-time pad where the link's ``qkd_use`` is otp (:func:`qkd_bits_spent`)."""

from __future__ import annotations

import os
import ssl
import uuid
from typing import Any

import pytest

from relay import topology
from relay.etsi014.client import KmeError
from relay.etsi014.models import KeyRequest
from relay.etsi020.client import Etsi020Client, PeerProblem
from relay.etsi020.models import AckStatus, ExtKey, ExtKeyContainer
from relay.gateway.config import GatewaySettings
from relay.gateway.fair_share import qkd_bits_spent
from relay.pki.layout import KeyDirectory
from tests.support.local_testbed import LocalTestbed, default_document, running_testbed
from tests.support.redis_servers import RedisServer

ON_DEMAND = GatewaySettings(prerelay=False)
TLS13 = ssl.TLSVersion.TLSv1_3


async def lane_levels(testbed: LocalTestbed) -> tuple[int, int]:
    """GW1's lane to GW2 and GW2's require-qkd lane to GW3: what region 1 -> region 3 keys spend."""
    gw1, gw2 = testbed.gateways["GW1"].qkd_lanes, testbed.gateways["GW2"].qkd_lanes
    return await gw1.outbound("GW2").level(), await gw2.outbound("GW3").level()


def one_time_pad_on_gw1_gw2(document: dict[str, Any]) -> dict[str, Any]:
    """Region 1 -> region 3 keys then spend their own length in QKD key on QKD-GW1-GW2, as before frames."""
    for link in document["links"]:
        if sorted(link["gateways"]) == ["GW1", "GW2"]:
            link["qkd_use"] = "otp"
    return document


def test_a_pair_pays_one_qkd_key_per_frame_and_each_pad() -> None:
    hkdf = topology.Link(("GW1", "GW2"), "qkd+pqc", "Q", frame_keys=512)
    otp = topology.Link(("GW1", "GW2"), "qkd+pqc", "Q", qkd_use="otp", frame_keys=4)
    assert qkd_bits_spent(hkdf, [256] * 16, 256) == 256  # one frame
    assert qkd_bits_spent(hkdf, [8192] * 513, 256) == 2 * 256  # two frames, key size irrelevant
    assert qkd_bits_spent(otp, [256] * 8, 256) == (2 + 8) * 256  # two frames of four, a pad each
    assert qkd_bits_spent(otp, [257, 8192], 256) == (1 + 2 + 32) * 256  # whole QKD keys: no partial pad


async def test_the_reviews_greedy_request_is_refused_whole_and_spends_no_qkd_key(
    topology_keys: KeyDirectory, private_redis: RedisServer
) -> None:
    document = one_time_pad_on_gw1_gw2(default_document())
    del document["fair_share"]  # the topology's defaults
    async with running_testbed(topology_keys, private_redis.url, ON_DEMAND, document=document) as testbed:
        before = await lane_levels(testbed)
        async with testbed.sae("SAE-R1-A") as greedy:
            with pytest.raises(KmeError) as refused:
                await greedy.get_key("SAE-R3-A", KeyRequest(number=128, size=8192))
        after = await lane_levels(testbed)
    message = refused.value.error.message
    assert refused.value.status == 503
    assert "SAE pair SAE-R1-A -> SAE-R3-A asks for more than its share of QKD key on link QKD-GW1-GW2" in message
    assert "ask for fewer keys per request" in message
    assert all(a >= b for a, b in zip(after, before, strict=True)), (before, after)  # fillers only add


async def test_a_pair_over_its_share_gets_503_while_another_pair_still_gets_keys(
    topology_keys: KeyDirectory, private_redis: RedisServer
) -> None:
    document = one_time_pad_on_gw1_gw2(default_document())
    # 20 QKD keys, no refill to speak of: 8 keys in one frame spend 9 on the otp link, so two requests fit
    document["fair_share"] = {"qkd_burst_bits": 20 * 256, "qkd_share": 0.001}
    async with running_testbed(topology_keys, private_redis.url, ON_DEMAND, document=document) as testbed:
        async with testbed.sae("SAE-R1-A") as greedy, testbed.sae("SAE-R1-B") as modest:
            for _ in range(2):
                assert len((await greedy.get_key("SAE-R3-A", KeyRequest(number=8))).keys) == 8
            with pytest.raises(KmeError) as refused:
                await greedy.get_key("SAE-R3-A", KeyRequest(number=8))
            assert len((await modest.get_key("SAE-R3-B", KeyRequest(number=8))).keys) == 8
            assert len((await greedy.get_key("SAE-R3-B", KeyRequest(number=8))).keys) == 8  # another pair of its
        counts = testbed.gateways["GW1"].metrics.counts
    message = refused.value.error.message
    assert refused.value.status == 503
    assert "SAE pair SAE-R1-A -> SAE-R3-A is over its share of QKD key on link QKD-GW1-GW2" in message, message
    assert "retry in" in message
    assert counts.sae.keys_relayed == 32  # the refused request relayed nothing


async def test_a_misspelt_fair_share_key_is_refused_with_the_nearest_one() -> None:
    document = default_document()
    document["fair_share"] = {"qkd_burst_bit": 4096}
    with pytest.raises(
        topology.TopologyError, match="fair_share: unknown key 'qkd_burst_bit'; did you mean 'qkd_burst_bits'"
    ):
        topology.parse(document)


async def test_keys_another_kms_hands_over_pay_the_same_share(
    topology_keys: KeyDirectory, private_redis: RedisServer
) -> None:
    """020 ext_keys spends our QKD key like an SAE's request: a hand-over over its pair's share is refused
    whole (503 insufficient-key-material) before any key is relayed, and nothing reaches the target."""
    document = default_document()
    document["fair_share"] = {"keys_burst": 4, "keys_per_s": 0.001}
    async with running_testbed(topology_keys, private_redis.url, ON_DEMAND, document=document) as testbed:
        url = testbed.gateways["GW1"].sites["etsi020"].url
        async with Etsi020Client(url, testbed.keys.client_context("KME-R1-A", minimum=TLS13)) as kme:
            fits = tuple(ExtKey(str(uuid.uuid4()), os.urandom(32)) for _ in range(4))
            acks = await kme.ext_keys(ExtKeyContainer(fits, "ENC-X1", ("SAE-R3-A",)))
            assert acks is not None and acks[0].ack_status is AckStatus.RELAYED
            over = tuple(ExtKey(str(uuid.uuid4()), os.urandom(32)) for _ in range(2))
            with pytest.raises(PeerProblem) as refused:
                await kme.ext_keys(ExtKeyContainer(over, "ENC-X1", ("SAE-R3-A",)))
        hops_sent = testbed.gateways["GW1"].metrics.counts.hops_sent
        async with testbed.sae("SAE-R3-A") as slave:
            with pytest.raises(KmeError):
                await slave.get_key_with_ids("ENC-X1", [over[0].key_id])
    assert refused.value.status == 503 and refused.value.problem is not None
    assert refused.value.problem["type"].endswith("/insufficient-key-material")
    assert "over its share of relayed keys" in str(refused.value.problem["details"]), refused.value.problem
    assert hops_sent == 4  # GW1 sealed a hop for each of the four that fitted, none for the refused two
