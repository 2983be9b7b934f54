"""ETSI GS QKD 014 V1.1.1 data formats (clause 6), with the exact JSON member names.

The spec names are camel/snake hybrids (``key_ID``, ``source_KME_ID``); we keep them verbatim on the wire
and expose Pythonic attributes.  Parsing is strict where the spec is normative (types, UUID key IDs,
base64 keys) and lenient where it is optional (unknown ``*_extension`` objects are carried, not dropped),
so that a gateway can relay containers it does not fully understand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay.domain import Key, canonical_key_id
from relay.etsi014.errors import ValidationError
from relay.wire import strict_base64, to_base64

JsonObject = dict[str, Any]

# Mandated 400 messages (clause 6, Tables 4/6/8): clients may match on these strings.
MSG_SIZE_NOT_MULTIPLE_OF_8 = "size shall be a multiple of 8"
MSG_EXTENSION_MANDATORY_UNSUPPORTED = "not all extension_mandatory parameters are supported"
MSG_KEYS_NOT_FOUND = "one or more keys specified are not found on KME"


@dataclass(frozen=True)
class Error:
    """Error (Table 13): ``message`` plus optional name/value ``details`` objects."""

    message: str
    details: list[JsonObject] | None = None

    def to_json(self) -> JsonObject:
        body: JsonObject = {"message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    @classmethod
    def from_json(cls, data: Any) -> Error:
        if not isinstance(data, dict) or not isinstance(data.get("message"), str):
            raise ValidationError("Error must be an object with a string 'message'")
        details = data.get("details")
        if details is not None and not isinstance(details, list):
            raise ValidationError("Error 'details' must be an array")
        return cls(message=data["message"], details=details)


@dataclass(frozen=True)
class Status:
    """Status (Table 9). All eleven items are mandatory; ``status_extension`` is optional."""

    source_kme_id: str
    target_kme_id: str
    master_sae_id: str
    slave_sae_id: str
    key_size: int
    stored_key_count: int
    max_key_count: int
    max_key_per_request: int
    max_key_size: int
    min_key_size: int
    max_sae_id_count: int
    status_extension: JsonObject | None = None

    _WIRE_STRINGS = (
        ("source_kme_id", "source_KME_ID"),
        ("target_kme_id", "target_KME_ID"),
        ("master_sae_id", "master_SAE_ID"),
        ("slave_sae_id", "slave_SAE_ID"),
    )
    _WIRE_INTEGERS = (
        ("key_size", "key_size"),
        ("stored_key_count", "stored_key_count"),
        ("max_key_count", "max_key_count"),
        ("max_key_per_request", "max_key_per_request"),
        ("max_key_size", "max_key_size"),
        ("min_key_size", "min_key_size"),
        ("max_sae_id_count", "max_SAE_ID_count"),
    )

    def to_json(self) -> JsonObject:
        body: JsonObject = {wire: getattr(self, attr) for attr, wire in self._WIRE_STRINGS}
        body.update({wire: getattr(self, attr) for attr, wire in self._WIRE_INTEGERS})
        if self.status_extension is not None:
            body["status_extension"] = self.status_extension
        return body

    @classmethod
    def from_json(cls, data: Any) -> Status:
        data = _require_object(data, "Status")
        values: dict[str, Any] = {}
        for attr, wire in cls._WIRE_STRINGS:
            values[attr] = _require_type(data, wire, str)
        for attr, wire in cls._WIRE_INTEGERS:
            values[attr] = _require_int(data, wire)
        extension = data.get("status_extension")
        if extension is not None and not isinstance(extension, dict):
            raise ValidationError("'status_extension' must be an object")
        return cls(**values, status_extension=extension)


@dataclass(frozen=True)
class KeyRequest:
    """Key request (Table 10). Every item is optional; ``None`` means "use the KME default"."""

    number: int | None = None
    size: int | None = None
    additional_slave_sae_ids: tuple[str, ...] = ()
    extension_mandatory: tuple[JsonObject, ...] = ()
    extension_optional: tuple[JsonObject, ...] = ()

    def to_json(self) -> JsonObject:
        body: JsonObject = {}
        if self.number is not None:
            body["number"] = self.number
        if self.size is not None:
            body["size"] = self.size
        if self.additional_slave_sae_ids:
            body["additional_slave_SAE_IDs"] = list(self.additional_slave_sae_ids)
        if self.extension_mandatory:
            body["extension_mandatory"] = list(self.extension_mandatory)
        if self.extension_optional:
            body["extension_optional"] = list(self.extension_optional)
        return body

    def fits_get_form(self) -> bool:
        """The GET form is allowed only for requests made of ``number`` and/or ``size`` (clause 5.2)."""
        return not (self.additional_slave_sae_ids or self.extension_mandatory or self.extension_optional)

    @classmethod
    def from_json(cls, data: Any) -> KeyRequest:
        data = _require_object(data, "Key request")
        _refuse_unknown(
            data,
            {"number", "size", "additional_slave_SAE_IDs", "extension_mandatory", "extension_optional"},
            "Key request",
        )
        number = _optional_int(data, "number")
        size = _optional_int(data, "size")
        slaves = data.get("additional_slave_SAE_IDs")
        if slaves is not None:
            if not isinstance(slaves, list) or not all(isinstance(s, str) for s in slaves):
                raise ValidationError("'additional_slave_SAE_IDs' must be an array of strings")
            if not slaves:
                raise ValidationError("'additional_slave_SAE_IDs' must not be empty when present")
        return cls(
            number=number,
            size=size,
            additional_slave_sae_ids=tuple(slaves or ()),
            extension_mandatory=_extension_array(data, "extension_mandatory"),
            extension_optional=_extension_array(data, "extension_optional"),
        )

    @classmethod
    def from_query(cls, query: dict[str, str]) -> KeyRequest:
        """Parse the GET form ``?number=&size=``; any other parameter requires the POST form."""
        _refuse_unknown(query, {"number", "size"}, "enc_keys query (other items need POST)")
        return cls(
            number=_query_int(query, "number"),
            size=_query_int(query, "size"),
        )


def key_to_json(key: Key) -> JsonObject:
    """One entry of a Key container's ``keys`` (Table 11): the UUID ``key_ID`` and the key in base64."""
    return {"key_ID": key.key_id, "key": to_base64(key.key)}


def key_from_json(data: Any) -> Key:
    """Parse one ``keys`` entry; its optional extension objects are checked and not kept (we use none)."""
    data = _require_object(data, "key")
    key_id = validate_key_id(_require_type(data, "key_ID", str))
    key = decode_base64(_require_type(data, "key", str))
    _optional_object(data, "key_ID_extension")
    _optional_object(data, "key_extension")
    return Key(key_id, key)


@dataclass(frozen=True)
class KeyContainer:
    """Key container (Table 11). The spec's table says ``Keys`` but its example, and everyone, uses ``keys``."""

    keys: tuple[Key, ...]
    key_container_extension: JsonObject | None = None

    def to_json(self) -> JsonObject:
        body: JsonObject = {"keys": [key_to_json(key) for key in self.keys]}
        if self.key_container_extension is not None:
            body["key_container_extension"] = self.key_container_extension
        return body

    @classmethod
    def from_json(cls, data: Any) -> KeyContainer:
        data = _require_object(data, "Key container")
        keys = data.get("keys")
        if not isinstance(keys, list):
            raise ValidationError("Key container needs a 'keys' array")
        return cls(
            keys=tuple(key_from_json(item) for item in keys),
            key_container_extension=_optional_object(data, "key_container_extension"),
        )


@dataclass(frozen=True)
class KeyIds:
    """Key IDs (Table 12), the body of a POST ``dec_keys``."""

    key_ids: tuple[str, ...]
    key_ids_extension: JsonObject | None = None

    def to_json(self) -> JsonObject:
        body: JsonObject = {"key_IDs": [{"key_ID": key_id} for key_id in self.key_ids]}
        if self.key_ids_extension is not None:
            body["key_IDs_extension"] = self.key_ids_extension
        return body

    @classmethod
    def from_json(cls, data: Any) -> KeyIds:
        data = _require_object(data, "Key IDs")
        _refuse_unknown(data, {"key_IDs", "key_IDs_extension"}, "Key IDs")
        entries = data.get("key_IDs")
        if not isinstance(entries, list) or not entries:
            raise ValidationError("Key IDs needs a non-empty 'key_IDs' array")
        key_ids: list[str] = []
        for entry in entries:
            entry = _require_object(entry, "key_IDs item")
            key_ids.append(validate_key_id(_require_type(entry, "key_ID", str)))
        if len(set(key_ids)) != len(key_ids):
            raise ValidationError("'key_IDs' lists the same key_ID more than once")
        return cls(key_ids=tuple(key_ids), key_ids_extension=_optional_object(data, "key_IDs_extension"))

    @classmethod
    def from_query(cls, query: dict[str, str]) -> KeyIds:
        """The GET form carries exactly one ``key_ID``; more IDs or extensions require POST."""
        _refuse_unknown(query, {"key_ID"}, "dec_keys query (other items need POST)")
        if "key_ID" not in query:
            raise ValidationError("dec_keys GET form needs a 'key_ID' query parameter")
        return cls(key_ids=(validate_key_id(query["key_ID"]),))


def validate_key_id(value: str) -> str:
    """Key IDs are UUIDs (clause 6.3); we return the canonical lowercase form so lookups are stable."""
    canonical = canonical_key_id(value)
    if canonical is None:
        raise ValidationError(f"key_ID is not a UUID: {value[:64]!r}")
    return canonical


def decode_base64(value: str) -> bytes:
    decoded = strict_base64(value)
    if decoded is None:
        raise ValidationError("key is not valid base64 (RFC 4648)")
    return decoded


def _require_object(data: Any, what: str) -> JsonObject:
    if not isinstance(data, dict):
        raise ValidationError(f"{what} must be a JSON object")
    return data


def _require_type(data: JsonObject, name: str, kind: type) -> Any:
    value = data.get(name)
    if not isinstance(value, kind):
        raise ValidationError(f"'{name}' is required and must be a {kind.__name__}")
    return value


def _require_int(data: JsonObject, name: str) -> int:
    value = data.get(name)
    # bool is an int subclass in Python; JSON true must not pass as 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(f"'{name}' is required and must be an integer")
    return value


def _optional_int(data: JsonObject, name: str) -> int | None:
    if data.get(name) is None:
        return None
    return _require_int(data, name)


def _optional_object(data: JsonObject, name: str) -> JsonObject | None:
    value = data.get(name)
    if value is not None and not isinstance(value, dict):
        raise ValidationError(f"'{name}' must be an object")
    return value


def _extension_array(data: JsonObject, name: str) -> tuple[JsonObject, ...]:
    value = data.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValidationError(f"'{name}' must be an array of objects")
    return tuple(value)


def _query_int(query: dict[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    text = raw.strip()
    if not text.lstrip("-").isdigit():
        raise ValidationError(f"'{name}' must be an integer")
    return int(text)


def _refuse_unknown(data: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValidationError(f"{what}: unknown item(s) {', '.join(unknown)}")


@dataclass(frozen=True)
class KeyLimits:
    """The bounds a KME advertises in Status; requests are checked against them before any key is drawn."""

    key_size: int
    min_key_size: int
    max_key_size: int
    max_key_per_request: int
    max_sae_id_count: int = 0

    def resolve(self, request: KeyRequest, master_sae_id: str, slave_sae_id: str) -> tuple[int, int]:
        """Apply the defaults of Table 10 and check every bound; returns ``(number, size)`` in keys and bits."""
        number = 1 if request.number is None else request.number
        size = self.key_size if request.size is None else request.size
        if not 1 <= number <= self.max_key_per_request:
            raise ValidationError(f"number must be between 1 and max_key_per_request ({self.max_key_per_request})")
        if size % 8:
            # We deliver whole bytes only, so the spec's own message applies (clause 5.2, Table 6).
            raise ValidationError(MSG_SIZE_NOT_MULTIPLE_OF_8)
        if not self.min_key_size <= size <= self.max_key_size:
            raise ValidationError(
                f"size must be between min_key_size ({self.min_key_size}) and max_key_size ({self.max_key_size})"
            )
        self._check_additional_slaves(request.additional_slave_sae_ids, master_sae_id, slave_sae_id)
        if request.extension_mandatory:
            names = sorted({name for item in request.extension_mandatory for name in item})
            raise ValidationError(
                MSG_EXTENSION_MANDATORY_UNSUPPORTED,
                [{"extension_mandatory_unsupported": f"{name} is not supported"} for name in names],
            )
        return number, size

    def _check_additional_slaves(self, slaves: tuple[str, ...], master: str, slave: str) -> None:
        if not slaves:
            return
        if len(slaves) > self.max_sae_id_count:
            raise ValidationError(
                f"additional_slave_SAE_IDs holds {len(slaves)} IDs; max_SAE_ID_count is {self.max_sae_id_count}"
            )
        if any(not s.strip() for s in slaves):
            raise ValidationError("additional_slave_SAE_IDs must not contain blank IDs")
        if len(set(slaves)) != len(slaves):
            raise ValidationError("additional_slave_SAE_IDs lists an SAE more than once")
        if master in slaves or slave in slaves:
            raise ValidationError("additional_slave_SAE_IDs must not repeat the master or the slave SAE")
