"""ETSI 020 at the gateways: a third-party KME hands keys over, our gateway hands keys to another 020 KMS.

Everything is real: TLS 1.3 with the topology's certificates, the relay over gRPC, Redis, and a callback
server standing in for the calling KME's ``ext_keys/ack`` endpoint.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from relay.domain import Key
from relay.etsi014.client import KmeError
from relay.etsi020.client import Etsi020Client, PeerProblem
from relay.etsi020.models import (
    MAX_BODY_BYTES,
    MAX_ITEMS,
    MAX_KEY_BYTES,
    AckContainer,
    AckStatus,
    ExtKey,
    ExtKeyContainer,
    VoidContainer,
    parse_ack_containers,
)
from relay.gateway.config import GatewaySettings
from relay.gateway.handover import ACK_PATH
from relay.gateway.service import start_gateway
from relay.http_server import start_site
from relay.pki.layout import KeyDirectory
from relay.strict_json import parse_strict_json
from tests.support.local_testbed import LocalTestbed, running_testbed
from tests.support.redis_servers import RedisServer

TLS13 = ssl.TLSVersion.TLSv1_3
FOREIGN_KME = "KME-R1-A"  # any certificate with the kme role stands in for a third-party KMS
FOREIGN_SAE = "ENC-X1"  # the initiator lives in the foreign domain, unknown to our topology


@pytest.fixture
async def testbed(topology_keys: KeyDirectory, private_redis: RedisServer) -> AsyncIterator[LocalTestbed]:
    async with running_testbed(topology_keys, private_redis.url, GatewaySettings(prerelay=False)) as running:
        yield running


def client_as(testbed: LocalTestbed, entity: str, url: str) -> Etsi020Client:
    """An 020 client presenting ``entity``'s certificate (TLS 1.3) to the 020 server at ``url``."""
    return Etsi020Client(url, testbed.keys.client_context(entity, minimum=TLS13))


def foreign_client(testbed: LocalTestbed, gateway_id: str) -> Etsi020Client:
    return client_as(testbed, FOREIGN_KME, testbed.gateways[gateway_id].sites["etsi020"].url)


async def hand_over_gw1_to_gw3(testbed: LocalTestbed) -> list[Key]:
    """GW1 plays the handing KMS and GW3's 020 surface the receiving one, over real TLS both ways: two fresh
    keys from SAE-R1-A for SAE-R3-B, every one acked ``relayed``."""
    keys = [Key(str(uuid.uuid4()), os.urandom(32)) for _ in range(2)]
    async with client_as(testbed, "GW1", testbed.gateways["GW3"].sites["etsi020"].url) as peer:
        result = await testbed.gateways["GW1"].handover.hand_over(
            peer, "GW3", "SAE-R1-A", "SAE-R3-B", keys, timeout_s=10
        )
    assert result.statuses == {key.key_id: AckStatus.RELAYED for key in keys}
    return keys


def fresh_keys(number: int) -> tuple[ExtKey, ...]:
    return tuple(ExtKey(str(uuid.uuid4()), os.urandom(32)) for _ in range(number))


async def test_versions_advertise_the_synchronous_mode(testbed: LocalTestbed) -> None:
    async with foreign_client(testbed, "GW1") as client:
        versions = await client.versions()
    assert versions.versions == ("v1",) and "synchronous_mode" in versions.capabilities


async def test_async_ext_keys_are_relayed_then_acked_and_served_to_the_target_sae(testbed: LocalTestbed) -> None:
    received: asyncio.Queue[list] = asyncio.Queue()

    async def ack_endpoint(request: web.Request) -> web.Response:
        await received.put(list(parse_ack_containers(parse_strict_json(await request.read()))))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/kmapi/v1/ext_keys/ack", ack_endpoint)
    callback = await start_site(app, "127.0.0.1", 0, testbed.keys.server_context(FOREIGN_KME, minimum=TLS13))
    keys = fresh_keys(3)
    try:
        async with foreign_client(testbed, "GW1") as client:
            container = ExtKeyContainer(
                keys,
                FOREIGN_SAE,
                ("SAE-R3-A",),
                ack_callback_url=f"{callback.url}/kmapi/v1/ext_keys/ack",
                extension_optional={"E32473_qos_session": "e73d9abe"},
            )
            assert await client.ext_keys(container) is None  # 202: the acks follow
            acks = await asyncio.wait_for(received.get(), timeout=10)
    finally:
        await callback.stop()
    assert [(a.ack_status, set(a.key_ids)) for a in acks] == [(AckStatus.RELAYED, {k.key_id for k in keys})]
    async with testbed.sae("SAE-R3-A") as slave:
        fetched = await slave.get_key_with_ids(FOREIGN_SAE, [k.key_id for k in keys])
    assert [(k.key_id, k.key) for k in fetched.keys] == [(k.key_id, k.value) for k in keys]


async def test_sync_ext_keys_to_a_local_sae_and_key_id_reuse_fails(testbed: LocalTestbed) -> None:
    keys = fresh_keys(1)
    async with foreign_client(testbed, "GW3") as client:
        acks = await client.ext_keys(ExtKeyContainer(keys, FOREIGN_SAE, ("SAE-R3-B",)))
        again = await client.ext_keys(ExtKeyContainer(keys, FOREIGN_SAE, ("SAE-R3-B",)))
    assert acks is not None and acks[0].ack_status is AckStatus.RELAYED
    assert again is not None and again[0].ack_status is AckStatus.FAILED  # a key_ID enters a store once
    async with testbed.sae("SAE-R3-B") as slave:
        assert (await slave.get_key_with_ids(FOREIGN_SAE, [keys[0].key_id])).keys[0].key == keys[0].value


async def test_unknown_target_is_refused_with_400_and_nothing_is_kept(testbed: LocalTestbed) -> None:
    async with foreign_client(testbed, "GW1") as client:
        with pytest.raises(PeerProblem) as refused:
            await client.ext_keys(ExtKeyContainer(fresh_keys(1), FOREIGN_SAE, ("NOBODY",)))
    assert refused.value.status == 400
    assert refused.value.problem["type"].endswith("/key-routing-error")
    assert testbed.gateways["GW1"].metrics.counts.hops_sent == 0


async def test_void_withdraws_relayed_keys_and_all_confirmation_voids_the_rest(testbed: LocalTestbed) -> None:
    keys = fresh_keys(3)
    async with foreign_client(testbed, "GW1") as client:
        await client.ext_keys(ExtKeyContainer(keys, FOREIGN_SAE, ("SAE-R3-A",)))
        voided = await client.void(VoidContainer((keys[0].key_id,), FOREIGN_SAE, ("SAE-R3-A",)))
        rest = await client.void(VoidContainer((), FOREIGN_SAE, ("SAE-R3-A",), all_confirmation=True))
        nothing_left = await client.void(VoidContainer((keys[0].key_id,), FOREIGN_SAE, ("SAE-R3-A",)))
    assert voided is not None and [(a.ack_status, a.key_ids) for a in voided] == [(AckStatus.VOIDED, (keys[0].key_id,))]
    assert rest is not None and set(rest[0].key_ids) == {keys[1].key_id, keys[2].key_id}
    assert nothing_left is not None and nothing_left[0].ack_status is AckStatus.FAILED_TO_VOID
    async with testbed.sae("SAE-R3-A") as slave:
        with pytest.raises(KmeError) as gone:
            await slave.get_key_with_ids(FOREIGN_SAE, [keys[1].key_id])
    assert gone.value.status == 400


async def test_a_void_of_key_ids_never_handed_over_is_key_not_present(testbed: LocalTestbed) -> None:
    handed, never = fresh_keys(1)[0], str(uuid.uuid4())
    async with foreign_client(testbed, "GW1") as client:
        await client.ext_keys(ExtKeyContainer((handed,), FOREIGN_SAE, ("SAE-R3-A",)))
        async with testbed.sae("SAE-R3-A") as slave:
            await slave.get_key_with_ids(FOREIGN_SAE, [handed.key_id])  # delivered: can no longer be voided
        acks = await client.void(VoidContainer((handed.key_id, never), FOREIGN_SAE, ("SAE-R3-A",)))
    assert acks is not None
    assert [(a.ack_status, a.key_ids) for a in acks] == [
        (AckStatus.FAILED_TO_VOID, (handed.key_id,)),
        (AckStatus.KEY_NOT_PRESENT, (never,)),
    ]


async def test_our_gateway_hands_keys_to_another_020_kms_and_collects_its_acks(testbed: LocalTestbed) -> None:
    keys = await hand_over_gw1_to_gw3(testbed)
    async with testbed.sae("SAE-R3-B") as slave:
        fetched = await slave.get_key_with_ids("SAE-R1-A", [key.key_id for key in keys])
    assert [k.key for k in fetched.keys] == [k.key for k in keys]


async def test_a_repeated_ack_is_answered_200_again_also_by_a_restarted_gateway(
    testbed: LocalTestbed, private_redis: RedisServer
) -> None:
    """The peer's retry after our 200 got lost: a 400 key-not-present would make it void a key our
    master may already hold. Hand-over state is in Redis, so a restarted gateway answers the same."""
    gw1 = testbed.gateways["GW1"]
    keys = await hand_over_gw1_to_gw3(testbed)
    repeated = [AckContainer(tuple(k.key_id for k in keys), AckStatus.RELAYED, "SAE-R1-A", ("SAE-R3-B",))]
    async with client_as(testbed, "GW3", gw1.sites["etsi020"].url) as as_gw3:
        await as_gw3.post_acks(f"{gw1.sites['etsi020'].url}{ACK_PATH}", repeated)  # 200, or PeerProblem
    plan = gw1.plan
    await testbed.stop_gateway("GW1")
    settings = GatewaySettings(prerelay=False, redis_url=private_redis.url)
    testbed.gateways["GW1"] = restarted = await start_gateway(plan, settings, testbed.keys)
    url = restarted.sites["etsi020"].url
    async with client_as(testbed, "GW3", url) as as_gw3, client_as(testbed, FOREIGN_KME, url) as foreign:
        await as_gw3.post_acks(f"{url}{ACK_PATH}", repeated)
        with pytest.raises(PeerProblem) as refused:  # another KMS acking our hand-over to GW3 is not GW3
            await foreign.post_acks(f"{url}{ACK_PATH}", repeated)
    assert refused.value.status == 400 and refused.value.problem["type"].endswith("/key-not-present")


async def test_acks_for_keys_we_never_handed_over_are_key_not_present(testbed: LocalTestbed) -> None:
    async with foreign_client(testbed, "GW1") as client:
        with pytest.raises(PeerProblem) as refused:
            await client.post_acks(
                f"{testbed.gateways['GW1'].sites['etsi020'].url}/kmapi/v1/ext_keys/ack",
                [AckContainer((str(uuid.uuid4()),), AckStatus.RELAYED, FOREIGN_SAE, ("SAE-R3-A",))],
            )
    assert refused.value.status == 400 and refused.value.problem["type"].endswith("/key-not-present")


# ----- conformance with the V1.1.1 OpenAPI (issue 13, section 1) ------------------------------------


@dataclass(frozen=True)
class RawAnswer:
    status: int
    content_type: str
    body: Any


async def raw_post(testbed: LocalTestbed, gateway_id: str, path: str, payload: Any = None, **kwargs: Any) -> RawAnswer:
    """What a careless or hostile KME sends, below our client (which only sends valid containers)."""
    context = testbed.keys.client_context(FOREIGN_KME, minimum=TLS13)
    url = testbed.gateways[gateway_id].sites["etsi020"].url + path
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        async with session.post(url, json=payload, **kwargs) as response:
            raw = await response.read()
            return RawAnswer(response.status, response.content_type, parse_strict_json(raw) if raw else None)


def ack_with_status(status: Any) -> list[dict[str, Any]]:
    return [
        {
            "key_id_container": [{"key_id": str(uuid.uuid4())}],
            "ack_status": status,
            "initiator_sae_id": FOREIGN_SAE,
            "target_sae_ids": ["SAE-R3-A"],
        }
    ]


@pytest.mark.parametrize("status", [{"relayed": True}, ["relayed"], 7, "delivered"])
async def test_an_ack_status_that_is_not_one_of_the_five_is_a_400_ack_not_understood(
    testbed: LocalTestbed, status: Any
) -> None:
    answer = await raw_post(testbed, "GW1", ACK_PATH, ack_with_status(status))
    assert answer.status == 400
    assert answer.body["type"] == "https://qkd.etsi.org/gs020-interop-kms/ack-not-understood"
    assert answer.body["status"] == 400
    assert answer.body["details"]["ack_not_understood"] == "cannot parse the request: ack_status breaks the schema"
    assert set(answer.body["details"]) == {"ack_not_understood", "ack_status"}


@pytest.mark.parametrize(
    ("path", "payload", "status"),
    [
        ("/kmapi/v1/ext_keys", {"initiator_sae_id": FOREIGN_SAE}, 400),
        (ACK_PATH, ack_with_status("relayed"), 400),
        ("/kmapi/v1/ext_keys/void", {"key_ids": [], "initiator_sae_id": FOREIGN_SAE, "target_sae_ids": ["X"]}, 400),
    ],
)
async def test_errors_are_application_json_with_the_rfc_9457_members(
    testbed: LocalTestbed, path: str, payload: Any, status: int
) -> None:
    answer = await raw_post(testbed, "GW1", path, payload)
    assert (answer.status, answer.content_type) == (status, "application/json")  # the spec's Table 1
    assert answer.body["status"] == status and answer.body["type"].startswith("https://qkd.etsi.org/gs020-interop-kms/")
    assert isinstance(answer.body["title"], str) and all(isinstance(v, str) for v in answer.body["details"].values())


async def test_a_body_larger_than_any_valid_request_is_a_400_not_an_undocumented_413(testbed: LocalTestbed) -> None:
    largest = ExtKeyContainer(
        tuple(ExtKey(str(uuid.uuid4()), os.urandom(MAX_KEY_BYTES)) for _ in range(MAX_ITEMS)), FOREIGN_SAE, ("NOBODY",)
    )
    fits = await raw_post(testbed, "GW1", "/kmapi/v1/ext_keys", largest.to_json())
    assert fits.status == 400 and fits.body["type"].endswith("/key-routing-error")  # read whole, then refused
    padding = {"E1_padding": "x" * MAX_BODY_BYTES}
    too_large = await raw_post(
        testbed, "GW1", "/kmapi/v1/ext_keys", largest.to_json() | {"extension_optional": padding}
    )
    assert too_large.status == 400 and too_large.body["type"].endswith("/invalid-parameter")
    assert "more than any valid request carries" in too_large.body["details"]["request_too_large"]
    ack = await raw_post(testbed, "GW1", ACK_PATH, data=b"[" + b" " * MAX_BODY_BYTES + b"]")
    assert ack.status == 400 and ack.body["type"].endswith("/ack-not-understood")
