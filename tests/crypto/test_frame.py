"""Seal/open of one hop frame: round trips, tamper resistance, policy, freshness, replay, pads, confirmation.

Every mode a link can run is covered: ``qkd+pqc`` with qkd_use ``hkdf`` (one QKD key in the combiner),
``qkd+pqc`` with ``otp`` (and a one-time pad per key), and ``pqc-only``.
"""

import asyncio
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.crypto.encoding import decode_fields, encode_fields, encode_uint
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
from relay.crypto.frame import DEFAULT_WINDOW_MS, FrameEntry, QkdKey, SealedFrame
from relay.crypto.header import MAX_FRAME_KEYS, PAD_KEY_SIZE, HopMode, QkdUse, pad_keys_needed
from relay.crypto.identity import TrustStore
from relay.crypto.kdf import derive_hop_keys
from relay.crypto.keyring import KeyRing
from relay.crypto.replay import MemoryReplayGuard
from relay.crypto.suites import SUITE_A, SUITE_B, Suite
from tests.support.crypto_identities import KEM, Identities, Link

HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HKDF = (HopMode.QKD_PQC, QkdUse.HKDF)
OTP = (HopMode.QKD_PQC, QkdUse.OTP)
PQC = (HopMode.PQC_ONLY, QkdUse.HKDF)
MODES = pytest.mark.parametrize("policy", [HKDF, OTP, PQC], ids=["hkdf", "otp", "pqc-only"])
Policy = tuple[HopMode, QkdUse]


def _keys(*sizes: int) -> list[bytes]:
    return [os.urandom(size) for size in sizes]


def _flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


def _transcript_hash(message: SealedFrame) -> bytes:
    return message.header.suite.digest(encode_fields(message.header.encode(), message.ciphertext))


def _shared_secret(link: Link, message: SealedFrame) -> bytes:
    """The ML-KEM secret, as the receiver (or an attacker who broke ML-KEM) recovers it."""
    header = message.header
    return link.receiver.decapsulation_key(header.ek_id, header.ek_hash).decapsulate(message.ciphertext)


def _unwrap(message: SealedFrame, index: int, shared_secret: bytes, qkd_key: bytes | None) -> bytes:
    """W_index decrypted under the k_enc that these candidate secrets give (InvalidTag if wrong)."""
    th = _transcript_hash(message)
    keys = derive_hop_keys(message.header.suite, shared_secret, qkd_key, th)
    return AESGCM(keys.encryption_key).decrypt(index.to_bytes(12, "big"), message.wrapped_keys[index], th)


@dataclass
class RecordingFetcher:
    """The receiving lane's KMS copies, recording every fetch (the QKD key a frame consumes)."""

    kms: dict[str, bytes]
    calls: list[tuple[str, ...]] = field(default_factory=list)

    async def __call__(self, key_ids: Sequence[str]) -> list[bytes]:
        self.calls.append(tuple(key_ids))
        return [self.kms[key_id] for key_id in key_ids]


# Round trips ---------------------------------------------------------------------------------------------


@MODES
async def test_round_trip_and_confirmation(link: Link, policy: Policy) -> None:
    keys = _keys(32, 1, 33, 1024)
    pending = link.seal(*keys, mode=policy[0], qkd_use=policy[1])
    opened = await link.open(SealedFrame.from_bytes(pending.message.to_bytes()), *policy)
    assert opened.keys == tuple(keys)
    assert opened.header == pending.message.header
    pending.verify_confirmation(b"outcomes", opened.confirm(b"outcomes"))
    assert (opened.header.qkd_key_id == "") == (policy is PQC)


@HYPOTHESIS
@given(
    keys=st.lists(st.binary(min_size=1, max_size=1024), min_size=1, max_size=8),
    policy=st.sampled_from([HKDF, OTP, PQC]),
    suite=st.sampled_from([SUITE_A, SUITE_B]),
)
def test_round_trip_any_keys(
    identities: Identities, runner: asyncio.Runner, keys: list[bytes], policy: Policy, suite: Suite
) -> None:
    """Frames of 1..8 keys of every whole-byte size from 8 to 8192 bits relay unchanged, in order."""
    link = identities.link(suite)
    pending = link.seal(*keys, mode=policy[0], qkd_use=policy[1])
    opened = runner.run(link.open(SealedFrame.from_bytes(pending.message.to_bytes()), *policy))
    assert opened.keys == tuple(keys)
    assert [item.key_size for item in opened.header.items] == [len(key) for key in keys]


async def test_a_full_frame_round_trips_and_one_more_key_is_refused(identities: Identities) -> None:
    link = identities.link(SUITE_A)
    keys = [index.to_bytes(32, "big") for index in range(MAX_FRAME_KEYS)]
    pending = link.seal(*keys, mode=HopMode.QKD_PQC, qkd_use=QkdUse.OTP)
    assert (await link.open(SealedFrame.from_bytes(pending.message.to_bytes()), *OTP)).keys == tuple(keys)
    with pytest.raises(ValueError, match="1..4096"):
        link.seal(*keys, bytes(32))


async def test_a_frame_mixing_pairs_and_paths_keeps_each_items_header(link: Link) -> None:
    """One frame to the next gateway may carry keys of different SAE pairs, on different paths and hops."""
    entries = [
        FrameEntry(os.urandom(16), 1, ("gw-0", "gw-1", "gw-2"), "SAE-A", "SAE-B", "kid-1", os.urandom(32)),
        FrameEntry(os.urandom(16), 3, ("gw-9", "gw-8", "gw-0", "gw-1"), "SAE-X", "SAE-Y", "kid-2", os.urandom(5)),
        FrameEntry(os.urandom(16), 0, ("gw-0", "gw-1"), "SAE #4", "SAE-B", "kid-3", os.urandom(64), '{"a": 1}', True),
    ]
    message = link.seal(entries=entries, qkd_use=QkdUse.OTP).message
    opened = await link.open(SealedFrame.from_bytes(message.to_bytes()), *OTP)
    assert opened.keys == tuple(entry.key for entry in entries)
    for entry, item in zip(entries, opened.header.items, strict=True):
        assert (item.transfer_id, item.hop, item.path, item.initiator, item.target) == (
            entry.transfer_id,
            entry.hop,
            entry.path,
            entry.initiator,
            entry.target,
        )
        assert (item.key_id, item.key_size, item.extension_json, item.no_degrade) == (
            entry.key_id,
            len(entry.key),
            entry.extension_json,
            entry.no_degrade,
        )


# Tampering -----------------------------------------------------------------------------------------------


def _sealed_wire(identities: Identities, policy: Policy) -> tuple[Link, Policy, bytes]:
    """A three-key frame (sizes 1, 32, 33, so an otp one has pads of one, one and two QKD keys)."""
    link = identities.link(SUITE_A)
    return link, policy, link.seal(*_keys(1, 32, 33), mode=policy[0], qkd_use=policy[1]).message.to_bytes()


@pytest.fixture(scope="module", params=[HKDF, OTP, PQC], ids=["hkdf", "otp", "pqc-only"])
def sealed_wire(request: pytest.FixtureRequest, identities: Identities) -> tuple[Link, Policy, bytes]:
    return _sealed_wire(identities, request.param)


@pytest.fixture(scope="module", params=[HKDF, OTP], ids=["hkdf", "otp"])
def qkd_sealed_wire(request: pytest.FixtureRequest, identities: Identities) -> tuple[Link, Policy, bytes]:
    return _sealed_wire(identities, request.param)


async def _open_fresh(link: Link, policy: Policy, wire: bytes) -> None:
    """Open with a new replay guard, so only the tampering can make it fail."""
    await link.open(SealedFrame.from_bytes(wire), *policy, replay=MemoryReplayGuard(link.clock))


@HYPOTHESIS
@given(data=st.data())
def test_any_flipped_bit_is_refused(
    sealed_wire: tuple[Link, Policy, bytes], runner: asyncio.Runner, data: st.DataObject
) -> None:
    """Header, ciphertext, every W_i, the signature and every length prefix are authenticated or validated."""
    link, policy, wire = sealed_wire
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    with pytest.raises(HopError):
        runner.run(_open_fresh(link, policy, _flip_bit(wire, bit)))


def _flip_bit(data: bytes, bit: int) -> bytes:
    tampered = bytearray(data)
    tampered[bit // 8] ^= 1 << (bit % 8)
    return bytes(tampered)


async def test_every_header_byte_is_protected(sealed_wire: tuple[Link, Policy, bytes]) -> None:
    """Random bit flips mostly land in the signature; walk the framing and every header byte exhaustively."""
    link, policy, wire = sealed_wire
    await _open_fresh(link, policy, wire)  # the control: untampered, it opens
    header_end = 4 + len(SealedFrame.from_bytes(wire).header.encode())
    for index in range(header_end + 4):  # the header with its prefix, and the ciphertext's length prefix
        with pytest.raises(HopError):
            await _open_fresh(link, policy, _flip_bit(wire, index * 8 + (0 if index % 2 else 7)))


@pytest.mark.parametrize("part", ["ciphertext", "signature"])
async def test_flipped_body_fails_signature(link: Link, part: str) -> None:
    message = link.seal(*_keys(32, 32)).message
    with pytest.raises(BadSignature):
        changes: dict[str, Any] = {part: _flip(getattr(message, part))}
        await link.open(dataclasses.replace(message, **changes))


@pytest.mark.parametrize("index", [0, 1])
async def test_flipped_wrapped_key_fails_signature(link: Link, index: int) -> None:
    message = link.seal(*_keys(32, 32)).message
    wrapped = list(message.wrapped_keys)
    wrapped[index] = _flip(wrapped[index], 5)
    with pytest.raises(BadSignature):
        await link.open(dataclasses.replace(message, wrapped_keys=tuple(wrapped)))


async def test_changed_qkd_key_id_fails_signature(link: Link) -> None:
    message = link.seal(*_keys(32)).message
    tampered = dataclasses.replace(message.header, qkd_key_id=link.qkd_key().key_id)
    with pytest.raises(BadSignature):
        await link.open(dataclasses.replace(message, header=tampered))


async def test_swapped_pad_key_ids_fail_signature(link: Link) -> None:
    """The pad key_IDs are in the header, so moving pads between items is caught like any header change."""
    message = link.seal(*_keys(32, 32), qkd_use=QkdUse.OTP).message
    first, second = message.header.items
    items = (
        dataclasses.replace(first, pad_key_ids=second.pad_key_ids),
        dataclasses.replace(second, pad_key_ids=first.pad_key_ids),
    )
    with pytest.raises(BadSignature):
        await link.open(dataclasses.replace(message, header=dataclasses.replace(message.header, items=items)), *OTP)


@MODES
async def test_reordered_items_fail_signature(link: Link, policy: Policy) -> None:
    message = link.seal(*_keys(32, 32, 16), mode=policy[0], qkd_use=policy[1]).message
    header = dataclasses.replace(message.header, items=message.header.items[::-1])
    for tampered in (
        dataclasses.replace(message, header=header, wrapped_keys=message.wrapped_keys[::-1]),  # items and keys
        dataclasses.replace(message, header=header),  # items only
        dataclasses.replace(message, wrapped_keys=message.wrapped_keys[1::-1] + message.wrapped_keys[2:]),  # keys
    ):
        with pytest.raises(BadSignature):
            await link.open(tampered, *policy)


@MODES
async def test_dropped_item_fails_signature(link: Link, policy: Policy) -> None:
    message = link.seal(*_keys(32, 32, 16), mode=policy[0], qkd_use=policy[1]).message
    for drop in range(3):
        header = dataclasses.replace(
            message.header, items=message.header.items[:drop] + message.header.items[drop + 1 :]
        )
        wrapped = message.wrapped_keys[:drop] + message.wrapped_keys[drop + 1 :]
        with pytest.raises(BadSignature):
            await link.open(dataclasses.replace(message, header=header, wrapped_keys=wrapped), *policy)


async def test_duplicated_item_is_malformed(link: Link) -> None:
    """A transfer appears once per frame: a repeated item (with its W) does not even decode."""
    message = link.seal(*_keys(32, 32)).message
    fields = decode_fields(message.header.encode(), 14)
    items = decode_fields(fields[13], 2)
    fields[12], fields[13] = encode_uint(3, 2), encode_fields(*items, items[0])
    wire = encode_fields(
        encode_fields(*fields),
        message.ciphertext,
        encode_fields(*message.wrapped_keys, message.wrapped_keys[0]),
        message.signature,
    )
    with pytest.raises(MalformedMessage, match="once per frame"):
        SealedFrame.from_bytes(wire)


async def test_wrapped_keys_are_bound_to_their_position(link: Link) -> None:
    """Below the signature too: W_i only authenticates under nonce i, so a swap fails the AEAD tags."""
    message = link.seal(*_keys(32, 32)).message
    shared_secret, qkd_key = _shared_secret(link, message), link.kms[message.header.qkd_key_id]
    swapped = dataclasses.replace(message, wrapped_keys=message.wrapped_keys[::-1])
    _unwrap(message, 0, shared_secret, qkd_key)
    for index in (0, 1):
        with pytest.raises(InvalidTag):
            _unwrap(swapped, index, shared_secret, qkd_key)


def test_wire_decoder_rejects_truncation_trailing_bytes_and_missing_keys(link: Link) -> None:
    message = link.seal(*_keys(32, 32)).message
    wire = message.to_bytes()
    for cut in (0, 3, 100, len(wire) - 1):
        with pytest.raises(MalformedMessage):
            SealedFrame.from_bytes(wire[:cut])
    with pytest.raises(MalformedMessage):
        SealedFrame.from_bytes(wire + b"\x00")
    for wrapped in (message.wrapped_keys[:1], (message.wrapped_keys[0], message.wrapped_keys[1][:-1])):
        short = encode_fields(message.header.encode(), message.ciphertext, encode_fields(*wrapped), message.signature)
        with pytest.raises(MalformedMessage):
            SealedFrame.from_bytes(short)


# Link policy ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sealed", "expected"),
    [(PQC, HKDF), (PQC, OTP), (HKDF, OTP), (OTP, HKDF), (HKDF, PQC)],
    ids=["pqc-only-at-hkdf", "pqc-only-at-otp", "hkdf-at-otp", "otp-at-hkdf", "hkdf-at-pqc-only"],
)
async def test_link_policy_cannot_be_changed_by_the_sender(link: Link, sealed: Policy, expected: Policy) -> None:
    """A sender cannot talk a link down (to pqc-only, or from otp to hkdf), nor otherwise off its policy."""
    fetch = RecordingFetcher(link.kms)
    message = link.seal(*_keys(32), mode=sealed[0], qkd_use=sealed[1]).message
    with pytest.raises(PolicyViolation):
        await link.open(message, *expected, fetch_qkd_keys=fetch)
    assert fetch.calls == []
    await link.open(message, *sealed)  # refused for its policy only, and nothing was recorded


def test_seal_refuses_qkd_key_mismatched_with_mode(link: Link) -> None:
    with pytest.raises(PolicyViolation):
        link.seal(*_keys(32), mode=HopMode.PQC_ONLY, qkd_key=link.qkd_key())
    with pytest.raises(PolicyViolation):
        link.seal(*_keys(32), mode=HopMode.QKD_PQC, qkd_key=None)
    with pytest.raises(PolicyViolation):
        link.seal(*_keys(32), mode=HopMode.QKD_PQC, qkd_key=QkdKey("short", os.urandom(16)))


def test_seal_refuses_a_recipient_of_another_suite(identities: Identities) -> None:
    link, other = identities.link(SUITE_A), identities.link(SUITE_B)
    recipient = other.receiver.current_announcement().verify(other.trust, other.clock())
    with pytest.raises(PolicyViolation):
        link.seal(*_keys(32), recipient=recipient)


@pytest.mark.parametrize("size", [0, 1025])
def test_seal_refuses_key_sizes_outside_8_to_8192_bits(link: Link, size: int) -> None:
    with pytest.raises(ValueError, match="key_size"):
        link.seal(*_keys(32, size))


def test_seal_refuses_expired_encapsulation_key(link: Link) -> None:
    recipient = link.receiver.current_announcement().verify(link.trust, link.clock())
    link.clock.advance(600_001)
    with pytest.raises(ExpiredAnnouncement):
        link.seal(*_keys(32), recipient=recipient)


async def test_retired_encapsulation_key_cannot_open(link: Link) -> None:
    message = link.seal(*_keys(32)).message
    link.receiver.rotate()
    await link.open(message)  # previous key still held
    message = link.seal(*_keys(32)).message
    link.receiver.rotate()
    link.receiver.rotate()
    with pytest.raises(UnknownEncapsulationKey):
        await link.open(message)


# One-time pads -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("delta", [-1, 1])
def test_otp_seal_refuses_a_wrong_number_of_pad_keys(link: Link, delta: int) -> None:
    keys = _keys(32, 33)  # pads of one and two QKD keys
    pads = [link.qkd_key() for _ in range(3 + delta)]
    with pytest.raises(PolicyViolation, match="pad QKD keys"):
        link.seal(*keys, qkd_use=QkdUse.OTP, pad_keys=pads)


@pytest.mark.parametrize("policy", [HKDF, PQC], ids=["hkdf", "pqc-only"])
def test_seal_refuses_pad_keys_on_frames_without_pads(link: Link, policy: Policy) -> None:
    with pytest.raises(PolicyViolation, match="pad QKD keys"):
        link.seal(*_keys(32), mode=policy[0], qkd_use=policy[1], pad_keys=[link.qkd_key()])


def test_otp_seal_refuses_short_pad_keys(link: Link) -> None:
    with pytest.raises(PolicyViolation):
        link.seal(*_keys(32), qkd_use=QkdUse.OTP, pad_keys=[QkdKey("short", os.urandom(16))])


def test_pads_are_never_shared_between_items(link: Link) -> None:
    sizes = [1, 31, 32, 33, 64, 65, 1024]
    pads = [link.qkd_key() for size in sizes for _ in range(pad_keys_needed(size))]
    header = link.seal(*_keys(*sizes), qkd_use=QkdUse.OTP, pad_keys=pads).message.header
    assert [len(item.pad_key_ids) for item in header.items] == [-(-size // PAD_KEY_SIZE) for size in sizes]
    named = [key_id for item in header.items for key_id in item.pad_key_ids]
    assert named == [pad.key_id for pad in pads]  # each item takes the next unused pad keys, in order
    assert len(set(named)) == len(named) and header.qkd_key_id not in named
    assert header.qkd_key_ids == (header.qkd_key_id, *named)


async def test_otp_is_an_information_theoretic_layer_under_the_combiner(link: Link) -> None:
    """With k_enc known (ML-KEM broken AND the combiner's QKD key leaked) but the pads unknown, W_i opens to
    K_i xor P_i, not K_i, where P_i is the first |K_i| bytes of the item's QKD keys."""
    keys = _keys(33, 1, 32)
    message = link.seal(*keys, qkd_use=QkdUse.OTP).message
    shared_secret, qkd_key = _shared_secret(link, message), link.kms[message.header.qkd_key_id]
    for index, (key, item) in enumerate(zip(keys, message.header.items, strict=True)):
        pad = b"".join(link.kms[key_id] for key_id in item.pad_key_ids)[: len(key)]
        opened = _unwrap(message, index, shared_secret, qkd_key)
        assert opened != key
        assert opened == bytes(k ^ p for k, p in zip(key, pad, strict=True))


async def test_otp_frame_is_consistent_with_any_key_under_some_pad(link: Link) -> None:
    """The same authentic frame, opened by the real receiver with the real combiner key but other pad keys,
    yields any candidate K' chosen in advance: W and every computational secret leave K_i undetermined
    (the AEAD authenticates K_i xor P_i, so the pads stay information-theoretic and are not checked)."""
    keys = _keys(33, 1)
    message = link.seal(*keys, qkd_use=QkdUse.OTP).message
    shared_secret, qkd_key = _shared_secret(link, message), link.kms[message.header.qkd_key_id]
    candidates = _keys(33, 1)
    kms = dict(link.kms)
    for index, (candidate, item) in enumerate(zip(candidates, message.header.items, strict=True)):
        masked = _unwrap(message, index, shared_secret, qkd_key)
        other_pad = bytes(m ^ c for m, c in zip(masked, candidate, strict=True))
        other_pad += os.urandom(len(item.pad_key_ids) * PAD_KEY_SIZE - len(other_pad))  # the unused tail
        for n, key_id in enumerate(item.pad_key_ids):
            kms[key_id] = other_pad[n * PAD_KEY_SIZE : (n + 1) * PAD_KEY_SIZE]
    opened = await link.open(message, *OTP, fetch_qkd_keys=RecordingFetcher(kms))
    assert opened.keys == tuple(candidates) and opened.keys != tuple(keys)


@pytest.mark.parametrize("policy", [HKDF, OTP], ids=["hkdf", "otp"])
async def test_each_secret_alone_protects_k(link: Link, policy: Policy) -> None:
    """Hybrid security of the combiner: knowing ss (ML-KEM broken) or k_q (QKD key leaked) alone opens no W."""
    keys = _keys(32, 16)
    message = link.seal(*keys, mode=policy[0], qkd_use=policy[1]).message
    shared_secret, qkd_key = _shared_secret(link, message), link.kms[message.header.qkd_key_id]
    if policy is HKDF:
        assert _unwrap(message, 0, shared_secret, qkd_key) == keys[0]  # both secrets: the receiver's view
    for guess in (bytes(32), os.urandom(32)):
        for index in (0, 1):
            with pytest.raises(InvalidTag):
                _unwrap(message, index, shared_secret, guess)  # ML-KEM broken, QKD key unknown
            with pytest.raises(InvalidTag):
                _unwrap(message, index, guess, qkd_key)  # QKD key leaked, ML-KEM secret unknown


# QKD keys at the receiver --------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [HKDF, OTP], ids=["hkdf", "otp"])
async def test_wrong_combiner_qkd_key_fails_decryption(link: Link, policy: Policy) -> None:
    message = link.seal(*_keys(32, 32), mode=policy[0], qkd_use=policy[1]).message
    link.kms[message.header.qkd_key_id] = _flip(link.kms[message.header.qkd_key_id], 31)
    with pytest.raises(DecryptionFailed):
        await link.open(message, *policy)


@HYPOTHESIS
@given(bit=st.integers(0, 255))
def test_any_flipped_combiner_key_bit_fails_decryption(
    qkd_sealed_wire: tuple[Link, Policy, bytes], runner: asyncio.Runner, bit: int
) -> None:
    link, policy, wire = qkd_sealed_wire
    message = SealedFrame.from_bytes(wire)
    kms = dict(link.kms)
    kms[message.header.qkd_key_id] = _flip_bit(kms[message.header.qkd_key_id], bit)
    with pytest.raises(DecryptionFailed):
        runner.run(
            link.open(message, *policy, replay=MemoryReplayGuard(link.clock), fetch_qkd_keys=RecordingFetcher(kms))
        )


@MODES
async def test_fetcher_gets_every_named_qkd_key_once_combiners_first(link: Link, policy: Policy) -> None:
    message = link.seal(*_keys(32, 40), mode=policy[0], qkd_use=policy[1]).message
    fetch = RecordingFetcher(link.kms)
    await link.open(message, *policy, fetch_qkd_keys=fetch)
    assert fetch.calls == ([] if policy is PQC else [message.header.qkd_key_ids])
    assert len(message.header.qkd_key_ids) == {HKDF: 1, OTP: 4, PQC: 0}[policy]


@pytest.mark.parametrize("policy", [HKDF, OTP], ids=["hkdf", "otp"])
@pytest.mark.parametrize("answer", ["one fewer", "one more", "a short key"])
async def test_fetcher_answer_of_the_wrong_shape_is_refused(link: Link, policy: Policy, answer: str) -> None:
    message = link.seal(*_keys(32), mode=policy[0], qkd_use=policy[1]).message

    async def fetch(key_ids: Sequence[str]) -> list[bytes]:
        keys = [link.kms[key_id] for key_id in key_ids]
        return {"one fewer": keys[:-1], "one more": [*keys, os.urandom(32)], "a short key": [k[:16] for k in keys]}[
            answer
        ]

    with pytest.raises(PolicyViolation):
        await link.open(message, *policy, fetch_qkd_keys=fetch)


@pytest.mark.parametrize("policy", [HKDF, OTP], ids=["hkdf", "otp"])
async def test_forged_or_replayed_frames_consume_no_qkd_key(link: Link, policy: Policy) -> None:
    """The fetcher is called only after the signature verified and the frame_id was new."""
    message = link.seal(*_keys(32, 32), mode=policy[0], qkd_use=policy[1]).message
    fetch = RecordingFetcher(link.kms)
    with pytest.raises(BadSignature):
        await link.open(dataclasses.replace(message, signature=_flip(message.signature)), *policy, fetch_qkd_keys=fetch)
    assert fetch.calls == []
    await link.open(message, *policy, fetch_qkd_keys=fetch)
    with pytest.raises(ReplayedMessage):
        await link.open(message, *policy, fetch_qkd_keys=fetch)
    assert fetch.calls == [message.header.qkd_key_ids]


# Replay, freshness and identities ------------------------------------------------------------------------


async def test_replay_is_refused(link: Link) -> None:
    message = link.seal(*_keys(32, 32)).message
    await link.open(message)
    with pytest.raises(ReplayedMessage):
        await link.open(SealedFrame.from_bytes(message.to_bytes()))


async def test_forged_frame_does_not_burn_its_frame_id(link: Link) -> None:
    """The replay guard is consulted only after the signature verified."""
    message = link.seal(*_keys(32)).message
    with pytest.raises(BadSignature):
        await link.open(dataclasses.replace(message, signature=_flip(message.signature)))
    await link.open(message)


@pytest.mark.parametrize("offset_ms", [DEFAULT_WINDOW_MS + 1, -DEFAULT_WINDOW_MS - 1], ids=["past", "future"])
async def test_stale_or_future_timestamp_is_refused(link: Link, offset_ms: int) -> None:
    message = link.seal(*_keys(32)).message
    link.clock.advance(offset_ms)
    with pytest.raises(StaleMessage):
        await link.open(message)


async def test_window_is_a_parameter(link: Link) -> None:
    message = link.seal(*_keys(32)).message
    link.clock.advance(10_000)
    with pytest.raises(StaleMessage):
        await link.open(message, window_ms=5_000)
    await link.open(message, window_ms=20_000)


async def test_wrong_recipient_is_refused(link: Link) -> None:
    message = link.seal(*_keys(32)).message
    bystander = KeyRing(link.sender, kem=KEM, clock=link.clock)  # any gateway but the addressee
    with pytest.raises(WrongRecipient):
        await link.open(message, recipient=bystander)


async def test_wrong_sender_is_refused(link: Link) -> None:
    message = link.seal(*_keys(32)).message
    with pytest.raises(WrongSender):
        await link.open(message, expected_sender="somebody-else")
    await link.open(message, expected_sender=link.sender.gateway_id)


async def test_unpinned_sender_is_refused(link: Link) -> None:
    message = link.seal(*_keys(32)).message
    pinned = {gid: peer for gid, peer in link.trust.peers.items() if gid != link.sender.gateway_id}
    with pytest.raises(UnknownPeer):
        await link.open(message, trust=TrustStore(pinned))


# Confirmation --------------------------------------------------------------------------------------------


@MODES
async def test_confirmation_authenticates_the_receivers_outcomes(link: Link, policy: Policy) -> None:
    pending = link.seal(*_keys(32, 32), mode=policy[0], qkd_use=policy[1])
    opened = await link.open(pending.message, *policy)
    outcomes = b"\x01stored\x00failed"
    confirmation = opened.confirm(outcomes)
    pending.verify_confirmation(outcomes, confirmation)
    for forged_outcomes, forged_tag in (
        (b"\x01stored\x01stored", confirmation),  # different outcomes
        (outcomes[:-1], confirmation),
        (outcomes, _flip(confirmation, len(confirmation) - 1)),
    ):
        with pytest.raises(ConfirmationFailed):
            pending.verify_confirmation(forged_outcomes, forged_tag)


async def test_confirmation_is_bound_to_its_frame(link: Link) -> None:
    first, second = link.seal(*_keys(32)), link.seal(*_keys(32))
    await link.open(first.message)
    opened = await link.open(second.message)
    with pytest.raises(ConfirmationFailed):
        first.verify_confirmation(b"ok", opened.confirm(b"ok"))


async def test_confirm_wipes_the_confirmer(link: Link) -> None:
    pending = link.seal(*_keys(32))
    opened = await link.open(pending.message)
    confirmation = opened.confirm(b"ok")
    with pytest.raises(ConfirmationFailed):
        opened.confirm(b"ok")
    pending.verify_confirmation(b"ok", confirmation)
    pending.wipe()
    with pytest.raises(ConfirmationFailed):
        pending.verify_confirmation(b"ok", confirmation)
