from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RelayFrameRequest(_message.Message):
    __slots__ = ("sealed_frame",)
    SEALED_FRAME_FIELD_NUMBER: _ClassVar[int]
    sealed_frame: bytes
    def __init__(self, sealed_frame: _Optional[bytes] = ...) -> None: ...

class RelayFrameResponse(_message.Message):
    __slots__ = ("outcomes", "key_confirmation")
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    KEY_CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    outcomes: bytes
    key_confirmation: bytes
    def __init__(self, outcomes: _Optional[bytes] = ..., key_confirmation: _Optional[bytes] = ...) -> None: ...

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
