"""Seal and open one relay hop (the HQR-1 construction of the design notes).

Sender:
    (ss, ct)        = ML-KEM.Encaps(ek_R)          ek_R from a verified, unexpired announcement
    aad             = enc(header, ct);  th = H(aad)
    k_enc || k_conf = HKDF combiner(ss, k_q, th)   see relay.crypto.kdf; no k_q on pqc-only hops
    W               = AES-256-GCM(k_enc, nonce 0^96, K, aad)
    sig             = ML-DSA.Sign(th || H(W), context "QKDRELAY-v1/hop")
Receiver: checks recipient, sender, suite, mode, time window and ek, verifies sig, records
(transfer_id, hop) in the replay guard, and only then fetches k_q (so forged messages never consume QKD
key); decapsulates, derives, decrypts and answers HMAC(k_conf, "QKDRELAY-v1 confirm" || th || H(W)),
which the sender compares in constant time before committing the hop.

k_enc encrypts exactly one message, which is why the fixed GCM nonce is safe. Header, ciphertext and W
are authenticated twice: by the AEAD tag, which needs k_enc (ss and k_q), and by the signature, which
needs the sender's ML-DSA key and is what authenticates the sender when ML-KEM alone would not.
"""

import hmac
import os
from collections.abc import Awaitable, Callable
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
from relay.crypto.header import LABEL, NONCE_SIZE, HopHeader, HopMode
from relay.crypto.identity import GatewayIdentity, TrustStore
from relay.crypto.kdf import QKD_KEY_SIZE, derive_hop_keys
from relay.crypto.kem import DecapsulationKey, KemProvider
from relay.crypto.keyring import EncapsulationKey
from relay.crypto.replay import ReplayGuard
from relay.crypto.suites import Suite

SIGNATURE_CONTEXT = LABEL + b"/hop"
CONFIRMATION_LABEL = LABEL + b" confirm"
DEFAULT_WINDOW_MS = 120_000
_GCM_NONCE = bytes(12)
_GCM_TAG_SIZE = 16

QkdKeyFetcher = Callable[[str], Awaitable[bytes]]
"""Fetches the QKD key for a key_ID from the local KMS (ETSI 014 dec_keys); called at most once per hop."""


@dataclass(frozen=True)
class QkdKey:
    """A QKD key the sender obtained from its KMS (ETSI 014 enc_keys), already marked used."""

    key_id: str
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class HopRoute:
    """Which transfer and hop this is; sender and receiver come from the identity and the ek."""

    transfer_id: bytes
    hop: int
    key_id: str


@dataclass(frozen=True)
class SealedHop:
    """The hop message: header, ML-KEM ciphertext, wrapped key W and the sender's signature."""

    header: HopHeader
    ciphertext: bytes
    wrapped_key: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        """One opaque blob, ``enc(header, ct, W, sig)``, e.g. for a protobuf ``bytes`` field."""
        return encode_fields(self.header.encode(), self.ciphertext, self.wrapped_key, self.signature)

    @classmethod
    def from_bytes(cls, data: bytes) -> "SealedHop":
        """Parse and size-check; raises :class:`MalformedMessage`. Authenticity is checked by open."""
        header_bytes, ciphertext, wrapped_key, signature = decode_fields(data, 4)
        header = HopHeader.decode(header_bytes)
        for name, value, size in (
            ("ciphertext", ciphertext, header.suite.kem.ciphertext_size),
            ("wrapped key", wrapped_key, header.key_size + _GCM_TAG_SIZE),
            ("signature", signature, header.suite.signature.signature_size),
        ):
            if len(value) != size:
                raise MalformedMessage(f"{name} must be {size} bytes for this header, got {len(value)}")
        return cls(header, ciphertext, wrapped_key, signature)


@dataclass(frozen=True)
class PendingHop:
    """A sealed hop plus the confirmation the sender must receive before committing it."""

    message: SealedHop
    expected_confirmation: bytes = field(repr=False)

    def verify_confirmation(self, confirmation: bytes) -> None:
        if not hmac.compare_digest(self.expected_confirmation, confirmation):
            raise ConfirmationFailed("key confirmation does not match")


@dataclass(frozen=True)
class OpenedHop:
    """The relayed key K, its authenticated header, and the confirmation to send back."""

    header: HopHeader
    key: bytes = field(repr=False)
    confirmation: bytes


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


def _signed_transcript(suite: Suite, th: bytes, wrapped_key: bytes) -> bytes:
    """th || H(W): what the signature and the key confirmation cover."""
    return th + suite.digest(wrapped_key)


def _confirmation(suite: Suite, confirmation_key: bytearray, signed: bytes) -> bytes:
    return hmac.new(confirmation_key, CONFIRMATION_LABEL + signed, suite.hash.name).digest()


def seal_hop(
    key: bytes,
    *,
    route: HopRoute,
    recipient: EncapsulationKey,
    identity: GatewayIdentity,
    mode: HopMode,
    qkd_key: QkdKey | None,
    kem: KemProvider,
    clock: Clock,
    randbytes: Callable[[int], bytes] = os.urandom,
) -> PendingHop:
    """Protect relayed key K (1..1024 bytes) for one hop to ``recipient``."""
    suite = identity.suite
    if recipient.suite is not suite:
        raise PolicyViolation(f"recipient key is suite {recipient.suite.id}, this gateway is suite {suite.id}")
    if (mode is HopMode.QKD_PQC) != (qkd_key is not None):
        raise PolicyViolation(f"a {mode.value} hop {'needs' if qkd_key is None else 'must not get'} a QKD key")
    if qkd_key is not None:
        _check_qkd_key(qkd_key.key)
    now = clock()
    if recipient.not_after_ms < now:
        raise ExpiredAnnouncement(f"encapsulation key {recipient.ek_id.hex()} of {recipient.gateway_id!r} expired")
    encapsulation = kem.encapsulate(suite.kem, recipient.encapsulation_key)
    header = HopHeader(
        suite=suite,
        mode=mode,
        transfer_id=route.transfer_id,
        hop=route.hop,
        sender=identity.gateway_id,
        receiver=recipient.gateway_id,
        qkd_key_id="" if qkd_key is None else qkd_key.key_id,
        ek_id=recipient.ek_id,
        ek_hash=recipient.ek_hash,
        timestamp_ms=now,
        nonce=randbytes(NONCE_SIZE),
        key_id=route.key_id,
        key_size=len(key),
    )
    aad = encode_fields(header.encode(), encapsulation.ciphertext)
    th = suite.digest(aad)
    keys = derive_hop_keys(suite, encapsulation.shared_secret, None if qkd_key is None else qkd_key.key, th)
    try:
        wrapped_key = AESGCM(keys.encryption_key).encrypt(_GCM_NONCE, key, aad)
        signed = _signed_transcript(suite, th, wrapped_key)
        confirmation = _confirmation(suite, keys.confirmation_key, signed)
    finally:
        keys.wipe()
    message = SealedHop(header, encapsulation.ciphertext, wrapped_key, identity.sign(signed, SIGNATURE_CONTEXT))
    return PendingHop(message, confirmation)


async def open_hop(
    message: SealedHop,
    *,
    recipient: RecipientKeys,
    trust: TrustStore,
    mode: HopMode,
    replay: ReplayGuard,
    clock: Clock,
    fetch_qkd_key: QkdKeyFetcher,
    window_ms: int = DEFAULT_WINDOW_MS,
    expected_sender: str | None = None,
) -> OpenedHop:
    """Authenticate, de-duplicate and unwrap a hop; every refusal is a :class:`HopError` subclass.

    ``mode`` is the link policy the receiver expects, so a sender cannot downgrade a qkd+pqc link;
    ``expected_sender`` is the gateway the transport (mTLS) authenticated, when known.
    """
    header = message.header
    suite = header.suite
    if header.receiver != recipient.gateway_id:
        raise WrongRecipient(f"hop is addressed to {header.receiver!r}, not {recipient.gateway_id!r}")
    if expected_sender is not None and header.sender != expected_sender:
        raise WrongSender(f"header names sender {header.sender!r} but the peer is {expected_sender!r}")
    if suite is not recipient.suite or header.mode is not mode:
        raise PolicyViolation(
            f"hop uses suite {suite.id} {header.mode.value}; link expects {recipient.suite.id} {mode.value}"
        )
    now = clock()
    if abs(now - header.timestamp_ms) > window_ms:
        raise StaleMessage(f"timestamp is {now - header.timestamp_ms} ms from now; window is {window_ms} ms")
    decapsulation_key = recipient.decapsulation_key(header.ek_id, header.ek_hash)
    sender = trust.get(header.sender)
    if sender.suite is not suite:
        raise PolicyViolation(f"sender {header.sender!r} has a suite {sender.suite.id} identity")
    aad = encode_fields(header.encode(), message.ciphertext)
    th = suite.digest(aad)
    signed = _signed_transcript(suite, th, message.wrapped_key)
    if not sender.verify(message.signature, signed, SIGNATURE_CONTEXT):
        raise BadSignature(f"hop signature does not verify for sender {header.sender!r}")
    if not await replay.check_and_remember(header.transfer_id, header.hop, header.timestamp_ms + window_ms - now + 1):
        raise ReplayedMessage(f"transfer {header.transfer_id.hex()} hop {header.hop} was already accepted")
    qkd_key = None
    if mode is HopMode.QKD_PQC:
        qkd_key = await fetch_qkd_key(header.qkd_key_id)
        _check_qkd_key(qkd_key)
    shared_secret = decapsulation_key.decapsulate(message.ciphertext)
    keys = derive_hop_keys(suite, shared_secret, qkd_key, th)
    try:
        key = AESGCM(keys.encryption_key).decrypt(_GCM_NONCE, message.wrapped_key, aad)
        confirmation = _confirmation(suite, keys.confirmation_key, signed)
    except InvalidTag:
        raise DecryptionFailed("wrapped key does not authenticate under the derived key") from None
    finally:
        keys.wipe()
    return OpenedHop(header, key, confirmation)
