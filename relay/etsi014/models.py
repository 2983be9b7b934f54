"""ETSI GS QKD 014 V1.1.1 data formats (clause 6), each described once, with the exact JSON member names.

The spec names are camel/snake hybrids (``key_ID``, ``source_KME_ID``); they are the fields' wire names
(aliases) and the attributes are Pythonic. Each message is parsed strictly (``relay.wire``: types, UUID
key IDs, base64 keys, no unknown members), written back, and described in the served OpenAPI document
(``relay.etsi014.openapi``) from the same declaration. Extension objects are carried, not interpreted.
A message that breaks its schema is a :class:`ValidationError` (400) naming the offending member.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated, Any, Self

from pydantic import Field
from pydantic import ValidationError as SchemaError
from pydantic_core import ErrorDetails

from relay.domain import Key, canonical_key_id
from relay.etsi014.errors import ValidationError
from relay.wire import WIRE_CONFIG, KeyBytes, KeyId, Unique, WireForm, WireMessage

JsonObject = dict[str, Any]

# Mandated 400 messages (clause 6, Tables 4/6/8): clients may match on these strings.
MSG_SIZE_NOT_MULTIPLE_OF_8 = "size shall be a multiple of 8"
MSG_EXTENSION_MANDATORY_UNSUPPORTED = "not all extension_mandatory parameters are supported"
MSG_KEYS_NOT_FOUND = "one or more keys specified are not found on KME"

Extension = Annotated[
    JsonObject | None, Field(description="Implementation-specific members; carried, not interpreted.")
]
Count = Annotated[int, Field(ge=0)]
_UNKNOWN_MEMBER = {"extra_forbidden", "unexpected_keyword_argument"}


class _Message(WireMessage):
    @classmethod
    def from_json(cls, data: Any) -> Self:
        try:
            return cls.codec().parse(data)
        except SchemaError as exc:
            raise _refusal(cls.__name__, exc) from None


@dataclass(frozen=True)
class Error(_Message):
    """Error (Table 13): ``message`` plus optional name/value ``details`` objects."""

    __pydantic_config__ = WIRE_CONFIG

    message: str
    details: list[JsonObject] | None = None


@dataclass(frozen=True)
class Status(_Message):
    """Status (Table 9). All eleven items are mandatory; ``status_extension`` is optional."""

    __pydantic_config__ = WIRE_CONFIG

    source_kme_id: Annotated[str, Field(alias="source_KME_ID")]
    target_kme_id: Annotated[str, Field(alias="target_KME_ID")]
    master_sae_id: Annotated[str, Field(alias="master_SAE_ID")]
    slave_sae_id: Annotated[str, Field(alias="slave_SAE_ID")]
    key_size: Annotated[int, Field(description="Default key size in bits.")]
    stored_key_count: Count
    max_key_count: Count
    max_key_per_request: Count
    max_key_size: int
    min_key_size: int
    max_sae_id_count: Annotated[Count, Field(alias="max_SAE_ID_count")]
    status_extension: Extension = None


@dataclass(frozen=True)
class KeyRequest(_Message):
    """Key request (Table 10). Every item is optional; ``None`` means "use the KME default"."""

    __pydantic_config__ = WIRE_CONFIG

    number: Annotated[int | None, Field(description="How many keys (default 1).")] = None
    size: Annotated[int | None, Field(description="Key size in bits, a multiple of 8 (default: key_size).")] = None
    additional_slave_sae_ids: Annotated[tuple[str, ...], Field(alias="additional_slave_SAE_IDs", min_length=1)] = ()
    extension_mandatory: tuple[JsonObject, ...] = ()
    extension_optional: tuple[JsonObject, ...] = ()

    def fits_get_form(self) -> bool:
        """The GET form is allowed only for requests made of ``number`` and/or ``size`` (clause 5.2)."""
        return not (self.additional_slave_sae_ids or self.extension_mandatory or self.extension_optional)

    @classmethod
    def from_query(cls, query: dict[str, str]) -> KeyRequest:
        """Parse the GET form ``?number=&size=``; any other parameter requires the POST form."""
        _refuse_unknown(query, {"number", "size"}, "enc_keys query (other items need POST)")
        return cls(number=_query_int(query, "number"), size=_query_int(query, "size"))


@dataclass(frozen=True)
class KeyEntry:
    """One entry of a Key container's ``keys`` (Table 11); in Python it is a :class:`relay.domain.Key`.

    Its optional extension objects are checked and not kept (we use none).
    """

    __pydantic_config__ = WIRE_CONFIG

    key_id: Annotated[KeyId, Field(alias="key_ID")]
    key: Annotated[KeyBytes, Field(description="The key bytes.")]
    key_id_extension: Annotated[Extension, Field(alias="key_ID_extension")] = None
    key_extension: Extension = None

    def to_key(self) -> Key:
        return Key(self.key_id, self.key)

    @classmethod
    def of(cls, key: Key) -> KeyEntry:
        return cls(key.key_id, key.key)


@dataclass(frozen=True)
class KeyContainer(_Message):
    """Key container (Table 11). The spec's table says ``Keys`` but its example, and everyone, uses ``keys``."""

    __pydantic_config__ = WIRE_CONFIG

    keys: tuple[Annotated[Key, WireForm(KeyEntry, load=KeyEntry.to_key, dump=KeyEntry.of)], ...]
    key_container_extension: Extension = None


@dataclass(frozen=True)
class KeyIdEntry:
    """One item of Key IDs' ``key_IDs`` (Table 12); in Python it is the key_ID itself."""

    __pydantic_config__ = WIRE_CONFIG

    key_id: Annotated[KeyId, Field(alias="key_ID")]


@dataclass(frozen=True)
class KeyIds(_Message):
    """Key IDs (Table 12), the body of a POST ``dec_keys``."""

    __pydantic_config__ = WIRE_CONFIG

    key_ids: Annotated[
        tuple[Annotated[str, WireForm(KeyIdEntry, load=attrgetter("key_id"), dump=KeyIdEntry)], ...],
        Field(alias="key_IDs", min_length=1),
        Unique("key_ID"),
    ]
    key_ids_extension: Annotated[Extension, Field(alias="key_IDs_extension")] = None

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


def _refusal(what: str, exc: SchemaError) -> ValidationError:
    """The 400 for a message that breaks its schema: unknown members first, else the first few faults."""
    errors = exc.errors(include_url=False, include_input=False)
    unknown = sorted({_path(error) for error in errors if error["type"] in _UNKNOWN_MEMBER})
    if unknown:
        return ValidationError(f"{what}: unknown item(s) {', '.join(unknown)}"[:512])
    return ValidationError(f"{what}: " + "; ".join(_fault(error) for error in errors[:3]))


def _fault(error: ErrorDetails) -> str:
    path = _path(error)
    if error["type"] == "missing":
        return f"'{path}' is required"
    return f"'{path}': {error['msg']}" if path else error["msg"]


def _path(error: ErrorDetails) -> str:
    """``keys[0].key_ID``: the wire names down to the offending member."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".")[:128]


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
