"""Short-lived ML-KEM encapsulation keys, signed by the gateway identity and rotated.

Each gateway publishes an :class:`EncapsulationKeyAnnouncement` ``(gateway_id, suite, ek_id, ek,
not_after)`` signed with its ML-DSA identity under the context ``QKDRELAY-v1/ek``, so a sender encapsulates
only to a key the pinned receiver vouched for. The :class:`KeyRing` keeps the current key and the previous
one (hops sealed just before a rotation still open) and destroys older or expired decapsulation keys:
once a dk is gone, recorded ciphertexts can no longer be opened through the ML-KEM branch.

Rotate at least every ``lifetime_ms / 2`` so peers always hold an unexpired announcement.
"""

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

from relay.crypto.clock import Clock
from relay.crypto.encoding import decode_fields, encode_fields, encode_uint, parse_text, parse_uint
from relay.crypto.errors import (
    BadAnnouncement,
    ExpiredAnnouncement,
    MalformedMessage,
    UnknownEncapsulationKey,
)
from relay.crypto.header import EK_ID_SIZE, LABEL
from relay.crypto.identity import GatewayIdentity, TrustStore
from relay.crypto.kem import DecapsulationKey, KemProvider, generate_decapsulation_key
from relay.crypto.suites import SUITES, Suite

ANNOUNCEMENT_CONTEXT = LABEL + b"/ek"
DEFAULT_LIFETIME_MS = 3_600_000


def encapsulation_key_hash(encapsulation_key: bytes) -> bytes:
    """SHA3-256(ek), carried in hop headers so the sender's choice of ek is bound and checkable."""
    return hashlib.sha3_256(encapsulation_key).digest()


@dataclass(frozen=True)
class EncapsulationKey:
    """The public facts of one encapsulation key.

    Seal only to keys returned by :meth:`EncapsulationKeyAnnouncement.verify`.
    """

    gateway_id: str
    suite: Suite
    ek_id: bytes
    encapsulation_key: bytes
    not_after_ms: int

    @cached_property
    def ek_hash(self) -> bytes:
        return encapsulation_key_hash(self.encapsulation_key)


@dataclass(frozen=True)
class EncapsulationKeyAnnouncement:
    """A signed encapsulation key as it travels between gateways (see :meth:`to_bytes`)."""

    key: EncapsulationKey
    signature: bytes

    @staticmethod
    def signed_bytes(key: EncapsulationKey) -> bytes:
        return encode_fields(
            ANNOUNCEMENT_CONTEXT,
            key.suite.id.encode(),
            key.gateway_id.encode(),
            key.ek_id,
            key.encapsulation_key,
            encode_uint(key.not_after_ms, 8),
        )

    def to_bytes(self) -> bytes:
        return encode_fields(self.signed_bytes(self.key), self.signature)

    @classmethod
    def from_bytes(cls, data: bytes) -> "EncapsulationKeyAnnouncement":
        """Parse without trusting anything; :meth:`verify` decides trust."""
        try:
            body, signature = decode_fields(data, 2)
            label, suite_id, gateway_id, ek_id, ek, not_after = decode_fields(body, 6)
            suite = SUITES.get(parse_text(suite_id, "suite"))
            if label != ANNOUNCEMENT_CONTEXT or suite is None or len(ek_id) != EK_ID_SIZE:
                raise MalformedMessage("bad label, suite or ek_id")
            key = EncapsulationKey(
                parse_text(gateway_id, "gateway_id"), suite, ek_id, ek, parse_uint(not_after, 8, "not_after")
            )
        except MalformedMessage as exc:
            raise BadAnnouncement(f"malformed encapsulation-key announcement: {exc}") from None
        return cls(key, signature)

    def verify(self, trust: TrustStore, now_ms: int) -> EncapsulationKey:
        """Check pinning, suite, size, signature and expiry; only the returned key may be used to seal."""
        key = self.key
        peer = trust.get(key.gateway_id)
        if peer.suite is not key.suite:
            raise BadAnnouncement(
                f"{key.gateway_id!r} announced suite {key.suite.id} but its identity is suite {peer.suite.id}"
            )
        if len(key.encapsulation_key) != key.suite.kem.encapsulation_key_size:
            raise BadAnnouncement(f"encapsulation key of {key.gateway_id!r} has the wrong size")
        if not peer.verify(self.signature, self.signed_bytes(key), ANNOUNCEMENT_CONTEXT):
            raise BadAnnouncement(f"announcement signature does not verify for {key.gateway_id!r}")
        if key.not_after_ms < now_ms:
            raise ExpiredAnnouncement(f"encapsulation key {key.ek_id.hex()} of {key.gateway_id!r} has expired")
        return key


@dataclass(frozen=True)
class RingEntry:
    """One held encapsulation key: its signed announcement and the decapsulation key that opens it."""

    announcement: EncapsulationKeyAnnouncement
    decapsulation_key: DecapsulationKey

    @property
    def key(self) -> EncapsulationKey:
        return self.announcement.key


class KeyRing:
    """This gateway's current and previous encapsulation keys, by ek_id.

    Mutable by design (rotation), but owned by one gateway instance and never shared globally. Invariant:
    at most two entries, newest first, none past its not_after when looked at; every dk the ring lets go
    of is destroyed. A ring made with ``entries`` holds what it is given (the process copy of a ring kept
    elsewhere, :class:`relay.gateway.shared_keyring.SharedKeyRing`); without, it starts with a fresh key.
    """

    def __init__(
        self,
        identity: GatewayIdentity,
        *,
        kem: KemProvider,
        clock: Clock,
        lifetime_ms: int = DEFAULT_LIFETIME_MS,
        randbytes: Callable[[int], bytes] = os.urandom,
        entries: Sequence[RingEntry] | None = None,
    ) -> None:
        if lifetime_ms <= 0:
            raise ValueError("lifetime_ms must be positive")
        self.identity = identity
        self._kem = kem
        self._clock = clock
        self._lifetime_ms = lifetime_ms
        self._randbytes = randbytes
        self._entries: list[RingEntry] = []  # newest first, at most two
        if entries is None:
            self.rotate()
        else:
            self.hold(entries)

    @property
    def gateway_id(self) -> str:
        return self.identity.gateway_id

    @property
    def suite(self) -> Suite:
        return self.identity.suite

    @property
    def lifetime_ms(self) -> int:
        return self._lifetime_ms

    def current_announcement(self) -> EncapsulationKeyAnnouncement:
        """The signed key to hand to peers; rotates first if the current key has expired."""
        self.retire_expired()
        return self._entries[0].announcement if self._entries else self.rotate()

    def mint(self) -> RingEntry:
        """A new signed key pair, not held yet: :meth:`rotate` holds it at once, a shared ring publishes it
        first. The caller holds it or destroys its dk. Its not_after is later than every held key's, even
        for two rotations within one clock tick, so the newest key (the current one) is always the one
        that expires last, which is how a shared ring orders its keys."""
        dk = generate_decapsulation_key(self._kem, self.suite.kem)
        not_after = max([self._clock() + self._lifetime_ms, *(entry.key.not_after_ms + 1 for entry in self._entries)])
        key = EncapsulationKey(
            self.gateway_id, self.suite, self._randbytes(EK_ID_SIZE), dk.encapsulation_key, not_after
        )
        signature = self.identity.sign(EncapsulationKeyAnnouncement.signed_bytes(key), ANNOUNCEMENT_CONTEXT)
        return RingEntry(EncapsulationKeyAnnouncement(key, signature), dk)

    def rotate(self) -> EncapsulationKeyAnnouncement:
        """Make a new current key; keep the previous one, destroy anything older."""
        self.hold([self.mint(), *self._entries])
        return self._entries[0].announcement

    def hold(self, entries: Sequence[RingEntry]) -> None:
        """Hold the first two unexpired of ``entries`` (newest first) and destroy every other dk, held or given."""
        now = self._clock()
        kept = [entry for entry in entries if entry.key.not_after_ms >= now][:2]
        for dropped in [*self._entries, *entries]:
            if not any(dropped is entry for entry in kept):
                dropped.decapsulation_key.destroy()
        self._entries = kept

    def held(self) -> tuple[RingEntry, ...]:
        """The unexpired entries, newest (the current key) first."""
        self.retire_expired()
        return tuple(self._entries)

    def retire_expired(self) -> None:
        """Destroy every key past not_after, including the current one if rotation was missed."""
        self.hold(self._entries)

    def decapsulation_key(self, ek_id: bytes, ek_hash: bytes) -> DecapsulationKey:
        """The dk a hop header names, if it is still held and the header's ek hash matches it."""
        self.retire_expired()
        for entry in self._entries:
            key = entry.key
            if key.ek_id == ek_id and key.ek_hash == ek_hash:
                return entry.decapsulation_key
        raise UnknownEncapsulationKey(f"no live encapsulation key {ek_id.hex()} with that hash")
