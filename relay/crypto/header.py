"""The hop header: every public fact about one hop, in one injective encoding.

The header is hashed into the key derivation, used as AEAD associated data and covered by the signature,
so a change to any field makes the hop fail. Field order (each field as ``u32be(len) || bytes``):

    label "QKDRELAY-v1" | suite id | mode | transfer_id (16) | hop (u16) | sender | receiver |
    QKD key_ID | ek_id (16) | SHA3-256(ek_R) (32) | timestamp ms (u64) | nonce (32) |
    end-to-end key_ID | |K| in bytes (u16)

This is the HQR-1 order of the design notes with the mode added after the suite; texts are strict UTF-8
and integers have fixed widths, so every header has exactly one encoding and decoding is its inverse.
"""

import enum
from dataclasses import dataclass

from relay.crypto.encoding import decode_fields, encode_fields, encode_uint, parse_text, parse_uint
from relay.crypto.errors import MalformedMessage
from relay.crypto.suites import SUITES, Suite

LABEL = b"QKDRELAY-v1"
TRANSFER_ID_SIZE = 16
EK_ID_SIZE = 16
EK_HASH_SIZE = 32
NONCE_SIZE = 32
MAX_TEXT_SIZE = 255
MIN_KEY_SIZE = 1
MAX_KEY_SIZE = 1024
_FIELD_COUNT = 14


class HopMode(enum.Enum):
    """How the hop key is derived; ``require-qkd`` is a link policy that seals as ``qkd+pqc``."""

    QKD_PQC = "qkd+pqc"
    PQC_ONLY = "pqc-only"


@dataclass(frozen=True)
class HopHeader:
    """Public parameters of one hop; construction validates them, so an instance always encodes."""

    suite: Suite
    mode: HopMode
    transfer_id: bytes
    hop: int
    sender: str
    receiver: str
    qkd_key_id: str
    ek_id: bytes
    ek_hash: bytes
    timestamp_ms: int
    nonce: bytes
    key_id: str
    key_size: int

    def __post_init__(self) -> None:
        for name, value, size in (
            ("transfer_id", self.transfer_id, TRANSFER_ID_SIZE),
            ("ek_id", self.ek_id, EK_ID_SIZE),
            ("ek_hash", self.ek_hash, EK_HASH_SIZE),
            ("nonce", self.nonce, NONCE_SIZE),
        ):
            if len(value) != size:
                raise ValueError(f"{name} must be {size} bytes, got {len(value)}")
        for name, text, allow_empty in (
            ("sender", self.sender, False),
            ("receiver", self.receiver, False),
            ("qkd_key_id", self.qkd_key_id, True),
            ("key_id", self.key_id, False),
        ):
            size = len(text.encode("utf-8"))
            if size > MAX_TEXT_SIZE or (size == 0 and not allow_empty):
                raise ValueError(f"{name} must be {0 if allow_empty else 1}..{MAX_TEXT_SIZE} UTF-8 bytes")
        if (self.mode is HopMode.PQC_ONLY) != (self.qkd_key_id == ""):
            raise ValueError("qkd_key_id must be empty exactly when mode is pqc-only")
        if not 0 <= self.hop < 1 << 16:
            raise ValueError("hop must fit in u16")
        if not 0 <= self.timestamp_ms < 1 << 64:
            raise ValueError("timestamp_ms must fit in u64")
        if not MIN_KEY_SIZE <= self.key_size <= MAX_KEY_SIZE:
            raise ValueError(f"key_size must be {MIN_KEY_SIZE}..{MAX_KEY_SIZE} bytes")

    def encode(self) -> bytes:
        return encode_fields(
            LABEL,
            self.suite.id.encode(),
            self.mode.value.encode(),
            self.transfer_id,
            encode_uint(self.hop, 2),
            self.sender.encode(),
            self.receiver.encode(),
            self.qkd_key_id.encode(),
            self.ek_id,
            self.ek_hash,
            encode_uint(self.timestamp_ms, 8),
            self.nonce,
            self.key_id.encode(),
            encode_uint(self.key_size, 2),
        )

    @classmethod
    def decode(cls, data: bytes) -> "HopHeader":
        """Inverse of :meth:`encode`; any other input raises :class:`MalformedMessage`."""
        (label, suite, mode, transfer_id, hop, sender, receiver, qkd_key_id, ek_id, ek_hash, timestamp,
         nonce, key_id, key_size) = decode_fields(data, _FIELD_COUNT)  # fmt: skip
        if label != LABEL:
            raise MalformedMessage("unknown header label or version")
        suite_id = parse_text(suite, "suite")
        if suite_id not in SUITES:
            raise MalformedMessage(f"unknown suite {suite_id!r}")
        try:
            return cls(
                suite=SUITES[suite_id],
                mode=HopMode(parse_text(mode, "mode")),
                transfer_id=transfer_id,
                hop=parse_uint(hop, 2, "hop"),
                sender=parse_text(sender, "sender"),
                receiver=parse_text(receiver, "receiver"),
                qkd_key_id=parse_text(qkd_key_id, "qkd_key_id"),
                ek_id=ek_id,
                ek_hash=ek_hash,
                timestamp_ms=parse_uint(timestamp, 8, "timestamp"),
                nonce=nonce,
                key_id=parse_text(key_id, "key_id"),
                key_size=parse_uint(key_size, 2, "key_size"),
            )
        except ValueError as exc:  # HopMode() and __post_init__
            raise MalformedMessage(f"invalid header: {exc}") from None
