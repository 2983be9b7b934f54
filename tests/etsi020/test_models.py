"""ETSI 020 V1.1.1 containers: the spec's own examples parse and round-trip; every violation is a typed 400."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from relay.etsi020.models import (
    AckStatus,
    ExtKeyContainer,
    VersionContainer,
    VoidContainer,
    parse_ack_containers,
)
from relay.etsi020.problems import PROBLEM_DETAILS, Problem, ProblemDetails

KEY_ID = "550e8400-e29b-41d4-a716-446655440000"
VALUE = "wHHVxRwDJs3/bXd38GHP3oe4svTuRpZS0yCC7x4Ly+s="
EXT_KEYS = {  # the shape of the V1.1.1 ext_key_container example
    "keys": [{"key_id": KEY_ID, "value": VALUE, "extension": {"E32473_extension1": "per key"}}],
    "initiator_sae_id": "encryptor1",
    "target_sae_ids": ["encryptor2"],
    "ack_callback_url": "https://kme1/kmapi/v1/ext_keys/ack",
    "extension_mandatory": {
        "E32473_route_type": "direct",
        "E32473_method": {"hybrid_keys": True, "primary": "qkd", "secondary": "pqc"},
    },
    "extension_optional": {"E32473_qos_session": "e73d9abe"},
}
ACKS = [
    {
        "key_id_container": [{"key_id": KEY_ID}],
        "ack_status": "relayed",
        "initiator_sae_id": "encryptor1",
        "target_sae_ids": ["encryptor2"],
        "message": "string",
    }
]
VOID = {
    "key_ids": [KEY_ID, "373b0b2c-d841-4765-af6f-c6232cda6531"],
    "initiator_sae_id": "encryptor1",
    "target_sae_ids": ["encryptor2"],
    "ack_callback_url": "https://kme1/kmapi/v1/ext_keys/ack",
}


def test_spec_examples_round_trip() -> None:
    container = ExtKeyContainer.from_json(EXT_KEYS)
    assert container.keys[0].value == bytes.fromhex("c071d5c51c0326cdff6d7777f061cfde87b8b2f4ee469652d32082ef1e0bcbeb")
    assert container.to_json() == EXT_KEYS
    acks = parse_ack_containers(ACKS)
    assert acks[0].ack_status is AckStatus.RELAYED and [a.to_json() for a in acks] == ACKS
    assert VoidContainer.from_json(VOID).to_json() == VOID
    versions = {"versions": ["v1"], "capabilities": ["synchronous_mode"]}
    assert VersionContainer.from_json(versions).to_json() == versions


def changed(document: Any, change: Any) -> Any:
    document = copy.deepcopy(document)
    change(document)
    return document


@pytest.mark.parametrize(
    ("change", "problem_type", "detail"),
    [
        (lambda d: d.pop("keys"), "missing-parameters", "missing_parameters"),
        (lambda d: d.update(keys=[]), "invalid-parameter", "keys"),
        (lambda d: d["keys"][0].update(key_id="nope"), "invalid-parameter", "key_id"),
        (lambda d: d["keys"][0].update(value="***"), "invalid-parameter", "value"),
        (lambda d: d.update(initiator_sae_id=""), "invalid-parameter", "initiator_sae_id"),
        (lambda d: d.update(initiator_sae_id="x" * 65), "invalid-parameter", "initiator_sae_id"),
        (lambda d: d.update(target_sae_ids=["a b"]), "invalid-parameter", "target_sae_ids"),
        (lambda d: d.update(target_sae_ids=["t", "t"]), "invalid-parameter", "target_sae_ids"),
        (lambda d: d.update(ack_callback_url="http://kme1/ack"), "invalid-parameter", "ack_callback_url"),
        (lambda d: d.update(extension_optional={}), "invalid-parameter", "extension_optional"),
        (lambda d: d.update(extension_mandatory={"route_type": "x"}), "invalid-parameter", "extension_mandatory"),
        (lambda d: d.update(Keys=[]), "invalid-parameter", "unknown_parameters"),
    ],
)
def test_ext_keys_violations_are_400_problems(change: Any, problem_type: str, detail: str) -> None:
    with pytest.raises(Problem) as caught:
        ExtKeyContainer.from_json(changed(EXT_KEYS, change))
    body = caught.value.to_json()
    assert body["status"] == 400 and body["type"].endswith("/" + problem_type) and detail in body["details"]


@pytest.mark.parametrize(
    "document",
    [
        {},
        changed(ACKS, lambda d: d[0].update(ack_status="done")),
        changed(ACKS, lambda d: d[0].pop("key_id_container")),
        changed(ACKS, lambda d: d[0].update(message="m" * 4097)),
        ACKS * 1025,
    ],
)
def test_unparsable_acks_are_ack_not_understood(document: Any) -> None:
    with pytest.raises(Problem) as caught:
        parse_ack_containers(document)
    assert caught.value.status == 400
    assert caught.value.kind.uri.rsplit("/", 1)[1] in {"ack-not-understood", "missing-parameters"}


@pytest.mark.parametrize("document", [[], changed(ACKS, lambda d: d[0].update(key_id_container=[]))])
def test_empty_ack_arrays_parse_since_the_spec_sets_no_minimum(document: Any) -> None:
    """``ack_containers`` and ``key_id_container`` have no minItems: ``[]`` is a void that found nothing."""
    assert len(parse_ack_containers(document)) == len(document)


def test_void_of_everything_needs_all_confirmation() -> None:
    everything = {**VOID, "key_ids": []}
    with pytest.raises(Problem) as caught:
        VoidContainer.from_json(everything)
    assert caught.value.kind.uri.endswith("/no-key-ids-or-confirmation")
    assert "no_all_confirmation" in caught.value.to_json()["details"]
    confirmed = VoidContainer.from_json({**everything, "all_confirmation": True})
    assert confirmed.key_ids == () and confirmed.all_confirmation
    with pytest.raises(Problem):
        VoidContainer.from_json({**everything, "all_confirmation": "yes"})


def test_a_problem_needs_only_its_type_as_in_the_spec() -> None:
    only_type = {"type": "https://qkd.etsi.org/gs020-interop-kms/timeout"}
    assert PROBLEM_DETAILS.parse(only_type) == ProblemDetails(only_type["type"])
    assert PROBLEM_DETAILS.to_json(ProblemDetails(only_type["type"])) == only_type
    assert PROBLEM_DETAILS.parse({**only_type, "status": 100}).status == 100
    assert PROBLEM_DETAILS.parse({**only_type, "instance": "/kmapi/v1/ext_keys", "E1_x": 1}).type == only_type["type"]


def test_a_version_extension_is_an_extension() -> None:
    assert VersionContainer.from_json({"versions": ["v1"], "extension": {"E1_x": 1}}).extension == {"E1_x": 1}
    for extension in ({}, {"x": 1}):
        with pytest.raises(Problem) as caught:
            VersionContainer.from_json({"versions": ["v1"], "extension": extension})
        assert caught.value.status == 400
