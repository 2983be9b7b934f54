"""ML-DSA identities on disk, the pinned trust store, signed encapsulation keys and key rotation."""

import dataclasses
import stat
from pathlib import Path

import pytest

from relay.crypto.errors import (
    BadAnnouncement,
    ExpiredAnnouncement,
    KeyFileError,
    UnknownEncapsulationKey,
    UnknownPeer,
)
from relay.crypto.identity import (
    TrustStore,
    generate_identity,
    load_identity,
    load_trust_store,
    validate_gateway_id,
)
from relay.crypto.keyring import EncapsulationKeyAnnouncement, KeyRing
from relay.crypto.suites import SUITE_B
from tests.support.crypto_identities import KEM, Identities, ManualClock


def test_generated_files_layout_and_permissions(tmp_path: Path) -> None:
    identity = generate_identity("gw-1", tmp_path, SUITE_B)
    private, public = tmp_path / "gw-1.mldsa.key", tmp_path / "gw-1.mldsa.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    loaded = load_identity("gw-1", tmp_path)
    assert loaded.suite is SUITE_B
    assert loaded.peer.public_bytes() == identity.peer.public_bytes()
    assert load_trust_store(tmp_path).get("gw-1").suite is SUITE_B


def test_identities_are_never_overwritten(tmp_path: Path) -> None:
    generate_identity("gw-1", tmp_path)
    with pytest.raises(KeyFileError, match="already exists"):
        generate_identity("gw-1", tmp_path)


def test_private_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    generate_identity("gw-1", tmp_path)
    (tmp_path / "gw-1.mldsa.key").chmod(0o644)
    with pytest.raises(KeyFileError, match="0644"):
        load_identity("gw-1", tmp_path)


def test_private_key_must_match_its_pinned_public_key(tmp_path: Path) -> None:
    generate_identity("gw-1", tmp_path)
    generate_identity("gw-2", tmp_path / "other")
    (tmp_path / "gw-1.mldsa.pub").write_bytes((tmp_path / "other" / "gw-2.mldsa.pub").read_bytes())
    with pytest.raises(KeyFileError, match="does not match"):
        load_identity("gw-1", tmp_path)


def test_trust_store_requires_pinned_keys(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no pinned"):
        load_trust_store(tmp_path)
    (tmp_path / "junk.mldsa.pub").write_bytes(b"not a key")
    with pytest.raises(KeyFileError):
        load_trust_store(tmp_path)


@pytest.mark.parametrize("gateway_id", ["", "../x", ".hidden", "a/b", "x" * 65, "gw 1"])
def test_unsafe_gateway_ids_are_rejected(gateway_id: str) -> None:
    with pytest.raises(ValueError):
        validate_gateway_id(gateway_id)


def test_signatures_are_bound_to_their_context(identities: Identities) -> None:
    identity = identities.by_id["a-sender"]
    signature = identity.sign(b"message", b"QKDRELAY-v1/ek")
    assert identity.peer.verify(signature, b"message", b"QKDRELAY-v1/ek")
    assert not identity.peer.verify(signature, b"message", b"QKDRELAY-v1/hop")
    assert not identity.peer.verify(signature, b"messagf", b"QKDRELAY-v1/ek")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ring(identities: Identities, clock: ManualClock) -> KeyRing:
    return KeyRing(identities.by_id["a-receiver"], kem=KEM, clock=clock, lifetime_ms=60_000)


def test_announcement_round_trips_and_verifies(identities: Identities, ring: KeyRing, clock: ManualClock) -> None:
    announcement = EncapsulationKeyAnnouncement.from_bytes(ring.current_announcement().to_bytes())
    key = announcement.verify(identities.trust, clock())
    assert key == ring.current_announcement().key


def test_announcement_signed_by_another_identity_is_refused(identities: Identities, ring: KeyRing) -> None:
    announcement = ring.current_announcement()
    impostor = identities.by_id["a-sender"]
    forged = EncapsulationKeyAnnouncement(
        announcement.key, impostor.sign(EncapsulationKeyAnnouncement.signed_bytes(announcement.key), b"x")
    )
    with pytest.raises(BadAnnouncement):
        forged.verify(identities.trust, 0)
    claimed = dataclasses.replace(announcement.key, gateway_id="a-sender")  # impostor's key, victim's ek
    with pytest.raises(BadAnnouncement):
        EncapsulationKeyAnnouncement(claimed, announcement.signature).verify(identities.trust, 0)


def test_announcement_from_unpinned_gateway_is_refused(identities: Identities, ring: KeyRing) -> None:
    pinned = {gid: peer for gid, peer in identities.trust.peers.items() if gid != "a-receiver"}
    with pytest.raises(UnknownPeer):
        ring.current_announcement().verify(TrustStore(pinned), 0)


def test_tampered_announcement_is_refused(identities: Identities, ring: KeyRing) -> None:
    wire = bytearray(ring.current_announcement().to_bytes())
    for index in (10, len(wire) // 2, len(wire) - 1):
        tampered = bytearray(wire)
        tampered[index] ^= 1
        with pytest.raises(BadAnnouncement):
            EncapsulationKeyAnnouncement.from_bytes(bytes(tampered)).verify(identities.trust, 0)


def test_expired_announcement_is_refused(identities: Identities, ring: KeyRing) -> None:
    announcement = ring.current_announcement()
    announcement.verify(identities.trust, announcement.key.not_after_ms)
    with pytest.raises(ExpiredAnnouncement):
        announcement.verify(identities.trust, announcement.key.not_after_ms + 1)


def test_rotation_keeps_previous_and_destroys_older(ring: KeyRing) -> None:
    first = ring.current_announcement().key
    second = ring.rotate().key
    assert ring.decapsulation_key(first.ek_id, first.ek_hash)
    third = ring.rotate().key
    assert ring.current_announcement().key == third
    assert ring.decapsulation_key(second.ek_id, second.ek_hash)
    with pytest.raises(UnknownEncapsulationKey):
        ring.decapsulation_key(first.ek_id, first.ek_hash)


def test_expired_keys_are_retired_and_replaced(ring: KeyRing, clock: ManualClock) -> None:
    first = ring.current_announcement().key
    clock.advance(60_001)
    with pytest.raises(UnknownEncapsulationKey):
        ring.decapsulation_key(first.ek_id, first.ek_hash)
    assert ring.current_announcement().key.not_after_ms == clock() + 60_000


def test_header_ek_hash_must_match(ring: KeyRing) -> None:
    key = ring.current_announcement().key
    with pytest.raises(UnknownEncapsulationKey):
        ring.decapsulation_key(key.ek_id, bytes(32))
