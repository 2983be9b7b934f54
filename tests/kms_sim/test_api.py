"""Every 014 endpoint and error path of the simulator, over real mutual-TLS sockets."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import aiohttp
import pytest

from relay.etsi014.client import KmeError
from relay.etsi014.models import KeyRequest
from tests.support.simulated_kms import KmsHarness

STATUS_FIELDS = {
    "source_KME_ID": str,
    "target_KME_ID": str,
    "master_SAE_ID": str,
    "slave_SAE_ID": str,
    "key_size": int,
    "stored_key_count": int,
    "max_key_count": int,
    "max_key_per_request": int,
    "max_key_size": int,
    "min_key_size": int,
    "max_SAE_ID_count": int,
}


async def raw(kms: KmsHarness, sae: str, kme: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    """A request below our client, to send what a careless or hostile SAE would send."""
    connector = aiohttp.TCPConnector(ssl=kms.pki.client_context(sae))
    async with aiohttp.ClientSession(connector=connector) as session:
        url = aiohttp.client.URL(kms.running.kme_url(kme) + path, encoded=True)
        async with session.request(method, url, **kwargs) as response:
            text = await response.text()
            body = await response.json(content_type=None) if text else None
            assert response.content_type == "application/json" or not text
            return response.status, body


async def test_status_has_all_eleven_fields_with_spec_types(kms: KmsHarness) -> None:
    status, body = await raw(kms, "SAE-1", "KME-A", "GET", "/api/v1/keys/SAE-2/status")
    assert status == 200
    for name, kind in STATUS_FIELDS.items():
        assert isinstance(body[name], kind), name
    assert (body["source_KME_ID"], body["target_KME_ID"]) == ("KME-A", "KME-B")
    assert (body["master_SAE_ID"], body["slave_SAE_ID"]) == ("SAE-1", "SAE-2")
    assert body["stored_key_count"] == 50 and body["key_size"] == 256 and body["max_SAE_ID_count"] == 0


@pytest.mark.parametrize("use_post", [False, True])
async def test_master_and_slave_obtain_the_same_keys(kms: KmsHarness, clients: Any, use_post: bool) -> None:
    master, slave = clients("SAE-1", "KME-A"), clients("SAE-2", "KME-B")
    issued = await master.get_key("SAE-2", KeyRequest(number=3, size=512), use_post=use_post)
    assert len(issued.keys) == 3 and all(len(k.key) == 64 for k in issued.keys)
    ids = [k.key_id for k in issued.keys]
    assert all(str(uuid.UUID(i)) == i for i in ids)
    first = await slave.get_key_with_ids("SAE-1", ids[:1], use_post=use_post)  # GET form unless use_post
    rest = await slave.get_key_with_ids("SAE-1", ids[1:])  # two IDs: always POST
    received = {k.key_id: k.key for k in first.keys + rest.keys}
    assert received == {k.key_id: k.key for k in issued.keys}


async def test_enc_keys_defaults_and_empty_post_body(kms: KmsHarness) -> None:
    status, body = await raw(kms, "SAE-1", "KME-A", "GET", "/api/v1/keys/SAE-2/enc_keys")
    assert status == 200 and len(body["keys"]) == 1
    assert len(base64.b64decode(body["keys"][0]["key"])) == 32  # default key_size 256 bits
    status, body = await raw(kms, "SAE-1", "KME-A", "POST", "/api/v1/keys/SAE-2/enc_keys")
    assert status == 200 and len(body["keys"]) == 1
    status, body = await raw(kms, "SAE-1", "KME-A", "GET", "/api/v1/keys/SAE-2/enc_keys?number=2&size=64")
    assert status == 200 and [len(base64.b64decode(k["key"])) for k in body["keys"]] == [8, 8]


async def test_key_is_delivered_once_then_removed(kms: KmsHarness, clients: Any) -> None:
    issued = await clients("SAE-1", "KME-A").get_key("SAE-2")
    key_id = issued.keys[0].key_id
    slave = clients("SAE-2", "KME-B")
    await slave.get_key_with_ids("SAE-1", [key_id])
    with pytest.raises(KmeError) as caught:
        await slave.get_key_with_ids("SAE-1", [key_id])
    assert caught.value.status == 400
    assert caught.value.error and caught.value.error.message == "one or more keys specified are not found on KME"


async def test_other_sae_gets_401_and_the_key_stays_for_its_slave(kms: KmsHarness, clients: Any) -> None:
    issued = await clients("SAE-1", "KME-A").get_key("SAE-2")
    key_id = issued.keys[0].key_id
    with pytest.raises(KmeError) as caught:
        await clients("SAE-3", "KME-B").get_key_with_ids("SAE-1", [key_id])
    assert caught.value.status == 401
    received = await clients("SAE-2", "KME-B").get_key_with_ids("SAE-1", [key_id])
    assert received.keys[0].key == issued.keys[0].key


async def test_dec_keys_is_all_or_nothing(kms: KmsHarness, clients: Any) -> None:
    issued = await clients("SAE-1", "KME-A").get_key("SAE-2")
    key_id = issued.keys[0].key_id
    slave = clients("SAE-2", "KME-B")
    with pytest.raises(KmeError) as caught:
        await slave.get_key_with_ids("SAE-1", [key_id, str(uuid.uuid4())])
    assert caught.value.status == 400
    assert (await slave.get_key_with_ids("SAE-1", [key_id])).keys[0].key_id == key_id


async def test_dec_keys_naming_the_wrong_master_finds_nothing(kms: KmsHarness, clients: Any) -> None:
    issued = await clients("SAE-1", "KME-A").get_key("SAE-2")
    with pytest.raises(KmeError) as caught:
        await clients("SAE-2", "KME-B").get_key_with_ids("SAE #4", [issued.keys[0].key_id])
    assert caught.value.status == 400


async def test_sae_ids_are_url_encoded_in_paths(kms: KmsHarness, clients: Any) -> None:
    master = clients("SAE-1", "KME-A")
    status = await master.get_status("SAE #4")
    assert status.slave_sae_id == "SAE #4"
    issued = await master.get_key("SAE #4")
    received = await clients("SAE #4", "KME-A").get_key_with_ids("SAE-1", [issued.keys[0].key_id])
    assert received.keys == issued.keys
    code, body = await raw(kms, "SAE-1", "KME-A", "GET", "/api/v1/keys/SAE%20%234/status")
    assert code == 200 and body["slave_SAE_ID"] == "SAE #4"


@pytest.mark.parametrize(
    ("query", "message_part"),
    [
        ("size=100", "size shall be a multiple of 8"),
        ("size=0", "size must be between"),  # 0 is a multiple of 8, so the bound check answers
        ("size=-8", "size must be between"),
        ("size=abc01", "'size' must be an integer"),
        ("size=16384", "size must be between"),
        ("number=0", "number must be between"),
        ("number=-8", "number must be between"),
        ("number=abc01", "'number' must be an integer"),
        ("number=129", "number must be between"),
        ("colour=blue", "unknown item"),
        ("number=1&number=5", "more than once"),
    ],
)
async def test_bad_enc_keys_get_parameters_are_400(kms: KmsHarness, query: str, message_part: str) -> None:
    status, body = await raw(kms, "SAE-1", "KME-A", "GET", f"/api/v1/keys/SAE-2/enc_keys?{query}")
    assert status == 400 and message_part in body["message"]


@pytest.mark.parametrize(
    "payload",
    [
        {"number": 0},
        {"number": "abc01"},
        {"number": True},
        {"size": -8},
        {"size": 12},
        {"size": 1.5},
        {"numbr": 2},
        {"additional_slave_SAE_IDs": ["SAE-3"]},
        {"additional_slave_SAE_IDs": []},
        {"extension_optional": {"abc_max_age": 1}},
        [1, 2],
        "text",
    ],
)
async def test_bad_enc_keys_post_bodies_are_400(kms: KmsHarness, payload: Any) -> None:
    status, body = await raw(kms, "SAE-1", "KME-A", "POST", "/api/v1/keys/SAE-2/enc_keys", json=payload)
    assert status == 400 and isinstance(body["message"], str)


async def test_unsupported_mandatory_extension_uses_the_spec_message(kms: KmsHarness) -> None:
    payload = {"extension_mandatory": [{"abc_route_type": "direct"}]}
    status, body = await raw(kms, "SAE-1", "KME-A", "POST", "/api/v1/keys/SAE-2/enc_keys", json=payload)
    assert status == 400
    assert body["message"] == "not all extension_mandatory parameters are supported"
    assert body["details"] == [{"extension_mandatory_unsupported": "abc_route_type is not supported"}]


async def test_optional_extensions_may_be_ignored(kms: KmsHarness) -> None:
    payload = {"number": 1, "extension_optional": [{"abc_max_age": 30000}]}
    status, body = await raw(kms, "SAE-1", "KME-A", "POST", "/api/v1/keys/SAE-2/enc_keys", json=payload)
    assert status == 200 and len(body["keys"]) == 1


@pytest.mark.parametrize(
    ("data", "message_part"),
    [
        (b"{", "not valid JSON"),
        (b'{"number": 1, "number": 2}', "more than once"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"number": NaN}', "not valid JSON"),
    ],
)
async def test_malformed_json_is_400(kms: KmsHarness, data: bytes, message_part: str) -> None:
    status, body = await raw(
        kms,
        "SAE-1",
        "KME-A",
        "POST",
        "/api/v1/keys/SAE-2/enc_keys",
        data=data,
        headers={"Content-Type": "application/json"},
    )
    assert status == 400 and message_part in body["message"]


async def test_oversize_body_is_refused_with_json(kms: KmsHarness) -> None:
    """014 knows 400, 401 and 503 only (issue 12 section 5): an oversized body is a bad request, not a 413."""
    payload = {"key_IDs": [{"key_ID": str(uuid.uuid4())} for _ in range(3000)]}
    status, body = await raw(kms, "SAE-2", "KME-B", "POST", "/api/v1/keys/SAE-1/dec_keys", json=payload)
    assert status == 400 and "exceeds" in body["message"]


@pytest.mark.parametrize(
    ("method", "suffix", "kwargs"),
    [
        ("GET", "dec_keys?key_ID=non-uuid", {}),
        ("GET", "dec_keys", {}),
        ("GET", f"dec_keys?key_ID={uuid.uuid4()}&extra=1", {}),
        ("POST", "dec_keys", {}),
        ("POST", "dec_keys", {"json": {"key_IDs": []}}),
        ("POST", "dec_keys", {"json": {"key_IDs": [{"key_ID": "non-uuid"}]}}),
        ("POST", "dec_keys", {"json": {"key_IDs": [{"key_ID": "2f9a2a05-5b7a-4a4e-9d6a-0d0b7d3f9a11"}] * 2}}),
        ("POST", f"dec_keys?key_ID={uuid.uuid4()}", {"json": {"key_IDs": [{"key_ID": str(uuid.uuid4())}]}}),
    ],
)
async def test_bad_dec_keys_requests_are_400(kms: KmsHarness, method: str, suffix: str, kwargs: dict[str, Any]) -> None:
    status, body = await raw(kms, "SAE-2", "KME-B", method, f"/api/v1/keys/SAE-1/{suffix}", **kwargs)
    assert status == 400 and isinstance(body["message"], str)


@pytest.mark.parametrize("path", ["/api/v1/keys/SAE-1/status", "/api/v1/keys/%20/status", "/api/v1/keys/%20/enc_keys"])
async def test_self_or_blank_sae_id_in_path_is_400(kms: KmsHarness, path: str) -> None:
    status, body = await raw(kms, "SAE-1", "KME-A", "GET", path)
    assert status == 400 and body["message"]


async def test_slave_without_a_qkd_link_is_400(kms: KmsHarness) -> None:
    status, body = await raw(kms, "SAE-1", "KME-A", "GET", "/api/v1/keys/SAE-3/enc_keys")
    assert status == 400 and "no QKD link" in body["message"]


async def test_sae_registered_at_another_kme_is_401(kms: KmsHarness) -> None:
    status, body = await raw(kms, "SAE-2", "KME-A", "GET", "/api/v1/keys/SAE-1/status")
    assert status == 401 and "not registered" in body["message"]


async def test_unknown_paths_and_methods_answer_json(kms: KmsHarness) -> None:
    assert (await raw(kms, "SAE-1", "KME-A", "GET", "/api/v2/keys/SAE-2/status"))[0] == 404
    status, body = await raw(kms, "SAE-1", "KME-A", "DELETE", "/api/v1/keys/SAE-2/enc_keys")
    assert status == 405 and body["message"]


async def test_fetched_key_expires_after_the_availability_timeout(kms: KmsHarness, clients: Any) -> None:
    issued = await clients("SAE-1", "KME-A").get_key("SAE-2", KeyRequest(number=2))
    kms.clock.advance(9.9)
    slave = clients("SAE-2", "KME-B")
    await slave.get_key_with_ids("SAE-1", [issued.keys[0].key_id])
    kms.clock.advance(0.2)  # 10.1 s after the master fetched them
    with pytest.raises(KmeError) as caught:
        await slave.get_key_with_ids("SAE-1", [issued.keys[1].key_id])
    assert caught.value.status == 400


async def test_key_generation_is_rate_limited(kms: KmsHarness, clients: Any) -> None:
    master = clients("SAE-1", "KME-A")
    await master.get_key("SAE-2", KeyRequest(number=50))  # drain the initial 50 keys
    with pytest.raises(KmeError) as caught:
        await master.get_key("SAE-2")
    assert caught.value.status == 503 and "insufficient key material" in caught.value.error.message
    kms.clock.advance(1.0)  # 2560 bit/s = ten 256-bit keys per second
    assert (await master.get_status("SAE-2")).stored_key_count == 10
    await master.get_key("SAE-2", KeyRequest(number=10))
    with pytest.raises(KmeError):
        await master.get_key("SAE-2")
    kms.clock.advance(10_000.0)
    assert (await master.get_status("SAE-2")).stored_key_count == 1000  # bounded by max_key_count


async def test_qber_alarm_halts_delivery_and_recovery_resumes_it(kms: KmsHarness, clients: Any) -> None:
    master = clients("SAE-1", "KME-A")
    async with aiohttp.ClientSession() as admin:
        url = f"{kms.running.admin_url}/admin/links/L-1-2/qber"
        async with admin.put(url, json={"qber": 0.25}) as response:
            assert response.status == 200 and (await response.json())["halted"] is True
        with pytest.raises(KmeError) as caught:
            await master.get_key("SAE-2")
        assert caught.value.status == 503 and "QBER 0.250" in caught.value.error.message
        halted = await master.get_status("SAE-2")
        assert halted.stored_key_count == 0 and halted.status_extension["halted"] is True
        kms.clock.advance(5.0)  # no key distils while halted
        async with admin.put(url, json={"qber": 0.03}) as response:
            assert (await response.json())["stored_bits"] == 50 * 256
        assert len((await master.get_key("SAE-2")).keys) == 1
        async with admin.put(url, json={"qber": "high"}) as response:
            assert response.status == 400
        async with admin.put(f"{kms.running.admin_url}/admin/links/nope/qber", json={"qber": 0.1}) as response:
            assert response.status == 404


async def test_keys_fetched_before_an_alarm_still_reach_their_slave(kms: KmsHarness, clients: Any) -> None:
    issued = await clients("SAE-1", "KME-A").get_key("SAE-2")
    kms.running.kms.set_qber("L-1-2", 0.3)
    received = await clients("SAE-2", "KME-B").get_key_with_ids("SAE-1", [issued.keys[0].key_id])
    assert received.keys == issued.keys
