"""Seal and open one hop frame: 1..N relayed keys for the next gateway under one ML-KEM encapsulation
and one ML-DSA signature (the HQR-2 construction of the README's "Hop construction").

Sender, for keys K_0..K_{n-1}:
    (ss, ct)        = ML-KEM.Encaps(ek_R)          ek_R from a verified, unexpired announcement
    th              = H(enc(header, ct))           the header lists every key's public facts
    k_enc || k_conf = HKDF combiner(ss, k_q, th)   see relay.crypto.kdf; no k_q on pqc-only frames
    P_i             = first |K_i| bytes of the QKD keys item i names (qkd_use otp), else zeros
    W_i             = AES-256-GCM(k_enc, nonce u96be(i), K_i xor P_i, aad = th)
    sig             = ML-DSA.Sign(th || H(enc(W_0..W_{n-1})), context "QKDRELAY-v2/frame")
Receiver: checks recipient, sender, suite, mode, qkd_use, time window and ek, verifies sig, records the
frame_id in the replay guard, and only then fetches the QKD keys the header names (so forged frames never
consume QKD key); decapsulates, derives, decrypts every W_i. Once it knows each key's outcome (stored at
its last gateway, or failed) it answers ``HMAC(k_conf, "QKDRELAY-v2/frame confirm" || th || H(W) ||
outcomes)``, which the sender checks in constant time before believing any outcome.

One k_enc per frame encrypts each key under its own nonce (the item index), so no nonce repeats under a
key. Reordering, dropping or adding keys changes th or H(W) and fails the signature and the AEAD tags.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relay.crypto.clock import Clock
from relay.crypto.encoding import decode_fields, encode_fields
from relay.crypto.errors import (
    BadSignature,
    ConfirmationFailed,
    DecryptionFailed,
    ExpiredAnnouncement,
    MalformedMessage,
    PolicyViolation,
    ReplayedMessage,
    StaleMessage,
    WrongRecipient,
    WrongSender,
)
from relay.crypto.header import (
    FRAME_ID_SIZE,
    FRAME_LABEL,
    NONCE_SIZE,
    FrameHeader,
    HopMode,
    ItemHeader,
    QkdUse,
    pad_keys_needed,
)
from relay.crypto.identity import GatewayIdentity, TrustStore
from relay.crypto.kdf import QKD_KEY_SIZE, HopKeys, derive_hop_keys
from relay.crypto.kem import DecapsulationKey, KemProvider
from relay.crypto.keyring import EncapsulationKey
from relay.crypto.replay import ReplayGuard
from relay.crypto.suites import Suite

SIGNATURE_CONTEXT = FRAME_LABEL
CONFIRMATION_LABEL = FRAME_LABEL + b" confirm"
DEFAULT_WINDOW_MS = 120_000
_GCM_TAG_SIZE = 16

QkdKeyFetcher = Callable[[Sequence[str]], Awaitable[Sequence[bytes]]]
"""Takes the QKD keys with these key_IDs from the receiving lane (ETSI 014 dec_keys copies), all or none,
in order; called at most once per frame, and only after the signature verified."""


@dataclass(frozen=True)
class QkdKey:
    """A QKD key the sender took from its link's pool (its vendor KMS's ETSI 014 enc_keys), already used."""

    key_id: str
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class FrameEntry:
    """One key to relay in a frame and its public facts (hop ``hop`` of ``path``, towards ``target``)."""

    transfer_id: bytes
    hop: int
    path: tuple[str, ...]
    initiator: str
    target: str
    key_id: str
    key: bytes = field(repr=False)
    extension_json: str = ""
    no_degrade: bool = False


@dataclass(frozen=True)
class SealedFrame:
    """The frame message: header, ML-KEM ciphertext, one wrapped key per item and the signature."""

    header: FrameHeader
    ciphertext: bytes
    wrapped_keys: tuple[bytes, ...]
    signature: bytes

    def to_bytes(self) -> bytes:
        """One opaque blob, ``enc(header, ct, enc(W_0..), sig)``, for a protobuf ``bytes`` field."""
        return encode_fields(self.header.encode(), self.ciphertext, encode_fields(*self.wrapped_keys), self.signature)

    @classmethod
    def from_bytes(cls, data: bytes) -> SealedFrame:
        """Parse and size-check; raises :class:`MalformedMessage`. Authenticity is checked by open."""
        header_bytes, ciphertext, wrapped, signature = decode_fields(data, 4)
        header = FrameHeader.decode(header_bytes)
        wrapped_keys = tuple(decode_fields(wrapped, len(header.items)))
        for index, (item, value) in enumerate(zip(header.items, wrapped_keys, strict=True)):
            if len(value) != item.key_size + _GCM_TAG_SIZE:
                raise MalformedMessage(f"wrapped key {index} must be {item.key_size + _GCM_TAG_SIZE} bytes")
        for name, value, size in (
            ("ciphertext", ciphertext, header.suite.kem.ciphertext_size),
            ("signature", signature, header.suite.signature.signature_size),
        ):
            if len(value) != size:
                raise MalformedMessage(f"{name} must be {size} bytes for this header, got {len(value)}")
        return cls(header, ciphertext, wrapped_keys, signature)


class _Confirmer:
    """Holds k_conf and the signed transcript until the outcomes are known; wipes k_conf after use."""

    def __init__(self, suite: Suite, confirmation_key: bytearray, signed: bytes) -> None:
        self._suite = suite
        self._key = confirmation_key
        self._signed = signed

    def tag(self, outcomes: bytes) -> bytes:
        if not any(self._key):
            raise ConfirmationFailed("the confirmation key of this frame was already wiped")
        return hmac.new(self._key, CONFIRMATION_LABEL + self._signed + outcomes, self._suite.hash.name).digest()

    def wipe(self) -> None:
        self._key[:] = bytes(len(self._key))


@dataclass
class PendingFrame:
    """A sealed frame plus what the sender needs to check the receiver's confirmation of its outcomes."""

    message: SealedFrame
    _confirmer: _Confirmer = field(repr=False)

    def verify_confirmation(self, outcomes: bytes, confirmation: bytes) -> None:
        """Raises :class:`ConfirmationFailed` unless ``confirmation`` authenticates ``outcomes``."""
        if not hmac.compare_digest(self._confirmer.tag(outcomes), confirmation):
            raise ConfirmationFailed("frame confirmation does not match")

    def wipe(self) -> None:
        self._confirmer.wipe()


@dataclass
class OpenedFrame:
    """The authenticated header, the relayed keys (aligned with ``header.items``), and the confirmer."""

    header: FrameHeader
    keys: tuple[bytes, ...] = field(repr=False)
    _confirmer: _Confirmer = field(repr=False)

    def confirm(self, outcomes: bytes) -> bytes:
        """The confirmation of ``outcomes`` (the canonical encoding of every item's outcome); wipes k_conf."""
        try:
            return self._confirmer.tag(outcomes)
        finally:
            self._confirmer.wipe()


class RecipientKeys(Protocol):
    """What open needs from the receiving gateway; :class:`relay.crypto.keyring.KeyRing` provides it."""

    @property
    def gateway_id(self) -> str: ...

    @property
    def suite(self) -> Suite: ...

    def decapsulation_key(self, ek_id: bytes, ek_hash: bytes) -> DecapsulationKey: ...


def _check_qkd_key(key: bytes) -> None:
    if len(key) != QKD_KEY_SIZE:
        raise PolicyViolation(f"QKD key must be {QKD_KEY_SIZE * 8} bits, got {len(key) * 8}")


def _signed_transcript(suite: Suite, th: bytes, wrapped_keys: Sequence[bytes]) -> bytes:
    """th || H(enc(W_0..)): what the signature and the confirmation cover."""
    return th + suite.digest(encode_fields(*wrapped_keys))


def _gcm_nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


def _xor(key: bytes, pad: bytes) -> bytes:
    return (int.from_bytes(key, "big") ^ int.from_bytes(pad[: len(key)], "big")).to_bytes(len(key), "big")


def _pads(header: FrameHeader, pad_keys: Sequence[bytes]) -> list[bytes | None]:
    """Each item's pad (its QKD keys concatenated), in item order; None for items without one."""
    pads: list[bytes | None] = []
    position = 0
    for item in header.items:
        count = len(item.pad_key_ids)
        pads.append(b"".join(pad_keys[position : position + count]) if count else None)
        position += count
    return pads


def seal_frame(
    entries: Sequence[FrameEntry],
    *,
    recipient: EncapsulationKey,
    identity: GatewayIdentity,
    mode: HopMode,
    qkd_use: QkdUse,
    qkd_key: QkdKey | None,
    pad_keys: Sequence[QkdKey],
    kem: KemProvider,
    clock: Clock,
    randbytes: Callable[[int], bytes] = os.urandom,
) -> PendingFrame:
    """Protect ``entries`` (keys of 1..1024 bytes) for one hop to ``recipient``.

    A ``qkd+pqc`` frame needs ``qkd_key``; with ``qkd_use`` otp it also needs ``pad_keys``: for each entry
    in order, ``pad_keys_needed(len(key))`` fresh QKD keys, each used by one entry only.
    """
    suite = identity.suite
    if recipient.suite is not suite:
        raise PolicyViolation(f"recipient key is suite {recipient.suite.id}, this gateway is suite {suite.id}")
    if (mode is HopMode.QKD_PQC) != (qkd_key is not None):
        raise PolicyViolation(f"a {mode.value} frame {'needs' if qkd_key is None else 'must not get'} a QKD key")
    padded = mode is HopMode.QKD_PQC and qkd_use is QkdUse.OTP
    needed = sum(pad_keys_needed(len(entry.key)) for entry in entries) if padded else 0
    if len(pad_keys) != needed:
        raise PolicyViolation(f"this frame needs {needed} pad QKD keys, got {len(pad_keys)}")
    for key in ([qkd_key] if qkd_key else []) + list(pad_keys):
        _check_qkd_key(key.key)
    now = clock()
    if recipient.not_after_ms < now:
        raise ExpiredAnnouncement(f"encapsulation key {recipient.ek_id.hex()} of {recipient.gateway_id!r} expired")
    items, position = [], 0
    for entry in entries:
        count = pad_keys_needed(len(entry.key)) if padded else 0
        items.append(
            ItemHeader(
                transfer_id=entry.transfer_id,
                hop=entry.hop,
                path=entry.path,
                initiator=entry.initiator,
                target=entry.target,
                key_id=entry.key_id,
                key_size=len(entry.key),
                pad_key_ids=tuple(pad.key_id for pad in pad_keys[position : position + count]),
                extension_json=entry.extension_json,
                no_degrade=entry.no_degrade,
            )
        )
        position += count
    encapsulation = kem.encapsulate(suite.kem, recipient.encapsulation_key)
    header = FrameHeader(
        suite=suite,
        mode=mode,
        qkd_use=qkd_use,
        frame_id=randbytes(FRAME_ID_SIZE),
        sender=identity.gateway_id,
        receiver=recipient.gateway_id,
        ek_id=recipient.ek_id,
        ek_hash=recipient.ek_hash,
        timestamp_ms=now,
        nonce=randbytes(NONCE_SIZE),
        qkd_key_id="" if qkd_key is None else qkd_key.key_id,
        items=tuple(items),
    )
    th = suite.digest(encode_fields(header.encode(), encapsulation.ciphertext))
    keys = derive_hop_keys(suite, encapsulation.shared_secret, None if qkd_key is None else qkd_key.key, th)
    try:
        aead = AESGCM(keys.encryption_key)
        pads = _pads(header, [pad.key for pad in pad_keys])
        wrapped = tuple(
            aead.encrypt(_gcm_nonce(index), entry.key if pad is None else _xor(entry.key, pad), th)
            for index, (entry, pad) in enumerate(zip(entries, pads, strict=True))
        )
        signed = _signed_transcript(suite, th, wrapped)
        confirmer = _confirm_with(keys, suite, signed)
    finally:
        keys.wipe()
    message = SealedFrame(header, encapsulation.ciphertext, wrapped, identity.sign(signed, SIGNATURE_CONTEXT))
    return PendingFrame(message, confirmer)


async def open_frame(
    message: SealedFrame,
    *,
    recipient: RecipientKeys,
    trust: TrustStore,
    mode: HopMode,
    qkd_use: QkdUse,
    replay: ReplayGuard,
    clock: Clock,
    fetch_qkd_keys: QkdKeyFetcher,
    window_ms: int = DEFAULT_WINDOW_MS,
    expected_sender: str | None = None,
) -> OpenedFrame:
    """Authenticate, de-duplicate and unwrap a frame; every refusal is a :class:`HopError` subclass.

    ``mode`` and ``qkd_use`` are what the receiver's link policy expects, so a sender cannot talk a
    link down (to pqc-only, or from otp to hkdf); ``expected_sender`` is the gateway the transport (mTLS)
    authenticated, when known.
    """
    header = message.header
    suite = header.suite
    if header.receiver != recipient.gateway_id:
        raise WrongRecipient(f"frame is addressed to {header.receiver!r}, not {recipient.gateway_id!r}")
    if expected_sender is not None and header.sender != expected_sender:
        raise WrongSender(f"header names sender {header.sender!r} but the peer is {expected_sender!r}")
    if suite is not recipient.suite or header.mode is not mode or header.qkd_use is not qkd_use:
        raise PolicyViolation(
            f"frame uses suite {suite.id} {header.mode.value} {header.qkd_use.value}; "
            f"link expects {recipient.suite.id} {mode.value} {qkd_use.value}"
        )
    now = clock()
    if abs(now - header.timestamp_ms) > window_ms:
        raise StaleMessage(f"timestamp is {now - header.timestamp_ms} ms from now; window is {window_ms} ms")
    decapsulation_key = recipient.decapsulation_key(header.ek_id, header.ek_hash)
    sender = trust.get(header.sender)
    if sender.suite is not suite:
        raise PolicyViolation(f"sender {header.sender!r} has a suite {sender.suite.id} identity")
    th = suite.digest(encode_fields(header.encode(), message.ciphertext))
    signed = _signed_transcript(suite, th, message.wrapped_keys)
    if not sender.verify(message.signature, signed, SIGNATURE_CONTEXT):
        raise BadSignature(f"frame signature does not verify for sender {header.sender!r}")
    if not await replay.check_and_remember(header.frame_id, header.timestamp_ms + window_ms - now + 1):
        raise ReplayedMessage(f"frame {header.frame_id.hex()} was already accepted")
    qkd_keys: Sequence[bytes] = ()
    if header.qkd_key_ids:
        qkd_keys = await fetch_qkd_keys(header.qkd_key_ids)
        if len(qkd_keys) != len(header.qkd_key_ids):
            raise PolicyViolation(f"{len(header.qkd_key_ids)} QKD keys named, {len(qkd_keys)} fetched")
        for key in qkd_keys:
            _check_qkd_key(key)
    combined = qkd_keys[0] if header.qkd_key_id else None
    keys = derive_hop_keys(suite, decapsulation_key.decapsulate(message.ciphertext), combined, th)
    try:
        return OpenedFrame(header, _unwrap(message, keys, th, qkd_keys[1:]), _confirm_with(keys, suite, signed))
    finally:
        keys.wipe()


def _confirm_with(keys: HopKeys, suite: Suite, signed: bytes) -> _Confirmer:
    return _Confirmer(suite, bytearray(keys.confirmation_key), signed)


def _unwrap(message: SealedFrame, keys: HopKeys, th: bytes, pad_keys: Sequence[bytes]) -> tuple[bytes, ...]:
    aead = AESGCM(keys.encryption_key)
    pads = _pads(message.header, pad_keys)
    opened = []
    for index, (wrapped, pad) in enumerate(zip(message.wrapped_keys, pads, strict=True)):
        try:
            plain = aead.decrypt(_gcm_nonce(index), wrapped, th)
        except InvalidTag:
            raise DecryptionFailed(f"wrapped key {index} does not authenticate under the derived key") from None
        opened.append(plain if pad is None else _xor(plain, pad))
    return tuple(opened)
