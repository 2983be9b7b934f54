"""ETSI GS QKD 020 V1.1.1 containers, each described once against the published schema's constraints.

Names and bounds follow the V1.1.1 OpenAPI document (``components/schemas``): SAE IDs of 1 to 64
characters, extensions as objects of 1 to 1024 members named ``E<PEN>_...``, at most 1024 acks or key
IDs per container, UUID key IDs and base64 values. The same declarations parse strictly (``relay.wire``),
write, and make the served OpenAPI document (``relay.etsi020.openapi``). A request that breaks them is a
400 whose problem type depends on the endpoint, because the spec gives each endpoint its own "not
understood" type.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from operator import attrgetter
from typing import Annotated, Any, Self

from pydantic import AfterValidator, Field, StringConstraints, model_validator
from pydantic import ValidationError as SchemaError
from pydantic_core import ErrorDetails, PydanticCustomError

from relay.domain import MAX_SAE_ID_LENGTH
from relay.etsi020.problems import (
    ACK_NOT_UNDERSTOOD,
    INVALID_PARAMETER,
    MISSING_PARAMETERS,
    NO_KEY_IDS_OR_CONFIRMATION,
    VOID_NOT_UNDERSTOOD,
    Problem,
    ProblemType,
)
from relay.wire import WIRE_CONFIG, KeyBytes, KeyId, Unique, WireCodec, WireForm, WireMessage

JsonObject = dict[str, Any]
MAX_ITEMS = 1024
MAX_VERSION_ITEMS = 1000  # versions and capabilities: the spec's bound differs from the other arrays'
MAX_EXTENSION_MEMBERS = 1024
MAX_URL = 1024
MAX_MESSAGE = 4096
SYNCHRONOUS_MODE = "synchronous_mode"
# The body limit is what the largest valid request this KME accepts can carry, plus room for extensions:
# MAX_ITEMS keys of MAX_KEY_BYTES (base64, each with its UUID and JSON punctuation), MAX_ITEMS target SAE
# IDs of the longest length, and EXTENSION_ALLOWANCE for extension members, whose size the spec leaves open.
# Anything larger cannot be a request we would carry out: the server refuses it (400) before reading it whole.
MAX_KEY_BYTES = 1024  # the spec's ``value`` has no bound; one relay hop carries at most this much
EXTENSION_ALLOWANCE = 1024 * 1024
_LARGEST_KEY_ENTRY = len('{"key_id":"00000000-0000-0000-0000-000000000000","value":""},') + 4 * math.ceil(
    MAX_KEY_BYTES / 3
)
MAX_BODY_BYTES = MAX_ITEMS * (_LARGEST_KEY_ENTRY + MAX_SAE_ID_LENGTH + 3) + EXTENSION_ALLOWANCE
_URI_CHARACTERS = r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$"  # RFC 3986 URI characters
_EXTENSION_NAME_PATTERN = "^E[0-9]+_.+$"
_EXTENSION_NAME = re.compile(_EXTENSION_NAME_PATTERN)
_UNKNOWN_MEMBER = {"extra_forbidden", "unexpected_keyword_argument"}
_NOT_AN_OBJECT = {"dataclass_type", "model_type", "dataclass_exact_type"}
_NO_KEY_IDS_OR_CONFIRMATION = "no_key_ids_or_confirmation"
# The spec's examples name the details member of the two "not understood" problems (400-extkey-ack and
# 400-extkey-void): a KME acting on details finds it there, followed by what each member broke.
_NOT_UNDERSTOOD_DETAIL = {ACK_NOT_UNDERSTOOD: "ack_not_understood", VOID_NOT_UNDERSTOOD: "key_voiding_error"}


def _extension_names(value: JsonObject) -> JsonObject:
    badly_named = sorted(member for member in value if not _EXTENSION_NAME.match(member))
    if badly_named:
        raise PydanticCustomError(
            "extension_name", "extension names must be E<PEN>_...: {names}", {"names": ", ".join(badly_named)[:200]}
        )
    return value


SaeId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SAE_ID_LENGTH, pattern=_URI_CHARACTERS)]
SaeIds = Annotated[tuple[SaeId, ...], Field(min_length=1, max_length=MAX_ITEMS), Unique("SAE")]
Extension = Annotated[
    JsonObject,
    Field(
        min_length=1,
        max_length=MAX_EXTENSION_MEMBERS,
        json_schema_extra={"propertyNames": {"pattern": _EXTENSION_NAME_PATTERN}},
        description="Members named E<private enterprise number>_<name>.",
    ),
    AfterValidator(_extension_names),
]
CallbackUrl = Annotated[
    str,
    StringConstraints(pattern="^https://[^ ]*$", max_length=MAX_URL),
    Field(description="Where acks are POSTed later (asynchronous mode); absent asks for the synchronous mode."),
]


class AckStatus(StrEnum):
    RELAYED = "relayed"
    FAILED = "failed"
    VOIDED = "voided"
    FAILED_TO_VOID = "failed to void"
    KEY_NOT_PRESENT = "key not present"


class _Container(WireMessage):
    """A request container; a body that breaks its schema is a 400 of the endpoint's problem type."""

    problem_type = INVALID_PARAMETER

    @classmethod
    def from_json(cls, data: Any) -> Self:
        return parse(cls.codec(), data, cls.problem_type)


@dataclass(frozen=True)
class ExtKey(WireMessage):
    __pydantic_config__ = WIRE_CONFIG

    key_id: KeyId
    value: Annotated[KeyBytes, Field(description="The key bytes (at most 1024).")]
    extension: Extension | None = None


@dataclass(frozen=True)
class ExtKeyContainer(_Container):
    """The body of ``POST /kmapi/v1/ext_keys``; no ``ack_callback_url`` asks for the synchronous mode."""

    __pydantic_config__ = WIRE_CONFIG

    keys: Annotated[tuple[ExtKey, ...], Field(min_length=1, max_length=MAX_ITEMS)]
    initiator_sae_id: SaeId
    target_sae_ids: SaeIds
    ack_callback_url: CallbackUrl | None = None
    extension_mandatory: Extension | None = None
    extension_optional: Extension | None = None


@dataclass(frozen=True)
class KeyIdItem:
    """One item of an ack's ``key_id_container``; in Python it is the key_id itself."""

    __pydantic_config__ = WIRE_CONFIG

    key_id: KeyId
    extension: Extension | None = None


@dataclass(frozen=True)
class AckContainer(WireMessage):
    __pydantic_config__ = WIRE_CONFIG

    key_ids: Annotated[
        tuple[Annotated[str, WireForm(KeyIdItem, load=attrgetter("key_id"), dump=KeyIdItem)], ...],
        Field(alias="key_id_container", max_length=MAX_ITEMS),
    ]
    ack_status: AckStatus
    initiator_sae_id: SaeId
    target_sae_ids: SaeIds
    message: Annotated[str | None, Field(max_length=MAX_MESSAGE)] = None
    extension: Extension | None = None


ACK_CONTAINERS: WireCodec[tuple[AckContainer, ...]] = WireCodec(
    Annotated[tuple[AckContainer, ...], Field(max_length=MAX_ITEMS)]
)
"""The body of ``POST /kmapi/v1/ext_keys/ack`` and of a synchronous 200: an array of ack containers.

Like ``key_id_container``, it has no minimum in the spec: ``[]`` is what a void that found nothing to
void answers (synchronously) or posts (asynchronously)."""


def parse_ack_containers(data: Any) -> tuple[AckContainer, ...]:
    return parse(ACK_CONTAINERS, data, ACK_NOT_UNDERSTOOD)


@dataclass(frozen=True)
class VoidContainer(_Container):
    """``POST /kmapi/v1/ext_keys/void``; empty ``key_ids`` voids every key of the SAE pair, if confirmed."""

    __pydantic_config__ = WIRE_CONFIG
    problem_type = VOID_NOT_UNDERSTOOD

    key_ids: Annotated[tuple[KeyId, ...], Field(max_length=MAX_ITEMS)]
    initiator_sae_id: SaeId
    target_sae_ids: SaeIds
    ack_callback_url: CallbackUrl | None = None
    extension: Extension | None = None
    all_confirmation: bool = False

    @model_validator(mode="after")
    def _everything_only_if_confirmed(self) -> Self:
        if not self.key_ids and not self.all_confirmation:
            raise PydanticCustomError(
                _NO_KEY_IDS_OR_CONFIRMATION,
                "empty key_ids voids every key between these SAEs; set all_confirmation to true if that is intended",
            )
        return self


@dataclass(frozen=True)
class VersionContainer(_Container):
    __pydantic_config__ = WIRE_CONFIG

    versions: Annotated[tuple[Annotated[str, Field(max_length=16)], ...], Field(max_length=MAX_VERSION_ITEMS)]
    capabilities: Annotated[tuple[Annotated[str, Field(max_length=128)], ...], Field(max_length=MAX_VERSION_ITEMS)] = ()
    extension: Extension | None = None


def parse(codec: WireCodec[Any], data: Any, kind: ProblemType) -> Any:
    """Parse ``data`` with ``codec``; a body that breaks the schema is a 400 Problem of type ``kind``."""
    try:
        return codec.parse(data)
    except SchemaError as exc:
        raise _problem(exc.errors(include_url=False, include_input=False), kind) from None


def _problem(errors: list[ErrorDetails], kind: ProblemType) -> Problem:
    """Missing members first (their own type), then unknown ones, then what each offending member broke."""
    missing = sorted({_member(error) for error in errors if error["type"] == "missing"})
    if missing:
        return Problem(400, MISSING_PARAMETERS, {"missing_parameters": ", ".join(missing)})
    if any(error["type"] == _NO_KEY_IDS_OR_CONFIRMATION for error in errors):
        return Problem(400, NO_KEY_IDS_OR_CONFIRMATION, {"no_all_confirmation": errors[0]["msg"]})
    unknown = sorted({_member(error) for error in errors if error["type"] in _UNKNOWN_MEMBER})
    if unknown:
        return Problem(400, kind, {"unknown_parameters": ", ".join(unknown)[:256]})
    details: dict[str, str] = {}
    for error in _causes(errors):
        name = "malformed_container" if error["type"] in _NOT_AN_OBJECT else _member(error)
        details.setdefault(name, error["msg"])
    summary = _NOT_UNDERSTOOD_DETAIL.get(kind)
    if summary is not None:
        offending = ", ".join(details)
        details = {summary: f"cannot parse the request: {offending} breaks the schema", **details}
    return Problem(400, kind, details)


def _causes(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Without the consequences: an array reported too short only because one of its items failed."""
    failed_inside = [error["loc"] for error in errors if error["type"] != "too_short"]
    return [
        error
        for error in errors
        if error["type"] != "too_short"
        or not any(loc[: len(error["loc"])] == error["loc"] and len(loc) > len(error["loc"]) for loc in failed_inside)
    ]


def _member(error: ErrorDetails) -> str:
    """The innermost member named in the error's location (array indexes skipped)."""
    names = [part for part in error["loc"] if isinstance(part, str)]
    return names[-1] if names else "malformed_container"
