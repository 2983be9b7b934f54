"""The hop-frame header: every public fact about one frame and each key in it, in one injective encoding.

A frame carries 1..MAX_FRAME_KEYS relayed keys from one gateway to the next. Its header's hash (with the
ML-KEM ciphertext, th) enters the key derivation, is every key's AEAD associated data and is covered by the
signature, so a change to any field, or to the order or number of items, makes the frame fail. Frame
fields (each as ``u32be(len) || bytes``):

    label "QKDRELAY-v2/frame" | suite id | mode | qkd_use | frame_id (16) | sender | receiver |
    ek_id (16) | SHA3-256(ek_R) (32) | timestamp ms (u64) | nonce (32) | AEAD QKD key_ID |
    item count (u16) | enc(item 0, item 1, ...)

and each item:

    transfer_id (16) | hop (u16) | enc(path gateway IDs) | initiator SAE | target SAE | end-to-end key_ID |
    |K| in bytes (u16) | enc(pad QKD key_IDs) | extension JSON | no_degrade (u8)

``mode`` is how the frame's AEAD key is derived (with one QKD key, or ML-KEM alone); ``qkd_use`` is the
link's policy for QKD key (``hkdf``: that one key per frame; ``otp``: also a one-time pad per key, from
the QKD keys its item names, of which it uses the first |K| bytes; leftover bits are discarded, never
carried over). Texts are strict UTF-8 and integers have fixed widths, so every header has exactly one
encoding and decoding is its inverse. ``LABEL`` (v1) stays the label of encapsulation-key announcements
and voids, whose formats did not change.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from relay.crypto.encoding import decode_fields, encode_fields, encode_uint, parse_text, parse_uint
from relay.crypto.errors import MalformedMessage
from relay.crypto.suites import SUITES, Suite

LABEL = b"QKDRELAY-v1"
FRAME_LABEL = b"QKDRELAY-v2/frame"
TRANSFER_ID_SIZE = 16
FRAME_ID_SIZE = 16
EK_ID_SIZE = 16
EK_HASH_SIZE = 32
NONCE_SIZE = 32
MAX_TEXT_SIZE = 255
MAX_EXTENSION_SIZE = 8192
MAX_PATH_LENGTH = 16
MIN_KEY_SIZE = 1
MAX_KEY_SIZE = 1024
MAX_FRAME_KEYS = 4096
PAD_KEY_SIZE = 32  # bytes per QKD key; a pad for |K| bytes takes ceil(|K| / 32) of them
_FRAME_FIELD_COUNT = 14
_ITEM_FIELD_COUNT = 10


class HopMode(enum.Enum):
    """How the frame key is derived; ``require-qkd`` is a link policy that seals as ``qkd+pqc``."""

    QKD_PQC = "qkd+pqc"
    PQC_ONLY = "pqc-only"


class QkdUse(enum.Enum):
    """How a QKD link spends QKD key on a ``qkd+pqc`` frame (the topology's ``qkd_use``)."""

    HKDF = "hkdf"  # one 256-bit QKD key per frame enters the combiner
    OTP = "otp"  # and each key is also XORed with a pad of fresh QKD key of its own length


def pad_keys_needed(key_size: int) -> int:
    """QKD keys a one-time pad for a ``key_size``-byte key takes (never sharing a QKD key with another)."""
    return -(-key_size // PAD_KEY_SIZE)


def _check_text(name: str, text: str, *, allow_empty: bool = False, limit: int = MAX_TEXT_SIZE) -> None:
    size = len(text.encode("utf-8"))
    if size > limit or (size == 0 and not allow_empty):
        raise ValueError(f"{name} must be {0 if allow_empty else 1}..{limit} UTF-8 bytes")


def _encode_texts(texts: tuple[str, ...]) -> bytes:
    return encode_uint(len(texts), 1) + encode_fields(*(text.encode() for text in texts))


def _decode_texts(data: bytes, name: str) -> tuple[str, ...]:
    if not data:
        raise MalformedMessage(f"{name} is empty")
    return tuple(parse_text(field, name) for field in decode_fields(data[1:], data[0]))


@dataclass(frozen=True)
class ItemHeader:
    """The public facts of one relayed key in a frame: its transfer, route, SAEs, key_ID, size and pad."""

    transfer_id: bytes
    hop: int
    path: tuple[str, ...]
    initiator: str
    target: str
    key_id: str
    key_size: int
    pad_key_ids: tuple[str, ...] = ()
    extension_json: str = ""
    no_degrade: bool = False

    def __post_init__(self) -> None:
        if len(self.transfer_id) != TRANSFER_ID_SIZE:
            raise ValueError(f"transfer_id must be {TRANSFER_ID_SIZE} bytes, got {len(self.transfer_id)}")
        if not 0 <= self.hop < 1 << 16:
            raise ValueError("hop must fit in u16")
        if not 2 <= len(self.path) <= MAX_PATH_LENGTH:
            raise ValueError(f"path must name 2..{MAX_PATH_LENGTH} gateways")
        for gateway in self.path:
            _check_text("path gateway ID", gateway)
        for name, text in (("initiator", self.initiator), ("target", self.target), ("key_id", self.key_id)):
            _check_text(name, text)
        for key_id in self.pad_key_ids:
            _check_text("pad QKD key_ID", key_id)
        _check_text("extension_json", self.extension_json, allow_empty=True, limit=MAX_EXTENSION_SIZE)
        if not MIN_KEY_SIZE <= self.key_size <= MAX_KEY_SIZE:
            raise ValueError(f"key_size must be {MIN_KEY_SIZE}..{MAX_KEY_SIZE} bytes")
        if self.pad_key_ids and len(self.pad_key_ids) != pad_keys_needed(self.key_size):
            raise ValueError(f"a pad for {self.key_size} bytes takes {pad_keys_needed(self.key_size)} QKD keys")

    def encode(self) -> bytes:
        return encode_fields(
            self.transfer_id,
            encode_uint(self.hop, 2),
            _encode_texts(self.path),
            self.initiator.encode(),
            self.target.encode(),
            self.key_id.encode(),
            encode_uint(self.key_size, 2),
            _encode_texts(self.pad_key_ids),
            self.extension_json.encode(),
            encode_uint(int(self.no_degrade), 1),
        )

    @classmethod
    def decode(cls, data: bytes) -> ItemHeader:
        (transfer_id, hop, path, initiator, target, key_id, key_size, pads, extension,
         no_degrade) = decode_fields(data, _ITEM_FIELD_COUNT)  # fmt: skip
        flag = parse_uint(no_degrade, 1, "no_degrade")
        if flag > 1:
            raise MalformedMessage("no_degrade must be 0 or 1")
        return cls(
            transfer_id=transfer_id,
            hop=parse_uint(hop, 2, "hop"),
            path=_decode_texts(path, "path"),
            initiator=parse_text(initiator, "initiator"),
            target=parse_text(target, "target"),
            key_id=parse_text(key_id, "key_id"),
            key_size=parse_uint(key_size, 2, "key_size"),
            pad_key_ids=_decode_texts(pads, "pad key_IDs"),
            extension_json=parse_text(extension, "extension_json"),
            no_degrade=bool(flag),
        )


@dataclass(frozen=True)
class FrameHeader:
    """Public parameters of one frame; construction validates them, so an instance always encodes."""

    suite: Suite
    mode: HopMode
    qkd_use: QkdUse
    frame_id: bytes
    sender: str
    receiver: str
    ek_id: bytes
    ek_hash: bytes
    timestamp_ms: int
    nonce: bytes
    qkd_key_id: str  # the QKD key in the combiner; empty exactly when the mode is pqc-only
    items: tuple[ItemHeader, ...]

    def __post_init__(self) -> None:
        for name, value, size in (
            ("frame_id", self.frame_id, FRAME_ID_SIZE),
            ("ek_id", self.ek_id, EK_ID_SIZE),
            ("ek_hash", self.ek_hash, EK_HASH_SIZE),
            ("nonce", self.nonce, NONCE_SIZE),
        ):
            if len(value) != size:
                raise ValueError(f"{name} must be {size} bytes, got {len(value)}")
        _check_text("sender", self.sender)
        _check_text("receiver", self.receiver)
        _check_text("qkd_key_id", self.qkd_key_id, allow_empty=True)
        if (self.mode is HopMode.PQC_ONLY) != (self.qkd_key_id == ""):
            raise ValueError("qkd_key_id must be empty exactly when mode is pqc-only")
        if not 0 <= self.timestamp_ms < 1 << 64:
            raise ValueError("timestamp_ms must fit in u64")
        if not 1 <= len(self.items) <= MAX_FRAME_KEYS:
            raise ValueError(f"a frame carries 1..{MAX_FRAME_KEYS} keys")
        padded = self.mode is HopMode.QKD_PQC and self.qkd_use is QkdUse.OTP
        if any(bool(item.pad_key_ids) != padded for item in self.items):
            raise ValueError("every key has a pad exactly when the frame is qkd+pqc with qkd_use otp")
        qkd_ids = [self.qkd_key_id] if self.qkd_key_id else []
        qkd_ids += [key_id for item in self.items for key_id in item.pad_key_ids]
        if len(set(qkd_ids)) != len(qkd_ids):
            raise ValueError("a QKD key_ID is used once per frame")
        if len({item.transfer_id for item in self.items}) != len(self.items):
            raise ValueError("a transfer appears once per frame")

    @property
    def qkd_key_ids(self) -> tuple[str, ...]:
        """Every QKD key the frame spends, the combiner's first: what the receiver takes from its lane."""
        pads = tuple(key_id for item in self.items for key_id in item.pad_key_ids)
        return ((self.qkd_key_id,) if self.qkd_key_id else ()) + pads

    def encode(self) -> bytes:
        return encode_fields(
            FRAME_LABEL,
            self.suite.id.encode(),
            self.mode.value.encode(),
            self.qkd_use.value.encode(),
            self.frame_id,
            self.sender.encode(),
            self.receiver.encode(),
            self.ek_id,
            self.ek_hash,
            encode_uint(self.timestamp_ms, 8),
            self.nonce,
            self.qkd_key_id.encode(),
            encode_uint(len(self.items), 2),
            encode_fields(*(item.encode() for item in self.items)),
        )

    @classmethod
    def decode(cls, data: bytes) -> FrameHeader:
        """Inverse of :meth:`encode`; any other input raises :class:`MalformedMessage`."""
        (label, suite, mode, qkd_use, frame_id, sender, receiver, ek_id, ek_hash, timestamp, nonce,
         qkd_key_id, count, items) = decode_fields(data, _FRAME_FIELD_COUNT)  # fmt: skip
        if label != FRAME_LABEL:
            raise MalformedMessage("unknown frame label or version")
        suite_id = parse_text(suite, "suite")
        if suite_id not in SUITES:
            raise MalformedMessage(f"unknown suite {suite_id!r}")
        try:
            return cls(
                suite=SUITES[suite_id],
                mode=HopMode(parse_text(mode, "mode")),
                qkd_use=QkdUse(parse_text(qkd_use, "qkd_use")),
                frame_id=frame_id,
                sender=parse_text(sender, "sender"),
                receiver=parse_text(receiver, "receiver"),
                ek_id=ek_id,
                ek_hash=ek_hash,
                timestamp_ms=parse_uint(timestamp, 8, "timestamp"),
                nonce=nonce,
                qkd_key_id=parse_text(qkd_key_id, "qkd_key_id"),
                items=tuple(
                    ItemHeader.decode(item) for item in decode_fields(items, parse_uint(count, 2, "item count"))
                ),
            )
        except ValueError as exc:  # the enums and __post_init__
            raise MalformedMessage(f"invalid header: {exc}") from None
