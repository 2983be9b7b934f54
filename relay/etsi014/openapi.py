"""OpenAPI 3.1 description of the ETSI GS QKD 014 key-delivery API as this project serves it.

The routes are described here; every message schema is generated from ``relay.etsi014.models``.

Shared by the vendor KMS simulator and the gateway's northbound listener (``relay.etsi014.server``).
The caller is always the SAE named by its verified client certificate (mutual TLS); nothing in a request
names the caller. Every error body is the ``Error`` object; 400, 401 and 503 are the statuses a client
acts on (an oversized body is a 400 too); 404 and 405 answer unknown paths and methods in the same shape.
"""

from __future__ import annotations

from typing import Any

from relay.etsi014.models import Error, KeyContainer, KeyIds, KeyRequest, Status
from relay.openapi_frame import JSON, component_schemas, document, fresh_copies, ref


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ref("Error")}}}


_ERRORS: dict[str, Any] = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "404": {"$ref": "#/components/responses/NotFound"},
    "405": {"$ref": "#/components/responses/MethodNotAllowed"},
    "503": {"$ref": "#/components/responses/Unavailable"},
}


def _sae_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description + " URL-encoded; at most 64 printable characters; never the caller itself.",
        "schema": {"type": "string", "minLength": 1},
    }


def _query(name: str, description: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    """A GET form parameter: one member of the message the POST form carries."""
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


_SLAVE = _sae_parameter("slave_SAE_ID", "The SAE that will receive copies of the keys.")
_MASTER = _sae_parameter("master_SAE_ID", "The SAE that obtained the keys with enc_keys.")
_KEYS_OK = {"description": "The keys, all of them.", "content": {JSON: {"schema": ref("KeyContainer")}}}


@fresh_copies
def etsi014_document() -> dict[str, Any]:
    schemas = component_schemas(
        {
            "Error": Error.codec(),
            "Status": Status.codec(),
            "KeyRequest": KeyRequest.codec(),
            "KeyContainer": KeyContainer.codec(),
            "KeyIds": KeyIds.codec(),
        }
    )
    request = schemas["KeyRequest"]["properties"]
    return document(
        title="qkd-relay ETSI GS QKD 014 key delivery",
        summary="Key delivery to SAEs over mutual TLS, as implemented by qkd-relay.",
        description=(
            "Served by the qkd-relay vendor KMS simulator and by the gateway's northbound listener. "
            "The calling SAE is identified by its client certificate (URI SAN urn:qkd-relay:sae:<id>, or "
            "the subject commonName for certificates without it). Request bodies are strict JSON: unknown "
            "members, duplicate members, NaN, non-UTF-8 text and booleans in place of integers are refused "
            "with 400, and so are bodies over 64 KiB. Keys are delivered all-or-nothing and at most once."
        ),
        paths={
            "/api/v1/keys/{slave_SAE_ID}/status": {
                "get": {
                    "operationId": "getStatus",
                    "summary": "Key availability between the caller (master) and a slave SAE.",
                    "parameters": [_SLAVE],
                    "responses": {
                        "200": {"description": "The link status.", "content": {JSON: {"schema": ref("Status")}}},
                        **_ERRORS,
                    },
                }
            },
            "/api/v1/keys/{slave_SAE_ID}/enc_keys": {
                "get": {
                    "operationId": "getKey",
                    "summary": "New keys for the caller (master) shared with the slave SAE; simple form.",
                    "parameters": [
                        _SLAVE,
                        _query("number", request["number"]["description"], {"type": "integer"}),
                        _query("size", request["size"]["description"], {"type": "integer"}),
                    ],
                    "responses": {"200": _KEYS_OK, **_ERRORS},
                },
                "post": {
                    "operationId": "postKey",
                    "summary": "New keys for the caller (master) shared with the slave SAE; full form.",
                    "parameters": [_SLAVE],
                    "requestBody": {
                        "required": False,
                        "description": "A Key request; an empty body asks for the defaults.",
                        "content": {JSON: {"schema": ref("KeyRequest")}},
                    },
                    "responses": {"200": _KEYS_OK, **_ERRORS},
                },
            },
            "/api/v1/keys/{master_SAE_ID}/dec_keys": {
                "get": {
                    "operationId": "getKeyWithIds",
                    "summary": "One key the master obtained for the caller (slave); simple form.",
                    "parameters": [
                        _MASTER,
                        _query("key_ID", "The key_ID.", schemas["KeyIdEntry"]["properties"]["key_ID"], required=True),
                    ],
                    "responses": {"200": _KEYS_OK, **_ERRORS},
                },
                "post": {
                    "operationId": "postKeyWithIds",
                    "summary": "Keys the master obtained for the caller (slave), all or none; full form.",
                    "parameters": [_MASTER],
                    "requestBody": {"required": True, "content": {JSON: {"schema": ref("KeyIds")}}},
                    "responses": {"200": _KEYS_OK, **_ERRORS},
                },
            },
        },
        components={
            "responses": {
                "BadRequest": _error_response(
                    "The request is malformed, out of bounds or too large; nothing was delivered."
                ),
                "Unauthorized": _error_response(
                    "The caller is not an SAE, is not served here, or asked for keys not issued to it."
                ),
                "NotFound": _error_response("No such path."),
                "MethodNotAllowed": _error_response("The path exists but not with this method."),
                "Unavailable": _error_response(
                    "The KME cannot serve now: no key material, a halted QKD link, no relay route, storage down."
                ),
            },
            "schemas": schemas,
        },
    )
