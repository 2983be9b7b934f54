"""ETSI GS QKD 020 V1.1.1 containers, parsed strictly against the published schema's constraints.

Names and bounds follow the V1.1.1 OpenAPI document (``components/schemas``): SAE IDs of 1 to 64
characters, extensions as objects of 1 to 1024 members named ``E<PEN>_...``, at most 1024 acks or key
IDs per container, UUID key IDs and base64 values. A request that breaks them is a 400 whose problem type
depends on the endpoint, because the spec gives each endpoint its own "not understood" type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from relay.domain import canonical_key_id
from relay.etsi020.problems import (
    ACK_NOT_UNDERSTOOD,
    INVALID_PARAMETER,
    MISSING_PARAMETERS,
    NO_KEY_IDS_OR_CONFIRMATION,
    VOID_NOT_UNDERSTOOD,
    Problem,
    ProblemType,
)
from relay.wire import strict_base64, to_base64

JsonObject = dict[str, Any]
MAX_SAE_ID = 64
MAX_ITEMS = 1024
MAX_VERSION_ITEMS = 1000  # versions and capabilities: the spec's bound differs from the other arrays'
MAX_EXTENSION_MEMBERS = 1024
MAX_URL = 1024
MAX_MESSAGE = 4096
SYNCHRONOUS_MODE = "synchronous_mode"
_SAE_ID_CHARACTERS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")  # RFC 3986 URI characters
_EXTENSION_NAME = re.compile(r"^E[0-9]+_.+$")


class AckStatus(StrEnum):
    RELAYED = "relayed"
    FAILED = "failed"
    VOIDED = "voided"
    FAILED_TO_VOID = "failed to void"
    KEY_NOT_PRESENT = "key not present"


@dataclass(frozen=True)
class ExtKey:
    key_id: str
    value: bytes
    extension: JsonObject | None = None

    def to_json(self) -> JsonObject:
        body: JsonObject = {"key_id": self.key_id, "value": to_base64(self.value)}
        if self.extension:
            body["extension"] = self.extension
        return body


@dataclass(frozen=True)
class ExtKeyContainer:
    """The body of ``POST /kmapi/v1/ext_keys``; no ``ack_callback_url`` asks for the synchronous mode."""

    keys: tuple[ExtKey, ...]
    initiator_sae_id: str
    target_sae_ids: tuple[str, ...]
    ack_callback_url: str | None = None
    extension_mandatory: JsonObject | None = None
    extension_optional: JsonObject | None = None

    def to_json(self) -> JsonObject:
        body: JsonObject = {
            "keys": [key.to_json() for key in self.keys],
            "initiator_sae_id": self.initiator_sae_id,
            "target_sae_ids": list(self.target_sae_ids),
        }
        for name in ("ack_callback_url", "extension_mandatory", "extension_optional"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        return body

    @classmethod
    def from_json(cls, data: Any) -> ExtKeyContainer:
        parse = _Parser(INVALID_PARAMETER)
        data = parse.container(
            data,
            {"keys", "initiator_sae_id", "target_sae_ids"},
            {"ack_callback_url", "extension_mandatory", "extension_optional"},
        )
        keys = parse.array(data, "keys", minimum=1)
        return cls(
            keys=tuple(parse.ext_key(item) for item in keys),
            initiator_sae_id=parse.sae_id(data["initiator_sae_id"], "initiator_sae_id"),
            target_sae_ids=parse.sae_ids(data),
            ack_callback_url=parse.callback_url(data),
            extension_mandatory=parse.extension(data, "extension_mandatory"),
            extension_optional=parse.extension(data, "extension_optional"),
        )


@dataclass(frozen=True)
class AckContainer:
    key_ids: tuple[str, ...]
    ack_status: AckStatus
    initiator_sae_id: str
    target_sae_ids: tuple[str, ...]
    message: str | None = None
    extension: JsonObject | None = None

    def to_json(self) -> JsonObject:
        body: JsonObject = {
            "key_id_container": [{"key_id": key_id} for key_id in self.key_ids],
            "ack_status": self.ack_status.value,
            "initiator_sae_id": self.initiator_sae_id,
            "target_sae_ids": list(self.target_sae_ids),
        }
        if self.message is not None:
            body["message"] = self.message
        if self.extension:
            body["extension"] = self.extension
        return body


def parse_ack_containers(data: Any) -> tuple[AckContainer, ...]:
    """The body of ``POST /kmapi/v1/ext_keys/ack`` and of a synchronous 200: an array of ack containers."""
    parse = _Parser(ACK_NOT_UNDERSTOOD)
    if not isinstance(data, list) or not data:
        raise parse.fail("ack_not_understood", "the body must be a non-empty array of ack containers")
    if len(data) > MAX_ITEMS:
        raise parse.fail("ack_not_understood", f"at most {MAX_ITEMS} ack containers per request")
    acks = []
    for item in data:
        item = parse.container(
            item, {"key_id_container", "ack_status", "initiator_sae_id", "target_sae_ids"}, {"message", "extension"}
        )
        entries = parse.array(item, "key_id_container", minimum=1)
        key_ids = tuple(parse.key_id(parse.container(entry, {"key_id"}, {"extension"})["key_id"]) for entry in entries)
        status = item["ack_status"]
        if status not in {s.value for s in AckStatus}:
            raise parse.fail("ack_status", f"unknown ack_status {str(status)[:32]!r}")
        message = item.get("message")
        if message is not None and (not isinstance(message, str) or len(message) > MAX_MESSAGE):
            raise parse.fail("message", f"message must be a string of at most {MAX_MESSAGE} characters")
        acks.append(
            AckContainer(
                key_ids=key_ids,
                ack_status=AckStatus(status),
                initiator_sae_id=parse.sae_id(item["initiator_sae_id"], "initiator_sae_id"),
                target_sae_ids=parse.sae_ids(item),
                message=message,
                extension=parse.extension(item, "extension"),
            )
        )
    return tuple(acks)


@dataclass(frozen=True)
class VoidContainer:
    """``POST /kmapi/v1/ext_keys/void``; empty ``key_ids`` voids every key of the SAE pair, if confirmed."""

    key_ids: tuple[str, ...]
    initiator_sae_id: str
    target_sae_ids: tuple[str, ...]
    ack_callback_url: str | None = None
    extension: JsonObject | None = None
    all_confirmation: bool = False

    def to_json(self) -> JsonObject:
        body: JsonObject = {
            "key_ids": list(self.key_ids),
            "initiator_sae_id": self.initiator_sae_id,
            "target_sae_ids": list(self.target_sae_ids),
        }
        if self.ack_callback_url is not None:
            body["ack_callback_url"] = self.ack_callback_url
        if self.extension:
            body["extension"] = self.extension
        if self.all_confirmation:
            body["all_confirmation"] = True
        return body

    @classmethod
    def from_json(cls, data: Any) -> VoidContainer:
        parse = _Parser(VOID_NOT_UNDERSTOOD)
        data = parse.container(
            data,
            {"key_ids", "initiator_sae_id", "target_sae_ids"},
            {"ack_callback_url", "extension", "all_confirmation"},
        )
        key_ids = tuple(parse.key_id(item) for item in parse.array(data, "key_ids", minimum=0))
        confirmation = data.get("all_confirmation", False)
        if not isinstance(confirmation, bool):
            raise parse.fail("all_confirmation", "all_confirmation must be a boolean")
        if not key_ids and not confirmation:
            raise Problem(
                400,
                NO_KEY_IDS_OR_CONFIRMATION,
                {
                    "no_all_confirmation": "empty key_ids voids every key between these SAEs; "
                    "set all_confirmation to true if that is intended",
                },
            )
        return cls(
            key_ids=key_ids,
            initiator_sae_id=parse.sae_id(data["initiator_sae_id"], "initiator_sae_id"),
            target_sae_ids=parse.sae_ids(data),
            ack_callback_url=parse.callback_url(data),
            extension=parse.extension(data, "extension"),
            all_confirmation=confirmation,
        )


@dataclass(frozen=True)
class VersionContainer:
    versions: tuple[str, ...]
    capabilities: tuple[str, ...] = ()

    def to_json(self) -> JsonObject:
        body: JsonObject = {"versions": list(self.versions)}
        if self.capabilities:
            body["capabilities"] = list(self.capabilities)
        return body

    @classmethod
    def from_json(cls, data: Any) -> VersionContainer:
        parse = _Parser(INVALID_PARAMETER)
        data = parse.container(data, {"versions"}, {"capabilities", "extension"})
        versions = parse.array(data, "versions", minimum=0, maximum=MAX_VERSION_ITEMS)
        capabilities = (
            parse.array(data, "capabilities", minimum=0, maximum=MAX_VERSION_ITEMS) if "capabilities" in data else []
        )
        if not all(isinstance(v, str) and len(v) <= 16 for v in versions):
            raise parse.fail("versions", "versions must be strings of at most 16 characters")
        if not all(isinstance(c, str) and len(c) <= 128 for c in capabilities):
            raise parse.fail("capabilities", "capabilities must be strings of at most 128 characters")
        return cls(tuple(versions), tuple(capabilities))


class _Parser:
    """Schema checks shared by every container; ``kind`` is the endpoint's 400 problem type."""

    def __init__(self, kind: ProblemType) -> None:
        self.kind = kind

    def fail(self, name: str, message: str) -> Problem:
        return Problem(400, self.kind, {name: message})

    def container(self, data: Any, required: set[str], optional: set[str]) -> JsonObject:
        if not isinstance(data, dict):
            raise self.fail("malformed_container", "expected a JSON object")
        missing = sorted(required - set(data))
        if missing:
            raise Problem(400, MISSING_PARAMETERS, {"missing_parameters": ", ".join(missing)})
        unknown = sorted(set(data) - required - optional)
        if unknown:
            raise self.fail("unknown_parameters", ", ".join(unknown)[:256])
        return data

    def array(self, data: JsonObject, name: str, *, minimum: int, maximum: int = MAX_ITEMS) -> list[Any]:
        value = data.get(name)
        if not isinstance(value, list) or not minimum <= len(value) <= maximum:
            raise self.fail(name, f"{name} must be an array of {minimum} to {maximum} items")
        return value

    def key_id(self, value: Any) -> str:
        canonical = canonical_key_id(value) if isinstance(value, str) else None
        if canonical is None:
            raise self.fail("key_id", "key_id must be a UUID (RFC 9562)")
        return canonical

    def ext_key(self, item: Any) -> ExtKey:
        item = self.container(item, {"key_id", "value"}, {"extension"})
        value = strict_base64(item["value"]) if isinstance(item["value"], str) else None
        if not value:
            raise self.fail("value", "value must be non-empty base64 key data (RFC 4648)")
        return ExtKey(self.key_id(item["key_id"]), value, self.extension(item, "extension"))

    def sae_id(self, value: Any, name: str) -> str:
        if not isinstance(value, str) or not 1 <= len(value) <= MAX_SAE_ID or not _SAE_ID_CHARACTERS.match(value):
            raise self.fail(name, f"{name} must be 1 to {MAX_SAE_ID} URI characters")
        return value

    def sae_ids(self, data: JsonObject) -> tuple[str, ...]:
        targets = tuple(self.sae_id(t, "target_sae_ids") for t in self.array(data, "target_sae_ids", minimum=1))
        if len(set(targets)) != len(targets):
            raise self.fail("target_sae_ids", "target_sae_ids lists an SAE more than once")
        return targets

    def callback_url(self, data: JsonObject) -> str | None:
        url = data.get("ack_callback_url")
        if url is None:
            return None
        if not isinstance(url, str) or not url.startswith("https://") or len(url) > MAX_URL or " " in url:
            raise self.fail("ack_callback_url", f"ack_callback_url must be an https:// URL (at most {MAX_URL} chars)")
        return url

    def extension(self, data: JsonObject, name: str) -> JsonObject | None:
        value = data.get(name)
        if value is None:
            return None
        if not isinstance(value, dict) or not 1 <= len(value) <= MAX_EXTENSION_MEMBERS:
            raise self.fail(name, f"{name} must be an object with 1 to {MAX_EXTENSION_MEMBERS} members")
        badly_named = sorted(member for member in value if not _EXTENSION_NAME.match(member))
        if badly_named:
            raise self.fail(name, f"extension names must be E<PEN>_...: {', '.join(badly_named)[:200]}")
        return value
