"""OpenAPI 3.1 description of the ETSI GS QKD 020 inter-KMS API as this project serves it.

The gateway's 020 listener (``relay.etsi020.server``): another KME or gateway, identified by its client
certificate (mutual TLS 1.3), hands over keys for an SAE this domain serves, acknowledges keys we handed
over, or voids keys. Failures are RFC 9457 problem details (``application/problem+json``) whose ``type``
names the reason; ``status`` repeats the HTTP status.
"""

from __future__ import annotations

from typing import Any

from relay.openapi.common import JSON, document, ref

PROBLEM = "application/problem+json"
_URI_CHARACTERS = r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$"
_SAE_ID = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": _URI_CHARACTERS}
_KEY_ID = {"type": "string", "format": "uuid", "description": "A UUID (RFC 9562)."}
_CALLBACK = {
    "type": "string",
    "pattern": "^https://[^ ]*$",
    "maxLength": 1024,
    "description": "Where acks are POSTed later (asynchronous mode); absent asks for the synchronous mode.",
}
_EXTENSION = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1024,
    "propertyNames": {"pattern": "^E[0-9]+_.+$"},
    "description": "Members named E<private enterprise number>_<name>.",
}


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": ref("Problem")}}}


_ERRORS: dict[str, Any] = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "404": {"$ref": "#/components/responses/NotFound"},
    "405": {"$ref": "#/components/responses/MethodNotAllowed"},
    "413": {"$ref": "#/components/responses/TooLarge"},
    "503": {"$ref": "#/components/responses/Unavailable"},
}
_ACKS_NOW = {
    "description": "Synchronous mode: one ack container per outcome.",
    "content": {JSON: {"schema": {"type": "array", "items": ref("AckContainer")}}},
}
_ACKS_LATER = {"description": "Asynchronous mode: accepted; acks follow at ack_callback_url."}

DOCUMENT: dict[str, Any] = document(
    title="qkd-relay ETSI GS QKD 020 inter-KMS key transfer",
    summary="Key hand-over between key management systems, as implemented by the qkd-relay gateway.",
    description=(
        "The calling KME or gateway is identified by its client certificate (URI SAN "
        "urn:qkd-relay:gateway:<id> or urn:qkd-relay:kme:<id>). Bodies are strict JSON (no duplicate "
        "members, NaN or unpaired surrogates) of at most 4 MiB. A request refused before 200/202 leaves "
        "no key associated with anything."
    ),
    paths={
        "/kmapi/versions": {
            "get": {
                "operationId": "getVersions",
                "summary": "API versions and optional capabilities of this KME.",
                "responses": {
                    "200": {"description": "Versions.", "content": {JSON: {"schema": ref("VersionContainer")}}},
                    **_ERRORS,
                },
            }
        },
        "/kmapi/v1/ext_keys": {
            "post": {
                "operationId": "postExtKeys",
                "summary": "Hand over keys for target SAEs served by this domain.",
                "requestBody": {"required": True, "content": {JSON: {"schema": ref("ExtKeyContainer")}}},
                "responses": {"200": _ACKS_NOW, "202": _ACKS_LATER, **_ERRORS},
            }
        },
        "/kmapi/v1/ext_keys/ack": {
            "post": {
                "operationId": "postAcks",
                "summary": "Acknowledge keys this KME handed over to the caller.",
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": {"type": "array", "minItems": 1, "maxItems": 1024, "items": ref("AckContainer")}
                        }
                    },
                },
                "responses": {"200": {"description": "Acks recorded."}, **_ERRORS},
            }
        },
        "/kmapi/v1/ext_keys/void": {
            "post": {
                "operationId": "postVoid",
                "summary": "Withdraw keys handed over earlier.",
                "requestBody": {"required": True, "content": {JSON: {"schema": ref("VoidContainer")}}},
                "responses": {"200": _ACKS_NOW, "202": _ACKS_LATER, **_ERRORS},
            }
        },
    },
    components={
        "responses": {
            "BadRequest": _problem_response("Malformed, incomplete or unroutable request; nothing associated."),
            "Unauthorized": _problem_response("The certificate does not identify a KME or gateway."),
            "NotFound": _problem_response("No such path."),
            "MethodNotAllowed": _problem_response("The path exists but not with this method."),
            "TooLarge": _problem_response("The request body exceeds the size limit."),
            "Unavailable": _problem_response(
                "Cannot serve now: unsupported mandatory extension, no route, storage down, internal failure."
            ),
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "required": ["type", "status", "title"],
                "properties": {
                    "type": {"type": "string", "description": "A problem type URI, or about:blank."},
                    "status": {"type": "integer", "minimum": 400, "maximum": 599},
                    "title": {"type": "string"},
                    "details": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 1024}},
                },
            },
            "VersionContainer": {
                "type": "object",
                "required": ["versions"],
                "properties": {
                    "versions": {"type": "array", "maxItems": 1000, "items": {"type": "string", "maxLength": 16}},
                    "capabilities": {"type": "array", "maxItems": 1000, "items": {"type": "string", "maxLength": 128}},
                    "extension": {"type": "object"},
                },
            },
            "ExtKey": {
                "type": "object",
                "required": ["key_id", "value"],
                "additionalProperties": False,
                "properties": {
                    "key_id": _KEY_ID,
                    "value": {
                        "type": "string",
                        "minLength": 1,
                        "contentEncoding": "base64",
                        "format": "byte",
                        "description": "The key bytes (at most 1024).",
                    },
                    "extension": _EXTENSION,
                },
            },
            "ExtKeyContainer": {
                "type": "object",
                "required": ["keys", "initiator_sae_id", "target_sae_ids"],
                "additionalProperties": False,
                "properties": {
                    "keys": {"type": "array", "minItems": 1, "maxItems": 1024, "items": ref("ExtKey")},
                    "initiator_sae_id": _SAE_ID,
                    "target_sae_ids": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 1024,
                        "uniqueItems": True,
                        "items": _SAE_ID,
                    },
                    "ack_callback_url": _CALLBACK,
                    "extension_mandatory": _EXTENSION,
                    "extension_optional": _EXTENSION,
                },
            },
            "AckContainer": {
                "type": "object",
                "required": ["key_id_container", "ack_status", "initiator_sae_id", "target_sae_ids"],
                "additionalProperties": False,
                "properties": {
                    "key_id_container": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 1024,
                        "items": {
                            "type": "object",
                            "required": ["key_id"],
                            "additionalProperties": False,
                            "properties": {"key_id": _KEY_ID, "extension": _EXTENSION},
                        },
                    },
                    "ack_status": {"enum": ["relayed", "failed", "voided", "failed to void", "key not present"]},
                    "initiator_sae_id": _SAE_ID,
                    "target_sae_ids": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 1024,
                        "uniqueItems": True,
                        "items": _SAE_ID,
                    },
                    "message": {"type": "string", "maxLength": 4096},
                    "extension": _EXTENSION,
                },
            },
            "VoidContainer": {
                "type": "object",
                "required": ["key_ids", "initiator_sae_id", "target_sae_ids"],
                "additionalProperties": False,
                "description": "Empty key_ids voids every key of the SAE pair and then needs all_confirmation.",
                "properties": {
                    "key_ids": {"type": "array", "maxItems": 1024, "items": _KEY_ID},
                    "initiator_sae_id": _SAE_ID,
                    "target_sae_ids": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 1024,
                        "uniqueItems": True,
                        "items": _SAE_ID,
                    },
                    "ack_callback_url": _CALLBACK,
                    "extension": _EXTENSION,
                    "all_confirmation": {"type": "boolean"},
                },
            },
        },
    },
)
