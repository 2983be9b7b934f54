"""Storage AEAD: exact interface, name binding, tamper detection and the storage key file."""

import os
import stat
from pathlib import Path

import pytest

from relay.crypto.at_rest import StorageCipher, load_or_create_storage_key
from relay.crypto.errors import AtRestError, CryptoError, KeyFileError


@pytest.fixture
def cipher() -> StorageCipher:
    return StorageCipher(os.urandom(32))


def test_round_trip_with_fresh_nonces(cipher: StorageCipher) -> None:
    first, second = cipher.seal("{pool}:a", b"key material"), cipher.seal("{pool}:a", b"key material")
    assert first != second
    assert first[0] == 1 and len(first) == 1 + 12 + len(b"key material") + 16
    assert cipher.open("{pool}:a", first) == cipher.open("{pool}:a", second) == b"key material"
    assert cipher.open("empty", cipher.seal("empty", b"")) == b""


def test_wrong_name_or_key_is_refused(cipher: StorageCipher) -> None:
    blob = cipher.seal("{pool}:a", b"k")
    with pytest.raises(AtRestError):
        cipher.open("{pool}:b", blob)
    with pytest.raises(AtRestError):
        StorageCipher(os.urandom(32)).open("{pool}:a", blob)
    assert issubclass(AtRestError, CryptoError)


def test_every_flipped_bit_is_refused(cipher: StorageCipher) -> None:
    blob = cipher.seal("name", b"0123456789abcdef")
    for bit in range(len(blob) * 8):
        tampered = bytearray(blob)
        tampered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(AtRestError):
            cipher.open("name", bytes(tampered))


@pytest.mark.parametrize("cut", [0, 1, 13, 28])
def test_truncated_blobs_are_refused(cipher: StorageCipher, cut: int) -> None:
    with pytest.raises(AtRestError):
        cipher.open("name", cipher.seal("name", b"")[:cut])


def test_storage_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        StorageCipher(bytes(16))


def test_storage_key_is_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "node" / "storage.key"
    key = load_or_create_storage_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_storage_key(path) == key


def test_storage_key_with_open_permissions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "storage.key"
    load_or_create_storage_key(path)
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match="0640"):
        load_or_create_storage_key(path)


def test_storage_key_of_wrong_length_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "storage.key"
    path.write_bytes(bytes(31))
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="31 bytes"):
        load_or_create_storage_key(path)
