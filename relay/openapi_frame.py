"""What the served 014 and 020 OpenAPI documents share: the frame, and schemas made from the messages.

Each interface (``relay.etsi014.openapi``, ``relay.etsi020.openapi``) describes its routes; the message
schemas come from its pydantic-described messages (``relay.wire``), so the document says exactly what
the parser accepts and the writer emits. Documents are served at :data:`OPENAPI_PATH` to authenticated
callers, so clients and fuzzers can be generated against what is deployed.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from relay.wire import WireCodec

JSON = "application/json"
OPENAPI_PATH = "/openapi.json"
MUTUAL_TLS = {"type": "mutualTLS", "description": "A client certificate issued by the operator's CA."}
SCHEMAS = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMAS + name}


class _OpenApiSchema(GenerateJsonSchema):
    """Only what a client needs: no generated titles, no defaults (the descriptions say them)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])


def component_schemas(codecs: dict[str, WireCodec[Any]]) -> dict[str, JsonSchemaValue]:
    """``components/schemas``: the named messages and every message they contain."""
    named, definitions = TypeAdapter.json_schemas(
        [(name, "validation", codec.adapter) for name, codec in codecs.items()],
        ref_template=SCHEMAS + "{model}",
        schema_generator=_OpenApiSchema,
    )
    schemas: dict[str, JsonSchemaValue] = {
        name: {key: value for key, value in schema.items() if key != "title"}
        for name, schema in definitions.get("$defs", {}).items()
    }
    for (name, _), schema in named.items():
        if schema != ref(name):
            schemas[name] = {key: value for key, value in schema.items() if key != "title"}
    return schemas


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


def fresh_copies(build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Build a document once; hand every caller its own copy, to modify freely."""
    built = functools.cache(build)
    return functools.wraps(build)(lambda: copy.deepcopy(built()))
