"""What the 014 and 020 documents share: media type, references, the document's own path, mutual TLS."""

from __future__ import annotations

from typing import Any

JSON = "application/json"
OPENAPI_PATH = "/openapi.json"
MUTUAL_TLS = {"type": "mutualTLS", "description": "A client certificate issued by the operator's CA."}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def openapi_path_item() -> dict[str, Any]:
    """``GET /openapi.json``: the document itself, for authenticated callers."""
    return {
        "get": {
            "operationId": "getOpenApiDocument",
            "summary": "This document.",
            "responses": {
                "200": {"description": "The OpenAPI document.", "content": {JSON: {"schema": {"type": "object"}}}},
                "401": {"$ref": "#/components/responses/Unauthorized"},
            },
        }
    }


def document(
    title: str, summary: str, description: str, paths: dict[str, Any], components: dict[str, Any]
) -> dict[str, Any]:
    """The frame both documents share: version, licence, relative server, mutual TLS everywhere, and the
    document's own path."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": "1.1.1-qkd-relay.1",
            "summary": summary,
            "description": description,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/", "description": "The listener the document was fetched from."}],
        "security": [{"mutualTLS": []}],
        "paths": {**paths, OPENAPI_PATH: openapi_path_item()},
        "components": {**components, "securitySchemes": {"mutualTLS": MUTUAL_TLS}},
    }
