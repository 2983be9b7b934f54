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
