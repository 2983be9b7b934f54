from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RelayKeyRequest(_message.Message):
    __slots__ = ("transfer_id", "path", "hop", "initiator_sae_id", "target_sae_ids", "sealed_hop", "extension_optional_json", "no_degrade")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    HOP_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_SAE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_SAE_IDS_FIELD_NUMBER: _ClassVar[int]
    SEALED_HOP_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_OPTIONAL_JSON_FIELD_NUMBER: _ClassVar[int]
    NO_DEGRADE_FIELD_NUMBER: _ClassVar[int]
    transfer_id: bytes
    path: _containers.RepeatedScalarFieldContainer[str]
    hop: int
    initiator_sae_id: str
    target_sae_ids: _containers.RepeatedScalarFieldContainer[str]
    sealed_hop: bytes
    extension_optional_json: str
    no_degrade: bool
    def __init__(self, transfer_id: _Optional[bytes] = ..., path: _Optional[_Iterable[str]] = ..., hop: _Optional[int] = ..., initiator_sae_id: _Optional[str] = ..., target_sae_ids: _Optional[_Iterable[str]] = ..., sealed_hop: _Optional[bytes] = ..., extension_optional_json: _Optional[str] = ..., no_degrade: _Optional[bool] = ...) -> None: ...

class RelayKeyResponse(_message.Message):
    __slots__ = ("key_confirmation", "stored_at")
    KEY_CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    STORED_AT_FIELD_NUMBER: _ClassVar[int]
    key_confirmation: bytes
    stored_at: str
    def __init__(self, key_confirmation: _Optional[bytes] = ..., stored_at: _Optional[str] = ...) -> None: ...

class LaneLevelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LaneLevelsResponse(_message.Message):
    __slots__ = ("lanes",)
    LANES_FIELD_NUMBER: _ClassVar[int]
    lanes: str
    def __init__(self, lanes: _Optional[str] = ...) -> None: ...

class VoidKeysRequest(_message.Message):
    __slots__ = ("key_ids", "initiator_sae_id", "target_sae_ids", "path", "hop", "nonce", "issued_at_ms", "signature")
    KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_SAE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_SAE_IDS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    HOP_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    key_ids: _containers.RepeatedScalarFieldContainer[str]
    initiator_sae_id: str
    target_sae_ids: _containers.RepeatedScalarFieldContainer[str]
    path: _containers.RepeatedScalarFieldContainer[str]
    hop: int
    nonce: bytes
    issued_at_ms: int
    signature: bytes
    def __init__(self, key_ids: _Optional[_Iterable[str]] = ..., initiator_sae_id: _Optional[str] = ..., target_sae_ids: _Optional[_Iterable[str]] = ..., path: _Optional[_Iterable[str]] = ..., hop: _Optional[int] = ..., nonce: _Optional[bytes] = ..., issued_at_ms: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class VoidKeysResponse(_message.Message):
    __slots__ = ("voided_key_ids", "failed_to_void_key_ids")
    VOIDED_KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    FAILED_TO_VOID_KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    voided_key_ids: _containers.RepeatedScalarFieldContainer[str]
    failed_to_void_key_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, voided_key_ids: _Optional[_Iterable[str]] = ..., failed_to_void_key_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AnnounceKeysRequest(_message.Message):
    __slots__ = ("qkd_link_id", "key_ids", "sender_role")
    QKD_LINK_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    SENDER_ROLE_FIELD_NUMBER: _ClassVar[int]
    qkd_link_id: str
    key_ids: _containers.RepeatedScalarFieldContainer[str]
    sender_role: str
    def __init__(self, qkd_link_id: _Optional[str] = ..., key_ids: _Optional[_Iterable[str]] = ..., sender_role: _Optional[str] = ...) -> None: ...

class AnnounceKeysResponse(_message.Message):
    __slots__ = ("accepted_key_ids",)
    ACCEPTED_KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    accepted_key_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, accepted_key_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetEncapsulationKeyRequest(_message.Message):
    __slots__ = ("suite",)
    SUITE_FIELD_NUMBER: _ClassVar[int]
    suite: str
    def __init__(self, suite: _Optional[str] = ...) -> None: ...

class SignedEncapsulationKey(_message.Message):
    __slots__ = ("announcement",)
    ANNOUNCEMENT_FIELD_NUMBER: _ClassVar[int]
    announcement: bytes
    def __init__(self, announcement: _Optional[bytes] = ...) -> None: ...
