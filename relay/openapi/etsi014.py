"""OpenAPI 3.1 description of the ETSI GS QKD 014 key-delivery API as this project serves it.

Shared by the vendor KMS simulator and the gateway's northbound listener (``relay.etsi014.server``).
The caller is always the SAE named by its verified client certificate (mutual TLS); nothing in a request
names the caller. Every error body is the ``Error`` object; 400, 401 and 503 are the statuses a client
acts on, 404, 405 and 413 answer unknown paths, methods and oversized bodies in the same shape.
"""

from __future__ import annotations

from typing import Any

from relay.openapi.common import JSON, document, ref

_UUID = {"type": "string", "format": "uuid", "description": "A UUID (RFC 9562), compared case-insensitively."}
_EXTENSION = {"type": "object", "description": "Implementation-specific members; carried, not interpreted."}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ref("Error")}}}


_ERRORS: dict[str, Any] = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "404": {"$ref": "#/components/responses/NotFound"},
    "405": {"$ref": "#/components/responses/MethodNotAllowed"},
    "413": {"$ref": "#/components/responses/TooLarge"},
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


_SLAVE = _sae_parameter("slave_SAE_ID", "The SAE that will receive copies of the keys.")
_MASTER = _sae_parameter("master_SAE_ID", "The SAE that obtained the keys with enc_keys.")
_KEYS_OK = {"description": "The keys, all of them.", "content": {JSON: {"schema": ref("KeyContainer")}}}

DOCUMENT: dict[str, Any] = document(
    title="qkd-relay ETSI GS QKD 014 key delivery",
    summary="Key delivery to SAEs over mutual TLS, as implemented by qkd-relay.",
    description=(
        "Served by the qkd-relay vendor KMS simulator and by the gateway's northbound listener. "
        "The calling SAE is identified by its client certificate (URI SAN urn:qkd-relay:sae:<id>, or "
        "the subject commonName for certificates without it). Request bodies are strict JSON: unknown "
        "members, duplicate members, NaN, non-UTF-8 text and booleans in place of integers are refused "
        "with 400; bodies over 64 KiB with 413. Keys are delivered all-or-nothing and at most once."
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
                    {
                        "name": "number",
                        "in": "query",
                        "required": False,
                        "description": "How many keys (default 1).",
                        "schema": {"type": "integer"},
                    },
                    {
                        "name": "size",
                        "in": "query",
                        "required": False,
                        "description": "Key size in bits, a multiple of 8 (default: the KME's key_size).",
                        "schema": {"type": "integer"},
                    },
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
                    {"name": "key_ID", "in": "query", "required": True, "schema": _UUID},
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
            "BadRequest": _error_response("The request is malformed or out of bounds; nothing was delivered."),
            "Unauthorized": _error_response(
                "The caller is not an SAE, is not served here, or asked for keys not issued to it."
            ),
            "NotFound": _error_response("No such path."),
            "MethodNotAllowed": _error_response("The path exists but not with this method."),
            "TooLarge": _error_response("The request body exceeds the size limit."),
            "Unavailable": _error_response(
                "The KME cannot serve now: no key material, a halted QKD link, no relay route, storage down."
            ),
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["message"],
                "properties": {
                    "message": {"type": "string"},
                    "details": {"type": "array", "items": {"type": "object"}},
                },
            },
            "Status": {
                "type": "object",
                "required": [
                    "source_KME_ID",
                    "target_KME_ID",
                    "master_SAE_ID",
                    "slave_SAE_ID",
                    "key_size",
                    "stored_key_count",
                    "max_key_count",
                    "max_key_per_request",
                    "max_key_size",
                    "min_key_size",
                    "max_SAE_ID_count",
                ],
                "properties": {
                    "source_KME_ID": {"type": "string"},
                    "target_KME_ID": {"type": "string"},
                    "master_SAE_ID": {"type": "string"},
                    "slave_SAE_ID": {"type": "string"},
                    "key_size": {"type": "integer", "description": "Default key size in bits."},
                    "stored_key_count": {"type": "integer", "minimum": 0},
                    "max_key_count": {"type": "integer", "minimum": 0},
                    "max_key_per_request": {"type": "integer", "minimum": 0},
                    "max_key_size": {"type": "integer"},
                    "min_key_size": {"type": "integer"},
                    "max_SAE_ID_count": {"type": "integer", "minimum": 0},
                    "status_extension": _EXTENSION,
                },
            },
            "KeyRequest": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "number": {"type": "integer", "description": "How many keys (default 1)."},
                    "size": {"type": "integer", "description": "Key size in bits (default key_size)."},
                    "additional_slave_SAE_IDs": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                    "extension_mandatory": {"type": "array", "items": {"type": "object"}},
                    "extension_optional": {"type": "array", "items": {"type": "object"}},
                },
            },
            "Key": {
                "type": "object",
                "required": ["key_ID", "key"],
                "properties": {
                    "key_ID": _UUID,
                    "key": {
                        "type": "string",
                        "contentEncoding": "base64",
                        "format": "byte",
                        "description": "The key bytes.",
                    },
                    "key_ID_extension": _EXTENSION,
                    "key_extension": _EXTENSION,
                },
            },
            "KeyContainer": {
                "type": "object",
                "required": ["keys"],
                "properties": {
                    "keys": {"type": "array", "items": ref("Key")},
                    "key_container_extension": _EXTENSION,
                },
            },
            "KeyIds": {
                "type": "object",
                "required": ["key_IDs"],
                "additionalProperties": False,
                "properties": {
                    "key_IDs": {
                        "type": "array",
                        "minItems": 1,
                        "uniqueItems": True,
                        "items": {"type": "object", "required": ["key_ID"], "properties": {"key_ID": _UUID}},
                    },
                    "key_IDs_extension": _EXTENSION,
                },
            },
        },
    },
)
