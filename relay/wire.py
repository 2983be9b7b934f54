"""How the ETSI interfaces describe their messages: once, as pydantic-validated dataclasses.

Each 014 and 020 message is a frozen dataclass whose fields carry the wire names (aliases), bounds and
formats. :class:`WireCodec` parses untrusted JSON into one of them in pydantic's strict mode (unknown
members, booleans for integers and every other wrong type refused), writes it back with the wire names,
and gives the JSON Schema the served OpenAPI documents are built from, so parser, writer and document
cannot drift apart. Duplicate members, NaN and unpaired surrogates are refused earlier, by
``relay.strict_json``; each interface maps :class:`pydantic.ValidationError` onto its own error type.
Invariants: a parsed message satisfies its schema; key data travels as strict RFC 4648 base64 (Table 1),
key_IDs as UUIDs in their canonical lowercase form.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Self, TypeVar

from pydantic import (
    AfterValidator,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from relay.domain import canonical_key_id

T = TypeVar("T")
JsonObject = dict[str, Any]

WIRE_CONFIG = ConfigDict(strict=True, extra="forbid", validate_by_alias=True, serialize_by_alias=True)
"""Every message's ``__pydantic_config__``: strict types, no unknown members, wire names on output."""


def strict_base64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _key_id(value: str) -> str:
    canonical = canonical_key_id(value)
    if canonical is None:
        raise PydanticCustomError("key_id", "key_ID is not a UUID (RFC 9562): {value}", {"value": repr(value[:64])})
    return canonical


KeyId = Annotated[
    str,
    AfterValidator(_key_id),
    WithJsonSchema({"type": "string", "format": "uuid", "description": "A UUID (RFC 9562), case-insensitive."}),
]
"""A key_ID: a UUID, kept in canonical lowercase form so that lookups match."""


def _base64_key(value: Any) -> bytes:
    decoded = strict_base64(value) if isinstance(value, str) else None
    if not decoded:
        raise PydanticCustomError("base64", "key data must be non-empty base64 (RFC 4648)")
    return decoded


KeyBytes = Annotated[
    bytes,
    PlainValidator(_base64_key, json_schema_input_type=str),
    PlainSerializer(to_base64, return_type=str),
    WithJsonSchema({"type": "string", "minLength": 1, "contentEncoding": "base64", "format": "byte"}),
]
"""Key bytes, as non-empty base64 on the wire."""


@dataclass(frozen=True)
class WireForm:
    """A field whose Python value is not its wire shape: the value travels as a ``wire`` message.

    ``load`` turns the parsed wire message into the value, ``dump`` the value into a wire message; the
    schema is the wire message's (e.g. a 014 Key entry on the wire, a ``relay.domain.Key`` in Python).
    """

    wire: type
    load: Callable[[Any], Any]
    dump: Callable[[Any], Any]

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        wire_schema = handler.generate_schema(self.wire)
        return core_schema.no_info_after_validator_function(
            self.load,
            wire_schema,
            serialization=core_schema.plain_serializer_function_ser_schema(self.dump, return_schema=wire_schema),
        )


@dataclass(frozen=True)
class Unique:
    """An array that must not list the same ``what`` twice (compared after canonicalisation)."""

    what: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {**handler(schema), "uniqueItems": True}

    def _check(self, items: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(set(items)) != len(items):
            raise PydanticCustomError("unique", "lists the same {what} more than once", {"what": self.what})
        return items


class WireCodec(Generic[T]):
    """Parse, write and describe one message type ``T`` (a dataclass, or an array of them)."""

    def __init__(self, kind: Any) -> None:
        self.adapter: TypeAdapter[T] = TypeAdapter(kind)

    def parse(self, data: Any) -> T:
        """``data`` is a decoded JSON value; raises :class:`pydantic.ValidationError` if it breaks the schema.

        Validation runs in JSON mode, where strict mode means JSON's own types: arrays for tuples, strings
        for enums, no coercion of any kind.
        """
        try:
            text = json.dumps(data, allow_nan=False)
        except (TypeError, ValueError) as exc:  # not a JSON value: NaN, or a caller's bug
            error = PydanticCustomError("json_type", "not a JSON value: {error}", {"error": str(exc)})
            raise ValidationError.from_exception_data(
                "JSON value", [{"type": error, "loc": (), "input": None}]
            ) from None
        return self.adapter.validate_json(text)

    def to_json(self, value: T) -> Any:
        """The wire form: wire names, members at their default (absent, empty, false) left out."""
        return self.adapter.dump_python(value, mode="json", by_alias=True, exclude_defaults=True)


class WireMessage:
    """Base of every message dataclass: its codec, and its wire form."""

    @classmethod
    def codec(cls) -> WireCodec[Self]:
        codec: WireCodec[Self] | None = cls.__dict__.get("_wire_codec")
        if codec is None:  # built on first use: the dataclass must be complete first
            codec = WireCodec(cls)
            setattr(cls, "_wire_codec", codec)
        return codec

    def to_json(self) -> Any:
        return self.codec().to_json(self)
