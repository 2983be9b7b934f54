"""The 020 HTTP surface over real mutual TLS 1.3: every answer checked against the spec's shapes.

Each 2xx body and each problem body is validated with JSON Schemas written here from the constraints of
the ETSI GS QKD 020 V1.1.1 OpenAPI document, ``components/schemas`` (``problem_details``,
``ack_containers``/``ack_container``/``key_id_container``/``ack_status``, ``version_container``,
``extension``, SAE ID and key ID): names, types, required members, enums and size bounds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import uuid
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from relay.etsi020.client import Etsi020Client, PeerProblem, PeerUnreachable
from relay.etsi020.models import (
    AckContainer,
    AckStatus,
    ExtKey,
    ExtKeyContainer,
    VersionContainer,
    VoidContainer,
    parse_ack_containers,
)
from relay.etsi020.openapi import etsi020_document
from relay.etsi020.problems import KEY_NOT_PRESENT, KEY_ROUTING_ERROR, TYPE_PREFIX, Problem
from relay.etsi020.server import create_app
from relay.http_server import start_site
from relay.pki.layout import KeyDirectory
from relay.pki.tls import client_context
from tests.support.etsi020_peers import (
    GATEWAY,
    MAX_BODY_BYTES,
    SUPPORTED_MANDATORY,
    TLS13,
    Answer,
    Kme020,
    RecordingBackend,
)

# --- JSON Schemas from the V1.1.1 OpenAPI, components/schemas ------------------------------------------

EXTENSION = {"type": "object", "minProperties": 1, "maxProperties": 1024}
SAE_ID = {"type": "string", "minLength": 1, "maxLength": 64}
KEY_ID = {"type": "string", "format": "uuid"}
PROBLEM_DETAILS = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string", "format": "uri", "maxLength": 1024},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "title": {"type": "string", "maxLength": 1024},
        "details": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1024,
            "additionalProperties": {"type": "string"},
        },
    },
}
ACK_CONTAINER = {
    "type": "object",
    "required": ["key_id_container", "ack_status", "initiator_sae_id", "target_sae_ids"],
    "properties": {
        "key_id_container": {
            "type": "array",
            "maxItems": 1024,
            "items": {
                "type": "object",
                "required": ["key_id"],
                "properties": {"key_id": KEY_ID, "extension": EXTENSION},
            },
        },
        "ack_status": {
            "type": "string",
            "maxLength": 16,
            "enum": ["relayed", "failed", "voided", "failed to void", "key not present"],
        },
        "initiator_sae_id": SAE_ID,
        "target_sae_ids": {"type": "array", "items": SAE_ID},
        "message": {"type": "string", "maxLength": 4096},
        "extension": EXTENSION,
    },
}
ACK_CONTAINERS = {"type": "array", "maxItems": 1024, "items": ACK_CONTAINER}
VERSION_CONTAINER = {
    "type": "object",
    "required": ["versions"],
    "properties": {
        "versions": {"type": "array", "maxItems": 1000, "items": {"type": "string", "maxLength": 16}},
        "capabilities": {"type": "array", "maxItems": 1000, "items": {"type": "string", "maxLength": 128}},
        "extension": EXTENSION,
    },
}

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
FORMATS = FormatChecker()  # "uuid" ships with jsonschema; "uri" needs an optional package, so it is here


@FORMATS.checks("uri")
def _is_uri(value: object) -> bool:
    """RFC 3986 absolute URI: a scheme, then only URI characters."""
    return not isinstance(value, str) or _URI.fullmatch(value) is not None


def validate(schema: dict[str, Any], document: Any) -> None:
    Draft202012Validator(schema, format_checker=FORMATS).validate(document)


def assert_problem(answer: Answer, status: int, problem_type: str, *detail_names: str) -> dict[str, str]:
    """An RFC 9457 body of the right type whose status matches the HTTP status; returns its details."""
    assert answer.status == status, answer.body
    assert answer.content_type == "application/json"  # spec Table 1
    validate(PROBLEM_DETAILS, answer.body)
    assert answer.body["status"] == status
    expected_type = problem_type if problem_type == "about:blank" else TYPE_PREFIX + problem_type
    assert answer.body["type"] == expected_type
    details = answer.body.get("details", {})
    for name in detail_names:
        assert name in details, details
    return details


def ext_keys(count: int = 2, *, callback: str | None = None, **extensions: dict[str, Any]) -> ExtKeyContainer:
    keys = tuple(ExtKey(str(uuid.uuid4()), os.urandom(32)) for _ in range(count))
    return ExtKeyContainer(keys, "SAE-1", ("SAE-2", "SAE-3"), ack_callback_url=callback, **extensions)


async def eventually(condition: Any, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


def test_the_schemas_are_valid_and_not_vacuous() -> None:
    for schema in (PROBLEM_DETAILS, ACK_CONTAINERS, VERSION_CONTAINER):
        Draft202012Validator.check_schema(schema)
    bad = [
        (PROBLEM_DETAILS, {"type": "https://x/y", "details": {"a": 1}}),
        (PROBLEM_DETAILS, {"type": "not a uri"}),
        (
            ACK_CONTAINERS,
            [
                {
                    "key_id_container": [{"key_id": "nope"}],
                    "ack_status": "relayed",
                    "initiator_sae_id": "a",
                    "target_sae_ids": ["b"],
                }
            ],
        ),
        (
            ACK_CONTAINERS,
            [{"key_id_container": [], "ack_status": "done", "initiator_sae_id": "a", "target_sae_ids": ["b"]}],
        ),
        (VERSION_CONTAINER, {"versions": ["v1"], "capabilities": ["x" * 129]}),
    ]
    for schema, document in bad:
        assert not Draft202012Validator(schema, format_checker=FORMATS).is_valid(document), document


_SAMPLES = {
    "Problem": (
        PROBLEM_DETAILS,
        [
            {"type": "https://x/y"},
            {"type": "about:blank", "status": 100, "title": "t" * 1024, "instance": "/z"},
            {"type": "https://x/y", "status": 599, "details": {"a": "b"}},
            {"status": 400, "title": "no type"},
            {"type": "https://x/y", "status": 99},
            {"type": "https://x/y", "status": 600},
            {"type": "https://x/" + "y" * 1024},
            {"type": "https://x/y", "title": "t" * 1025},
            {"type": "https://x/y", "details": {}},
            {"type": "https://x/y", "details": {"a": 1}},
        ],
    ),
    "VersionContainer": (
        VERSION_CONTAINER,
        [
            {"versions": ["v1"]},
            {"versions": [], "capabilities": ["synchronous_mode"], "extension": {"E1_x": 1}},
            {"capabilities": []},
            {"versions": ["v" * 17]},
            {"versions": ["v1"], "extension": {}},
            {"versions": ["v1"], "extension": {f"E1_{n}": n for n in range(1025)}},
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(_SAMPLES))
def test_the_served_schemas_agree_with_the_transcription(name: str) -> None:
    """What the spec's schema (transcribed above) accepts, the served document accepts, and vice versa."""
    components = etsi020_document()["components"]
    served = Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": components})
    transcribed, samples = _SAMPLES[name]
    for sample in samples:
        assert served.is_valid(sample) == Draft202012Validator(transcribed).is_valid(sample), sample


# --- versions ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("caller", ["KME-A", GATEWAY])
async def test_versions_offer_v1_and_the_synchronous_mode(kme: Kme020, caller: str) -> None:
    answer = await kme.raw("GET", "/kmapi/versions", name=caller)
    assert answer.status == 200 and answer.content_type == "application/json"
    validate(VERSION_CONTAINER, answer.body)
    assert answer.body == {"versions": ["v1"], "capabilities": ["synchronous_mode"]}
    assert await kme.client(caller).versions() == VersionContainer(("v1",), ("synchronous_mode",))


# --- ext_keys ------------------------------------------------------------------------------------------


async def test_asynchronous_ext_keys_answer_202_then_acks_reach_the_callback(kme: Kme020) -> None:
    request = ext_keys(3, callback=kme.callback_url)
    answer = await kme.raw("POST", "/kmapi/v1/ext_keys", json=request.to_json())
    assert answer.status == 202 and answer.body is None

    sender, acks = await kme.next_ack()
    assert sender == "KME-B"  # posted with the server KME's own client certificate
    validate(ACK_CONTAINERS, acks)
    (ack,) = parse_ack_containers(acks)
    assert ack == AckContainer(tuple(k.key_id for k in request.keys), AckStatus.RELAYED, "SAE-1", ("SAE-2", "SAE-3"))
    assert kme.backend.names() == ["check_ext_keys", "deliver"]
    assert all(caller == "KME-A" for _, caller, _ in kme.backend.calls)
    assert kme.backend.calls[1][2] == request


async def test_our_client_sees_none_in_the_asynchronous_mode(kme: Kme020) -> None:
    request = ext_keys(1, callback=kme.callback_url)
    assert await kme.client(GATEWAY).ext_keys(request) is None
    _, acks = await kme.next_ack()
    assert parse_ack_containers(acks)[0].key_ids == (request.keys[0].key_id,)
    assert kme.backend.calls[0][1] == GATEWAY


async def test_synchronous_ext_keys_answer_200_with_ack_containers(kme: Kme020) -> None:
    request = ext_keys(2)
    answer = await kme.raw("POST", "/kmapi/v1/ext_keys", json=request.to_json())
    assert answer.status == 200 and answer.content_type == "application/json"
    validate(ACK_CONTAINERS, answer.body)
    assert parse_ack_containers(answer.body)[0].ack_status is AckStatus.RELAYED

    acks = await kme.client().ext_keys(ext_keys(1))
    assert acks is not None and acks[0].ack_status is AckStatus.RELAYED
    assert kme.acks.empty()  # the synchronous mode never uses the callback


async def test_a_problem_from_check_ext_keys_is_answered_and_nothing_is_delivered(kme: Kme020) -> None:
    kme.backend.check_failure = Problem(400, KEY_ROUTING_ERROR, {"target_sae_id_not_recognized": "SAE-3"})
    answer = await kme.raw("POST", "/kmapi/v1/ext_keys", json=ext_keys(callback=kme.callback_url).to_json())
    assert_problem(answer, 400, "key-routing-error", "target_sae_id_not_recognized")
    await asyncio.sleep(0.05)
    assert kme.backend.names() == ["check_ext_keys"] and kme.acks.empty()


@pytest.mark.parametrize("callback", [False, True])
async def test_an_unexpected_backend_failure_is_a_503_without_internals(
    kme: Kme020, callback: bool, caplog: pytest.LogCaptureFixture
) -> None:
    kme.backend.check_failure = RuntimeError("secret internals /etc/qkd")
    url = kme.callback_url if callback else None
    answer = await kme.raw("POST", "/kmapi/v1/ext_keys", json=ext_keys(callback=url).to_json())
    assert_problem(answer, 503, "server-side-general-error", "server_side_general_error")
    text = json.dumps(answer.body)
    assert "secret" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert "secret internals" in caplog.text  # the operator still sees it


async def test_a_synchronous_delivery_failure_is_a_503(kme: Kme020) -> None:
    kme.backend.work_failure = ValueError("boom")
    answer = await kme.raw("POST", "/kmapi/v1/ext_keys", json=ext_keys().to_json())
    details = assert_problem(answer, 503, "server-side-general-error")
    assert "boom" not in json.dumps(details)


async def test_an_asynchronous_delivery_failure_is_logged_and_sends_no_ack(
    kme: Kme020, caplog: pytest.LogCaptureFixture
) -> None:
    kme.backend.work_failure = ValueError("boom")
    answer = await kme.raw("POST", "/kmapi/v1/ext_keys", json=ext_keys(callback=kme.callback_url).to_json())
    assert answer.status == 202
    await eventually(lambda: "asynchronous 020 work" in caplog.text)
    assert kme.acks.empty()


# --- extensions ----------------------------------------------------------------------------------------


async def test_an_unsupported_mandatory_extension_is_refused_before_the_backend(kme: Kme020) -> None:
    request = ext_keys(
        callback=kme.callback_url,
        extension_mandatory={
            SUPPORTED_MANDATORY: True,
            "E32473_route_type": "direct",
            "E32473_method": {"hybrid_keys": True},
        },
    )
    answer = await kme.raw("POST", "/kmapi/v1/ext_keys", json=request.to_json())
    details = assert_problem(answer, 503, "unsupported-mandatory-extension", "unsupported_mandatory_extension")
    assert "E32473_method" in details["unsupported_mandatory_extension"]
    assert "E32473_route_type" in details["unsupported_mandatory_extension"]
    assert SUPPORTED_MANDATORY not in details["unsupported_mandatory_extension"]
    await asyncio.sleep(0.05)
    assert kme.backend.calls == [] and kme.acks.empty()

    with pytest.raises(PeerProblem) as caught:
        await kme.client().ext_keys(request)
    assert caught.value.status == 503 and caught.value.problem is not None


async def test_a_supported_mandatory_extension_reaches_the_backend(kme: Kme020) -> None:
    request = ext_keys(extension_mandatory={SUPPORTED_MANDATORY: {"level": 2}})
    assert await kme.client().ext_keys(request) is not None
    assert kme.backend.calls[0][2].extension_mandatory == {SUPPORTED_MANDATORY: {"level": 2}}


async def test_optional_extensions_reach_the_backend_unchanged(kme: Kme020) -> None:
    optional = {
        "E32473_module_type": {"vendor": "Company ABC", "protocol": "BB84", "min_version": 2.5},
        "E32473_qos_session": "e73d9abe",
        "E12345_nested": [1, 1.0, None, True, {"deep": ["é", "\U0001f511"]}],
        "E1_big": 2**70,
    }
    per_key = {"E32473_protocol": "BB84"}
    request = ext_keys(1, callback=kme.callback_url, extension_optional=optional)
    request = ExtKeyContainer(
        (ExtKey(request.keys[0].key_id, request.keys[0].value, per_key),),
        request.initiator_sae_id,
        request.target_sae_ids,
        request.ack_callback_url,
        extension_optional=optional,
    )
    answer = await kme.raw("POST", "/kmapi/v1/ext_keys", json=request.to_json())
    assert answer.status == 202
    await kme.next_ack()
    for name in ("check_ext_keys", "deliver"):
        received = next(r for n, _, r in kme.backend.calls if n == name)
        # Equal, and of the same JSON types (1 and 1.0 compare equal in Python, not on the wire).
        assert json.dumps(received.extension_optional) == json.dumps(optional)
        assert received.keys[0].extension == per_key


# --- ack -----------------------------------------------------------------------------------------------


async def test_acks_are_passed_to_the_backend_and_answered_200(kme: Kme020) -> None:
    acks = [
        AckContainer((str(uuid.uuid4()), str(uuid.uuid4())), AckStatus.RELAYED, "SAE-1", ("SAE-2",)),
        AckContainer((str(uuid.uuid4()),), AckStatus.FAILED, "SAE-1", ("SAE-2",), message="no key material"),
    ]
    await kme.client().post_acks(f"{kme.url}/kmapi/v1/ext_keys/ack", acks)
    assert kme.backend.calls == [("acknowledged", "KME-A", tuple(acks))]

    answer = await kme.raw("POST", "/kmapi/v1/ext_keys/ack", json=[ack.to_json() for ack in acks])
    assert answer.status == 200 and answer.body is None


async def test_acks_for_unknown_keys_are_a_key_not_present_problem(kme: Kme020) -> None:
    kme.backend.ack_failure = Problem(400, KEY_NOT_PRESENT, {"key_not_present": "unknown key IDs"})
    ack = AckContainer((str(uuid.uuid4()),), AckStatus.RELAYED, "SAE-1", ("SAE-2",))
    answer = await kme.raw("POST", "/kmapi/v1/ext_keys/ack", json=[ack.to_json()])
    assert_problem(answer, 400, "key-not-present", "key_not_present")


async def test_an_ack_that_breaks_the_schema_is_ack_not_understood(kme: Kme020) -> None:
    body = [
        {
            "key_id_container": [{"key_id": str(uuid.uuid4())}],
            "ack_status": "delivered",
            "initiator_sae_id": "SAE-1",
            "target_sae_ids": ["SAE-2"],
        }
    ]
    answer = await kme.raw("POST", "/kmapi/v1/ext_keys/ack", json=body)
    assert_problem(answer, 400, "ack-not-understood", "ack_status")
    assert kme.backend.calls == []


# --- void ----------------------------------------------------------------------------------------------


async def test_void_with_key_ids_synchronous_and_asynchronous(kme: Kme020) -> None:
    key_ids = (str(uuid.uuid4()), str(uuid.uuid4()))
    answer = await kme.raw(
        "POST", "/kmapi/v1/ext_keys/void", json=VoidContainer(key_ids, "SAE-1", ("SAE-2",)).to_json()
    )
    assert answer.status == 200 and answer.content_type == "application/json"
    validate(ACK_CONTAINERS, answer.body)
    assert parse_ack_containers(answer.body) == (AckContainer(key_ids, AckStatus.VOIDED, "SAE-1", ("SAE-2",)),)

    request = VoidContainer(key_ids, "SAE-1", ("SAE-2",), ack_callback_url=kme.callback_url)
    assert await kme.client().void(request) is None
    _, acks = await kme.next_ack()
    validate(ACK_CONTAINERS, acks)
    assert parse_ack_containers(acks)[0].ack_status is AckStatus.VOIDED
    assert kme.backend.calls[-1] == ("void", "KME-A", request)


async def test_a_void_with_nothing_to_void_answers_an_empty_array_in_both_modes(kme: Kme020) -> None:
    everything = VoidContainer((), "SAE-1", ("SAE-2",), all_confirmation=True)
    answer = await kme.raw("POST", "/kmapi/v1/ext_keys/void", json=everything.to_json())
    assert (answer.status, answer.content_type, answer.body) == (200, "application/json", [])
    validate(ACK_CONTAINERS, answer.body)
    assert await kme.client().void(everything) == []

    later = VoidContainer((), "SAE-1", ("SAE-2",), ack_callback_url=kme.callback_url, all_confirmation=True)
    assert await kme.client().void(later) is None
    caller, acks = await kme.next_ack()
    assert (caller, acks) == ("KME-B", [])  # the caller hears that nothing was there, not silence


async def test_void_of_every_key_needs_all_confirmation(kme: Kme020) -> None:
    delivered = await kme.client().ext_keys(ext_keys(2))
    assert delivered is not None
    confirmed = VoidContainer((), "SAE-1", ("SAE-2", "SAE-3"), all_confirmation=True)
    acks = await kme.client().void(confirmed)
    assert acks is not None and acks[0].key_ids == delivered[0].key_ids
    assert kme.backend.calls[-1] == ("void", "KME-A", confirmed)

    calls = len(kme.backend.calls)
    for body in (
        {"key_ids": [], "initiator_sae_id": "SAE-1", "target_sae_ids": ["SAE-2"]},
        {"key_ids": [], "initiator_sae_id": "SAE-1", "target_sae_ids": ["SAE-2"], "all_confirmation": False},
    ):
        answer = await kme.raw("POST", "/kmapi/v1/ext_keys/void", json=body)
        assert_problem(answer, 400, "no-key-ids-or-confirmation", "no_all_confirmation")
    assert len(kme.backend.calls) == calls


# --- malformed requests, limits, routing ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "malformed_json"),
        (b"{", "malformed_json"),
        (b'{"keys": [], "keys": []}', "duplicate_member"),
        (b'{"keys": [{"key_id": "a", "key_id": "b"}]}', "duplicate_member"),
        (b'{"keys": NaN}', "malformed_json"),
        (b'{"keys": -Infinity}', "malformed_json"),
        (b"\xff\xfe{}", "not_utf8"),
        (b'{"initiator_sae_id": "\\ud800"}', "not_utf8"),
        (b"[" * 20_000 + b"]" * 20_000, "limit_exceeded"),
        (b'{"keys": ' + b"1" * 5000 + b"}", "limit_exceeded"),
    ],
)
@pytest.mark.parametrize("path", ["/kmapi/v1/ext_keys", "/kmapi/v1/ext_keys/ack", "/kmapi/v1/ext_keys/void"])
async def test_bodies_that_are_not_strict_json_are_400(kme: Kme020, path: str, data: bytes, kind: str) -> None:
    answer = await kme.raw("POST", path, data=data, headers={"Content-Type": "application/json"})
    assert_problem(answer, 400, "invalid-parameter", kind)
    assert kme.backend.calls == []


async def test_a_body_over_the_limit_is_400_since_no_020_operation_documents_413(kme: Kme020) -> None:
    request = ext_keys(1)
    body = request.to_json() | {"extension_optional": {"E1_padding": "x" * MAX_BODY_BYTES}}
    answer = await kme.raw("POST", "/kmapi/v1/ext_keys", json=body)
    assert_problem(answer, 400, "invalid-parameter", "request_too_large")
    assert kme.backend.calls == []


async def test_unknown_paths_and_methods_are_about_blank_problems(kme: Kme020) -> None:
    answer = await kme.raw("GET", "/kmapi/v2/ext_keys")
    assert_problem(answer, 404, "about:blank")
    assert answer.body["title"] == "Not Found"
    answer = await kme.raw("GET", "/kmapi/v1/ext_keys")
    assert_problem(answer, 405, "about:blank")
    assert answer.headers["Allow"] == "POST"


# --- who may call --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/kmapi/versions"),
        ("POST", "/kmapi/v1/ext_keys"),
        ("POST", "/kmapi/v1/ext_keys/ack"),
        ("POST", "/kmapi/v1/ext_keys/void"),
    ],
)
async def test_a_certificate_without_a_kme_or_gateway_role_is_401(kme: Kme020, method: str, path: str) -> None:
    body = ext_keys().to_json() if path.endswith("ext_keys") else None
    answer = await kme.raw(method, path, name="SAE-1", json=body)
    assert_problem(answer, 401, "unauthorized", "unauthorized")
    assert kme.backend.calls == []


async def test_our_client_reports_the_401(kme: Kme020) -> None:
    with pytest.raises(PeerProblem) as caught:
        await kme.client("SAE-2").ext_keys(ext_keys())
    assert caught.value.status == 401 and caught.value.problem is not None
    assert caught.value.problem["type"] == TYPE_PREFIX + "unauthorized"


async def test_a_certificate_from_another_ca_is_refused_at_tls(
    kme: Kme020, pki: KeyDirectory, foreign_pki: KeyDirectory
) -> None:
    impostor = foreign_pki.entity("SAE-1")
    context = client_context(pki.ca.cert, impostor.cert, impostor.key, minimum=TLS13)
    async with Etsi020Client(kme.url, context) as client:
        with pytest.raises(PeerUnreachable):
            await client.versions()
    assert kme.backend.calls == []


async def test_the_server_refuses_tls_below_1_3(kme: Kme020) -> None:
    context = kme.context("KME-A")
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        with pytest.raises(aiohttp.ClientError):
            await session.get(kme.url + "/kmapi/versions")


async def test_the_mandatory_extension_set_defaults_to_empty(pki: KeyDirectory, kme: Kme020) -> None:
    """``create_app`` without the parameter supports no mandatory extension at all."""
    backend = RecordingBackend()

    async def no_acks(caller: str, url: str, acks: list[AckContainer]) -> None:
        raise AssertionError("no ack expected")

    site = await start_site(create_app(backend, no_acks), "127.0.0.1", 0, pki.server_context("KME-B", TLS13))
    try:
        request = ext_keys(extension_mandatory={SUPPORTED_MANDATORY: 1})
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=kme.context("KME-A"))) as session:
            async with session.post(site.url + "/kmapi/v1/ext_keys", json=request.to_json()) as response:
                body = await response.json()
        assert response.status == 503 and body["details"]["unsupported_mandatory_extension"]
        assert backend.calls == []
    finally:
        await site.stop()
