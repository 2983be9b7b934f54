"""KEM providers: round trips, input checks, and liboqs detection that never triggers a liboqs build."""

import os
import sys
from pathlib import Path

import pytest

from relay.crypto.errors import KemError, ProviderUnavailable
from relay.crypto.kem import (
    ML_KEM_768,
    ML_KEM_1024,
    KemAlgorithm,
    KemProvider,
    PycaKemProvider,
    available_providers,
    generate_decapsulation_key,
    load_kem_provider,
    locate_liboqs,
)

ALGORITHMS = pytest.mark.parametrize("algorithm", [ML_KEM_768, ML_KEM_1024], ids=lambda a: a.name)
LIBOQS = locate_liboqs()


@ALGORITHMS
def test_round_trip(algorithm: KemAlgorithm) -> None:
    provider = PycaKemProvider()
    dk = generate_decapsulation_key(provider, algorithm)
    encapsulation = provider.encapsulate(algorithm, dk.encapsulation_key)
    assert len(encapsulation.ciphertext) == algorithm.ciphertext_size
    assert dk.decapsulate(encapsulation.ciphertext) == encapsulation.shared_secret


@ALGORITHMS
def test_seed_determines_the_key_pair(algorithm: KemAlgorithm) -> None:
    seed = os.urandom(64)
    provider = PycaKemProvider()
    assert provider.from_seed(algorithm, seed).encapsulation_key == (
        provider.from_seed(algorithm, bytearray(seed)).encapsulation_key
    )


def test_wrong_sizes_and_destroyed_keys_raise_kem_error() -> None:
    provider = PycaKemProvider()
    dk = generate_decapsulation_key(provider, ML_KEM_768)
    with pytest.raises(KemError):
        provider.encapsulate(ML_KEM_768, dk.encapsulation_key[:-1])
    with pytest.raises(KemError):
        provider.encapsulate(ML_KEM_1024, dk.encapsulation_key)
    with pytest.raises(KemError):
        dk.decapsulate(bytes(ML_KEM_768.ciphertext_size - 1))
    with pytest.raises(KemError):
        provider.from_seed(ML_KEM_768, bytes(32))
    dk.destroy()
    with pytest.raises(KemError, match="destroyed"):
        dk.decapsulate(bytes(ML_KEM_768.ciphertext_size))


def test_available_providers_reports_liboqs_with_a_reason() -> None:
    statuses = {status.name: status for status in available_providers()}
    assert statuses["cryptography"].available
    assert statuses["liboqs"] == LIBOQS
    assert statuses["liboqs"].detail


@pytest.mark.skipif(LIBOQS.available, reason="liboqs is installed here")
def test_missing_liboqs_is_a_typed_error_and_oqs_is_never_imported() -> None:
    with pytest.raises(ProviderUnavailable, match="liboqs"):
        load_kem_provider("liboqs")
    assert "oqs" not in sys.modules


def test_unloadable_liboqs_file_is_reported_not_used(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "liboqs.so").write_bytes(b"not a shared library")
    status = locate_liboqs({"OQS_INSTALL_PATH": str(tmp_path)}, tmp_path)
    if not LIBOQS.available:  # a system-wide liboqs found by find_library would make this available
        assert not status.available
        assert "liboqs.so" in status.detail


def test_unknown_provider_name() -> None:
    with pytest.raises(ProviderUnavailable, match="unknown"):
        load_kem_provider("nope")


@pytest.mark.skipif(not LIBOQS.available, reason=f"liboqs provider unavailable: {LIBOQS.detail}")
@ALGORITHMS
def test_liboqs_and_cryptography_interoperate(algorithm: KemAlgorithm) -> None:
    pyca: KemProvider = PycaKemProvider()
    liboqs = load_kem_provider("liboqs")
    seed = os.urandom(64)
    pyca_dk, liboqs_dk = pyca.from_seed(algorithm, seed), liboqs.from_seed(algorithm, seed)
    assert pyca_dk.encapsulation_key == liboqs_dk.encapsulation_key
    for sender, receiver in ((liboqs, pyca_dk), (pyca, liboqs_dk)):
        encapsulation = sender.encapsulate(algorithm, receiver.encapsulation_key)
        assert receiver.decapsulate(encapsulation.ciphertext) == encapsulation.shared_secret
    liboqs_dk.destroy()
