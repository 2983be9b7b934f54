"""The served OpenAPI documents are valid OpenAPI 3.1 and describe what the models really put on the wire."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate

from relay.domain import Key
from relay.etsi014.models import Error, KeyContainer, KeyIds, KeyRequest, Status
from relay.etsi014.openapi import etsi014_document
from relay.etsi020.models import AckContainer, AckStatus, ExtKey, ExtKeyContainer, VersionContainer, VoidContainer
from relay.etsi020.openapi import etsi020_document
from relay.etsi020.problems import INVALID_PARAMETER, Problem

KEY_ID = "8f6a3c2e-1b4d-4e5f-9a0b-1c2d3e4f5a6b"


@pytest.mark.parametrize("document", [etsi014_document(), etsi020_document()], ids=["014", "020"])
def test_documents_are_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["mutualTLS"]["type"] == "mutualTLS"


def _conforms(document: dict[str, Any], schema_name: str, instance: Any) -> None:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(instance)


def test_014_schemas_match_the_models() -> None:
    document = etsi014_document()
    status = Status("KME-A", "KME-B", "SAE-1", "SAE-2", 256, 10, 100, 8, 1024, 64, 0, {"qber": 0.01})
    _conforms(document, "Status", status.to_json())
    assert set(document["components"]["schemas"]["Status"]["required"]) == set(status.to_json()) - {"status_extension"}
    _conforms(document, "KeyContainer", KeyContainer((Key(KEY_ID, b"\x01" * 32),)).to_json())
    _conforms(document, "Error", Error("size shall be a multiple of 8", [{"x": "y"}]).to_json())
    _conforms(document, "KeyRequest", KeyRequest(2, 256, ("SAE-3",), ({"a": 1},), ({"b": 2},)).to_json())
    _conforms(document, "KeyIds", KeyIds((KEY_ID,), {"e": 1}).to_json())
    with pytest.raises(jsonschema.ValidationError):
        _conforms(document, "KeyRequest", {"number": 1, "unknown": 2})


def test_020_schemas_match_the_models() -> None:
    document = etsi020_document()
    ext = ExtKeyContainer(
        (ExtKey(KEY_ID, b"\x02" * 32),), "SAE-1", ("SAE-2",), "https://kme.example/ack", {"E1_m": 1}, {"E1_o": "x"}
    )
    _conforms(document, "ExtKeyContainer", ext.to_json())
    ack = AckContainer((KEY_ID,), AckStatus.FAILED_TO_VOID, "SAE-1", ("SAE-2",), "why", {"E1_x": 1})
    _conforms(document, "AckContainer", ack.to_json())
    _conforms(document, "VoidContainer", VoidContainer((), "SAE-1", ("SAE-2",), None, None, True).to_json())
    _conforms(document, "VersionContainer", VersionContainer(("v1",), ("synchronous_mode",)).to_json())
    _conforms(document, "Problem", Problem(400, INVALID_PARAMETER, {"key_id": "not a UUID"}).to_json())
    with pytest.raises(jsonschema.ValidationError):
        _conforms(document, "ExtKeyContainer", {**ext.to_json(), "extension_optional": {"bad name": 1}})


def test_callers_get_fresh_copies() -> None:
    etsi014_document()["paths"].clear()
    assert etsi014_document()["paths"]


def test_020_operations_list_exactly_the_specifications_status_codes() -> None:
    """V1.1.1 ``paths``, less 408 (ext_keys, ext_keys/void), which our listener never answers."""
    paths = etsi020_document()["paths"]
    documented = {
        path: set(operation["responses"])
        for path, item in paths.items()
        if path.startswith("/kmapi/")
        for operation in item.values()
    }
    assert documented == {
        "/kmapi/versions": {"200", "401", "503"},
        "/kmapi/v1/ext_keys": {"200", "202", "400", "401", "503"},
        "/kmapi/v1/ext_keys/ack": {"200", "400", "401", "503"},
        "/kmapi/v1/ext_keys/void": {"200", "202", "400", "401", "503"},
    }
    description = etsi020_document()["info"]["description"]
    assert "408" in description and "404" in description and "405" in description


def test_020_problem_schema_accepts_what_the_specification_allows() -> None:
    document = etsi020_document()
    for allowed in (
        {"type": "https://qkd.etsi.org/gs020-interop-kms/timeout"},
        {"type": "about:blank", "status": 100, "title": "t" * 1024},
        {"type": "https://x/y", "details": {f"d{n}": "x" * 5000 for n in range(1024)}},
        {"type": "https://x/y", "instance": "/kmapi/v1/ext_keys", "E1_x": {"any": 1}},
    ):
        _conforms(document, "Problem", allowed)
    for refused in (
        {"status": 400},
        {"type": "https://x/" + "y" * 1024},
        {"type": "https://x/y", "status": 99},
        {"type": "https://x/y", "status": 600},
        {"type": "https://x/y", "title": "t" * 1025},
        {"type": "https://x/y", "details": {}},
        {"type": "https://x/y", "details": {f"d{n}": "x" for n in range(1025)}},
        {"type": "https://x/y", "details": {"a": 1}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            _conforms(document, "Problem", refused)


def test_020_version_extension_is_the_shared_extension_schema() -> None:
    document = etsi020_document()
    _conforms(document, "VersionContainer", {"versions": ["v1"], "extension": {"E1_x": 1}})
    for extension in ({}, {f"E1_{n}": n for n in range(1025)}):
        with pytest.raises(jsonschema.ValidationError):
            _conforms(document, "VersionContainer", {"versions": ["v1"], "extension": extension})
