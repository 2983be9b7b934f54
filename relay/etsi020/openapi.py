"""OpenAPI 3.1 description of the ETSI GS QKD 020 inter-KMS API as this project serves it.

The gateway's 020 listener (``relay.etsi020.server``): another KME or gateway, identified by its client
certificate (mutual TLS 1.3), hands over keys for an SAE this domain serves, acknowledges keys we handed
over, or voids keys. Failures are RFC 9457 problem details, sent as ``application/json`` as the spec says,
whose ``type`` names the reason; ``status`` repeats the HTTP status. Each operation documents exactly the
status codes the V1.1.1 document lists for it, except 408, which this listener never answers; the 404 and
405 it gives outside those operations are described once, in the document's description. The routes are
described here; every message schema is generated from ``relay.etsi020.models`` and ``relay.etsi020.problems``.
"""

from __future__ import annotations

from typing import Any

from relay.etsi020.models import (
    ACK_CONTAINERS,
    MAX_BODY_BYTES,
    AckContainer,
    ExtKeyContainer,
    VersionContainer,
    VoidContainer,
)
from relay.etsi020.problems import PROBLEM_DETAILS
from relay.openapi_frame import JSON, component_schemas, document, fresh_copies, ref


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ref("Problem")}}}


def _errors(*statuses: str) -> dict[str, Any]:
    """The error responses of one operation: the spec's for it, less 408, which this listener never sends."""
    return {status: {"$ref": f"#/components/responses/{_ERROR_RESPONSES[status]}"} for status in statuses}


_ERROR_RESPONSES = {"400": "BadRequest", "401": "Unauthorized", "503": "Unavailable"}
_ACKS_NOW = {
    "description": "Synchronous mode: one ack container per outcome.",
    "content": {JSON: {"schema": {"type": "array", "items": ref("AckContainer")}}},
}
_ACKS_LATER = {"description": "Asynchronous mode: accepted; acks follow at ack_callback_url."}


@fresh_copies
def etsi020_document() -> dict[str, Any]:
    schemas = component_schemas(
        {
            "Problem": PROBLEM_DETAILS,
            "VersionContainer": VersionContainer.codec(),
            "ExtKeyContainer": ExtKeyContainer.codec(),
            "AckContainer": AckContainer.codec(),
            "AckContainers": ACK_CONTAINERS,
            "VoidContainer": VoidContainer.codec(),
        }
    )
    return document(
        title="qkd-relay ETSI GS QKD 020 inter-KMS key transfer",
        summary="Key hand-over between key management systems, as implemented by the qkd-relay gateway.",
        description=(
            "The calling KME or gateway is identified by its client certificate (URI SAN "
            "urn:qkd-relay:gateway:<id> or urn:qkd-relay:kme:<id>). Bodies are strict JSON (no duplicate "
            f"members, NaN or unpaired surrogates) of at most {MAX_BODY_BYTES} bytes (the largest valid request plus "
            "room for extensions); a larger body is a 400. A request refused before 200/202 leaves "
            "no key associated with anything. Each operation lists the codes the specification gives it, "
            "except 408 (ext_keys and ext_keys/void): this listener never answers 408, it closes a connection "
            "whose request head does not arrive within its idle timeout. Outside the specification's "
            "operations, an unknown path is a 404 and a known path with another method a 405 (with Allow), "
            "both RFC 9457 about:blank problems."
        ),
        paths={
            "/kmapi/versions": {
                "get": {
                    "operationId": "getVersions",
                    "summary": "API versions and optional capabilities of this KME.",
                    "responses": {
                        "200": {"description": "Versions.", "content": {JSON: {"schema": ref("VersionContainer")}}},
                        **_errors("401", "503"),
                    },
                }
            },
            "/kmapi/v1/ext_keys": {
                "post": {
                    "operationId": "postExtKeys",
                    "summary": "Hand over keys for target SAEs served by this domain.",
                    "requestBody": {"required": True, "content": {JSON: {"schema": ref("ExtKeyContainer")}}},
                    "responses": {"200": _ACKS_NOW, "202": _ACKS_LATER, **_errors("400", "401", "503")},
                }
            },
            "/kmapi/v1/ext_keys/ack": {
                "post": {
                    "operationId": "postAcks",
                    "summary": "Acknowledge keys this KME handed over to the caller.",
                    "requestBody": {
                        "required": True,
                        "content": {JSON: {"schema": ref("AckContainers")}},
                    },
                    "responses": {"200": {"description": "Acks recorded."}, **_errors("400", "401", "503")},
                }
            },
            "/kmapi/v1/ext_keys/void": {
                "post": {
                    "operationId": "postVoid",
                    "summary": "Withdraw keys handed over earlier.",
                    "requestBody": {"required": True, "content": {JSON: {"schema": ref("VoidContainer")}}},
                    "responses": {"200": _ACKS_NOW, "202": _ACKS_LATER, **_errors("400", "401", "503")},
                }
            },
        },
        components={
            "responses": {
                "BadRequest": _problem_response("Malformed, incomplete or unroutable request; nothing associated."),
                "Unauthorized": _problem_response("The certificate does not identify a KME or gateway."),
                "Unavailable": _problem_response(
                    "Cannot serve now: unsupported mandatory extension, no route, storage down, internal failure."
                ),
            },
            "schemas": schemas,
        },
    )
