"""Seal/open of one hop: round trips, tamper resistance, policy, freshness and replay."""

import asyncio
import dataclasses
import os
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.crypto.encoding import encode_fields
from relay.crypto.errors import (
    BadSignature,
    ConfirmationFailed,
    DecryptionFailed,
    ExpiredAnnouncement,
    HopError,
    MalformedMessage,
    PolicyViolation,
    ReplayedMessage,
    StaleMessage,
    UnknownEncapsulationKey,
    UnknownPeer,
    WrongRecipient,
    WrongSender,
)
from relay.crypto.header import HopMode
from relay.crypto.hop import DEFAULT_WINDOW_MS, QkdKey, SealedHop
from relay.crypto.identity import TrustStore
from relay.crypto.kdf import derive_hop_keys
from relay.crypto.keyring import KeyRing
from relay.crypto.replay import MemoryReplayGuard
from relay.crypto.suites import SUITE_A
from tests.support.crypto_identities import KEM, Identities, Link

HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("mode", list(HopMode))
async def test_round_trip_and_confirmation(link: Link, mode: HopMode) -> None:
    key = os.urandom(32)
    pending = link.seal(key, mode)
    opened = await link.open(SealedHop.from_bytes(pending.message.to_bytes()), mode)
    assert opened.key == key
    assert opened.header == pending.message.header
    pending.verify_confirmation(opened.confirmation)
    assert (opened.header.qkd_key_id == "") == (mode is HopMode.PQC_ONLY)


async def test_confirmation_mismatch_is_refused(link: Link) -> None:
    pending = link.seal(os.urandom(32))
    opened = await link.open(pending.message)
    forged = bytes([opened.confirmation[0] ^ 1]) + opened.confirmation[1:]
    with pytest.raises(ConfirmationFailed):
        pending.verify_confirmation(forged)


@HYPOTHESIS
@given(key=st.binary(min_size=1, max_size=1024), mode=st.sampled_from(list(HopMode)))
def test_round_trip_any_key_size(identities: Identities, runner: asyncio.Runner, key: bytes, mode: HopMode) -> None:
    """Every whole-byte size from 8 to 8192 bits relays unchanged."""
    link = identities.link(SUITE_A)
    pending = link.seal(key, mode)
    assert runner.run(link.open(SealedHop.from_bytes(pending.message.to_bytes()), mode)).key == key


@pytest.fixture(scope="module")
def sealed_wire(identities: Identities) -> tuple[Link, bytes]:
    link = identities.link(SUITE_A)
    return link, link.seal(os.urandom(32)).message.to_bytes()


@HYPOTHESIS
@given(data=st.data())
def test_any_flipped_bit_is_refused(
    sealed_wire: tuple[Link, bytes], runner: asyncio.Runner, data: st.DataObject
) -> None:
    """Header, ciphertext, W, signature and every length prefix are authenticated or validated."""
    link, wire = sealed_wire
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    tampered = bytearray(wire)
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(HopError):
        runner.run(link.open(SealedHop.from_bytes(bytes(tampered)), replay=MemoryReplayGuard(link.clock)))


@HYPOTHESIS
@given(bit=st.integers(0, 255))
def test_any_flipped_qkd_key_bit_is_refused(sealed_wire: tuple[Link, bytes], runner: asyncio.Runner, bit: int) -> None:
    link, wire = sealed_wire
    message = SealedHop.from_bytes(wire)
    qkd_key = bytearray(link.kms[message.header.qkd_key_id])
    qkd_key[bit // 8] ^= 1 << (bit % 8)

    async def fetch(key_id: str) -> bytes:
        return bytes(qkd_key)

    with pytest.raises(DecryptionFailed):
        runner.run(link.open(message, replay=MemoryReplayGuard(link.clock), fetch_qkd_key=fetch))


async def test_every_header_byte_is_protected(sealed_wire: tuple[Link, bytes]) -> None:
    """Random bit flips mostly land in the signature; walk the framing and header exhaustively."""
    link, wire = sealed_wire
    header_end = 4 + len(SealedHop.from_bytes(wire).header.encode())
    for index in range(header_end + 4):  # header with its prefix, and the ciphertext's length prefix
        tampered = bytearray(wire)
        tampered[index] ^= 0x01 if index % 2 else 0x80
        with pytest.raises(HopError):
            await link.open(SealedHop.from_bytes(bytes(tampered)), replay=MemoryReplayGuard(link.clock))


def _flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


@pytest.mark.parametrize("part", ["ciphertext", "wrapped_key", "signature"])
async def test_flipped_body_fails_signature(link: Link, part: str) -> None:
    message = link.seal(os.urandom(32)).message
    changes: dict[str, Any] = {part: _flip(getattr(message, part))}
    tampered = dataclasses.replace(message, **changes)
    with pytest.raises(BadSignature):
        await link.open(tampered)


async def test_changed_qkd_key_id_fails_signature(link: Link) -> None:
    message = link.seal(os.urandom(32)).message
    other = link.qkd_key()
    tampered = dataclasses.replace(message, header=dataclasses.replace(message.header, qkd_key_id=other.key_id))
    with pytest.raises(BadSignature):
        await link.open(tampered)


async def test_wrong_qkd_key_fails_decryption(link: Link) -> None:
    message = link.seal(os.urandom(32)).message
    link.kms[message.header.qkd_key_id] = _flip(link.kms[message.header.qkd_key_id], 31)
    with pytest.raises(DecryptionFailed):
        await link.open(message)


async def test_replay_is_refused(link: Link) -> None:
    message = link.seal(os.urandom(32)).message
    await link.open(message)
    with pytest.raises(ReplayedMessage):
        await link.open(message)


async def test_forged_message_does_not_burn_the_transfer(link: Link) -> None:
    """The replay guard is consulted only after the signature verified."""
    message = link.seal(os.urandom(32)).message
    with pytest.raises(BadSignature):
        await link.open(dataclasses.replace(message, signature=_flip(message.signature)))
    await link.open(message)


@pytest.mark.parametrize("offset_ms", [DEFAULT_WINDOW_MS + 1, -DEFAULT_WINDOW_MS - 1])
async def test_stale_or_future_timestamp_is_refused(link: Link, offset_ms: int) -> None:
    message = link.seal(os.urandom(32)).message
    link.clock.advance(offset_ms)
    with pytest.raises(StaleMessage):
        await link.open(message)


async def test_window_is_a_parameter(link: Link) -> None:
    message = link.seal(os.urandom(32)).message
    link.clock.advance(10_000)
    with pytest.raises(StaleMessage):
        await link.open(message, window_ms=5_000)
    await link.open(message, window_ms=20_000)


async def test_wrong_recipient_is_refused(link: Link) -> None:
    message = link.seal(os.urandom(32)).message
    bystander = KeyRing(link.sender, kem=KEM, clock=link.clock)  # any gateway but the addressee
    with pytest.raises(WrongRecipient):
        await link.open(message, recipient=bystander)


async def test_wrong_sender_is_refused(link: Link) -> None:
    message = link.seal(os.urandom(32)).message
    with pytest.raises(WrongSender):
        await link.open(message, expected_sender="somebody-else")
    await link.open(message, expected_sender=link.sender.gateway_id)


async def test_unpinned_sender_is_refused(link: Link) -> None:
    message = link.seal(os.urandom(32)).message
    pinned = {gid: peer for gid, peer in link.trust.peers.items() if gid != link.sender.gateway_id}
    with pytest.raises(UnknownPeer):
        await link.open(message, trust=TrustStore(pinned))


async def test_link_policy_mode_cannot_be_downgraded(link: Link) -> None:
    message = link.seal(os.urandom(32), HopMode.PQC_ONLY).message
    with pytest.raises(PolicyViolation):
        await link.open(message, HopMode.QKD_PQC)


def test_seal_refuses_qkd_key_mismatched_with_mode(link: Link) -> None:
    with pytest.raises(PolicyViolation):
        link.seal(os.urandom(32), HopMode.PQC_ONLY, qkd_key=link.qkd_key())
    with pytest.raises(PolicyViolation):
        link.seal(os.urandom(32), HopMode.QKD_PQC, qkd_key=None)
    with pytest.raises(PolicyViolation):
        link.seal(os.urandom(32), HopMode.QKD_PQC, qkd_key=QkdKey("short", os.urandom(16)))


@pytest.mark.parametrize("size", [0, 1025])
def test_seal_refuses_key_sizes_outside_8_to_8192_bits(link: Link, size: int) -> None:
    with pytest.raises(ValueError, match="key_size"):
        link.seal(os.urandom(size))


def test_seal_refuses_expired_encapsulation_key(link: Link) -> None:
    recipient = link.receiver.current_announcement().verify(link.trust, link.clock())
    link.clock.advance(600_001)
    with pytest.raises(ExpiredAnnouncement):
        link.seal(os.urandom(32), recipient=recipient)


async def test_retired_encapsulation_key_cannot_open(link: Link) -> None:
    message = link.seal(os.urandom(32)).message
    link.receiver.rotate()
    await link.open(message)  # previous key still held
    message = link.seal(os.urandom(32)).message
    link.receiver.rotate()
    link.receiver.rotate()
    with pytest.raises(UnknownEncapsulationKey):
        await link.open(message)


def test_wire_decoder_rejects_truncation_and_trailing_bytes(link: Link) -> None:
    wire = link.seal(os.urandom(32)).message.to_bytes()
    for cut in (0, 3, 100, len(wire) - 1):
        with pytest.raises(MalformedMessage):
            SealedHop.from_bytes(wire[:cut])
    with pytest.raises(MalformedMessage):
        SealedHop.from_bytes(wire + b"\x00")


def _attack(link: Link, message: SealedHop, shared_secret: bytes, qkd_key: bytes) -> bytes:
    """What an attacker holding candidate secrets would compute to unwrap K."""
    aad = encode_fields(message.header.encode(), message.ciphertext)
    keys = derive_hop_keys(message.header.suite, shared_secret, qkd_key, message.header.suite.digest(aad))
    return AESGCM(keys.encryption_key).decrypt(bytes(12), message.wrapped_key, aad)


async def test_each_secret_alone_protects_k(link: Link) -> None:
    """Hybrid security: knowing ss (ML-KEM broken) or k_q (QKD key leaked) alone does not open W."""
    key = os.urandom(32)
    message = link.seal(key).message
    header = message.header
    ring_key = link.receiver.decapsulation_key(header.ek_id, header.ek_hash)
    shared_secret, qkd_key = ring_key.decapsulate(message.ciphertext), link.kms[header.qkd_key_id]
    assert _attack(link, message, shared_secret, qkd_key) == key  # both secrets: the receiver's view
    guesses = (bytes(32), os.urandom(32))
    for guess in guesses:
        with pytest.raises(InvalidTag):
            _attack(link, message, shared_secret, guess)  # ML-KEM broken, QKD key unknown
        with pytest.raises(InvalidTag):
            _attack(link, message, guess, qkd_key)  # QKD key leaked, ML-KEM secret unknown
