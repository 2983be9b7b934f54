"""ML-KEM providers behind one narrow interface.

``cryptography`` (OpenSSL) is always present and is the default provider. liboqs-python is offered only
when a liboqs shared library is already installed: importing ``oqs`` without one makes it clone and build
liboqs from the network at import time, which a gateway must never do. :func:`locate_liboqs` therefore
repeats the search ``oqs`` performs (``ctypes.util.find_library``, then ``$OQS_INSTALL_PATH`` or
``~/_oqs``) and proves a library actually loads before anything imports ``oqs``.

Decapsulation keys are created from the 64-byte FIPS 203 seed ``d || z`` by both providers, so one seed
gives the same key pair in either library and the providers interoperate on the wire. The seed is also
the one export of a key (:meth:`DecapsulationKey.seed`): the replicas of a gateway share their keyring as
seeds sealed at rest in Redis, whichever provider each replica runs.
"""

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import cryptography
from cryptography.hazmat.primitives.asymmetric import mlkem

from relay.crypto.errors import KemError, ProviderUnavailable

SEED_SIZE = 64
SHARED_SECRET_SIZE = 32


@dataclass(frozen=True)
class KemAlgorithm:
    """An ML-KEM parameter set; sizes are checked here because liboqs silently pads or truncates."""

    name: str
    encapsulation_key_size: int
    ciphertext_size: int


ML_KEM_768 = KemAlgorithm("ML-KEM-768", encapsulation_key_size=1184, ciphertext_size=1088)
ML_KEM_1024 = KemAlgorithm("ML-KEM-1024", encapsulation_key_size=1568, ciphertext_size=1568)


@dataclass(frozen=True)
class Encapsulation:
    """Result of Encaps: the secret stays with the sender, the ciphertext goes to the receiver."""

    shared_secret: bytes = field(repr=False)
    ciphertext: bytes


class DecapsulationKey(Protocol):
    """A receiver's ML-KEM key pair, held by whichever library created it."""

    @property
    def algorithm(self) -> KemAlgorithm: ...

    @property
    def encapsulation_key(self) -> bytes: ...

    def decapsulate(self, ciphertext: bytes) -> bytes: ...

    def seed(self) -> bytearray:
        """A copy of the 64-byte seed the key was made from, for the caller to seal and then wipe; never log it."""
        ...

    def destroy(self) -> None:
        """Drop the private key so a retired key cannot decapsulate again (forward secrecy)."""


class KemProvider(Protocol):
    """An ML-KEM implementation; stateless, so one instance serves every suite."""

    @property
    def name(self) -> str: ...

    def from_seed(self, algorithm: KemAlgorithm, seed: bytes | bytearray) -> DecapsulationKey: ...

    def encapsulate(self, algorithm: KemAlgorithm, encapsulation_key: bytes) -> Encapsulation: ...


@dataclass(frozen=True)
class ProviderStatus:
    """Whether a provider can be used here; ``detail`` is its origin, or why it is unavailable."""

    name: str
    available: bool
    detail: str


def generate_decapsulation_key(provider: KemProvider, algorithm: KemAlgorithm) -> DecapsulationKey:
    """Fresh key pair from a random seed; the seed buffer is overwritten afterwards (best effort)."""
    seed = bytearray(os.urandom(SEED_SIZE))
    try:
        return provider.from_seed(algorithm, seed)
    finally:
        seed[:] = bytes(SEED_SIZE)


def _no_op() -> None:
    """pyca keys cannot be wiped from Python; dropping the reference is all destroy can do."""


def _seed_of(key: Any) -> bytearray:
    """pyca's raw private bytes of an ML-KEM key are its 64-byte seed (the FIPS 203 private-key format)."""
    return bytearray(key.private_bytes_raw())


def _check_size(data: bytes | bytearray, expected: int, what: str) -> None:
    if len(data) != expected:
        raise KemError(f"{what} must be {expected} bytes, got {len(data)}")


_PYCA_CLASSES: Mapping[str, tuple[Any, Any]] = {
    ML_KEM_768.name: (mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey),
    ML_KEM_1024.name: (mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey),
}


class _HeldDecapsulationKey:
    """A dk held by a provider library; one class for both providers keeps the checks in one place."""

    __slots__ = ("_decapsulate", "_release", "_seed", "algorithm", "encapsulation_key")

    def __init__(
        self,
        algorithm: KemAlgorithm,
        encapsulation_key: bytes,
        decapsulate: Callable[[bytes], bytes],
        seed: Callable[[], bytearray],
        release: Callable[[], None],
    ) -> None:
        self.algorithm = algorithm
        self.encapsulation_key = encapsulation_key
        self._decapsulate: Callable[[bytes], bytes] | None = decapsulate
        self._seed = seed
        self._release = release

    def decapsulate(self, ciphertext: bytes) -> bytes:
        _check_size(ciphertext, self.algorithm.ciphertext_size, f"{self.algorithm.name} ciphertext")
        if self._decapsulate is None:
            raise KemError("decapsulation key was destroyed")
        try:
            return bytes(self._decapsulate(ciphertext))
        except (ValueError, RuntimeError):
            raise KemError(f"{self.algorithm.name} ciphertext rejected") from None

    def seed(self) -> bytearray:
        if self._decapsulate is None:
            raise KemError("decapsulation key was destroyed")
        return self._seed()

    def destroy(self) -> None:
        if self._decapsulate is not None:
            self._release()
            self._decapsulate = None  # drops the last reference to the library's key object


class PycaKemProvider:
    """ML-KEM from ``cryptography`` (OpenSSL); the default."""

    name = "cryptography"

    def from_seed(self, algorithm: KemAlgorithm, seed: bytes | bytearray) -> DecapsulationKey:
        _check_size(seed, SEED_SIZE, "ML-KEM seed")
        private_class, _ = _PYCA_CLASSES[algorithm.name]
        key = private_class.from_seed_bytes(seed)
        public = key.public_key().public_bytes_raw()
        export = partial(_seed_of, key)
        return _HeldDecapsulationKey(algorithm, public, key.decapsulate, export, _no_op)

    def encapsulate(self, algorithm: KemAlgorithm, encapsulation_key: bytes) -> Encapsulation:
        _check_size(encapsulation_key, algorithm.encapsulation_key_size, f"{algorithm.name} encapsulation key")
        _, public_class = _PYCA_CLASSES[algorithm.name]
        try:
            shared_secret, ciphertext = public_class.from_public_bytes(encapsulation_key).encapsulate()
        except ValueError:
            raise KemError(f"{algorithm.name} encapsulation key rejected") from None
        return Encapsulation(shared_secret, ciphertext)


class LiboqsKemProvider:
    """ML-KEM from liboqs; construct only through :func:`load_kem_provider`, which checks the library."""

    name = "liboqs"

    def __init__(self, oqs: ModuleType) -> None:
        self._oqs = oqs

    def from_seed(self, algorithm: KemAlgorithm, seed: bytes | bytearray) -> DecapsulationKey:
        _check_size(seed, SEED_SIZE, "ML-KEM seed")
        kem = self._oqs.KeyEncapsulation(algorithm.name)
        encapsulation_key = bytes(kem.generate_keypair_seed(bytes(seed)))
        kept = bytearray(seed)  # liboqs exports only the expanded key; the seed is the portable form

        def release() -> None:
            kem.free()  # cleanses the expanded key
            kept[:] = bytes(SEED_SIZE)

        return _HeldDecapsulationKey(algorithm, encapsulation_key, kem.decap_secret, kept.copy, release)

    def encapsulate(self, algorithm: KemAlgorithm, encapsulation_key: bytes) -> Encapsulation:
        _check_size(encapsulation_key, algorithm.encapsulation_key_size, f"{algorithm.name} encapsulation key")
        with self._oqs.KeyEncapsulation(algorithm.name) as kem:
            try:
                ciphertext, shared_secret = kem.encap_secret(encapsulation_key)
            except RuntimeError:
                raise KemError(f"{algorithm.name} encapsulation key rejected") from None
        return Encapsulation(bytes(shared_secret), bytes(ciphertext))


def _liboqs_candidates(environ: Mapping[str, str], home: Path) -> list[str]:
    """The libraries ``oqs`` would try, in its order, minus files that do not exist."""
    candidates = [found for name in ("oqs", "liboqs") if (found := ctypes.util.find_library(name))]
    install_dir = Path(environ["OQS_INSTALL_PATH"]) if "OQS_INSTALL_PATH" in environ else home / "_oqs"
    if sys.platform == "win32":
        files = [install_dir / "bin" / name for name in ("oqs.dll", "liboqs.dll")]
    else:
        suffix = ".dylib" if sys.platform == "darwin" else ".so"
        files = [install_dir / lib / f"liboqs{suffix}" for lib in ("lib", "lib64")]
    return candidates + [str(path) for path in files if path.is_file()]


def locate_liboqs(environ: Mapping[str, str] | None = None, home: Path | None = None) -> ProviderStatus:
    """Find a loadable liboqs exactly where ``oqs`` would look, without importing ``oqs``.

    ``environ`` and ``home`` exist for tests; :func:`load_kem_provider` always uses the real ones, since
    those are what ``oqs`` itself will read.
    """
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    failures: list[str] = []
    for candidate in _liboqs_candidates(environ, home):
        try:
            library = ctypes.CDLL(candidate)
        except OSError as exc:
            failures.append(f"{candidate}: {exc}")
            continue
        if hasattr(library, "OQS_KEM_new"):
            return ProviderStatus(LiboqsKemProvider.name, True, candidate)
        failures.append(f"{candidate}: not a liboqs library")
    reason = "no liboqs shared library found (ctypes.util.find_library('oqs'), $OQS_INSTALL_PATH or ~/_oqs)"
    if failures:
        reason += "; unusable: " + "; ".join(failures)
    return ProviderStatus(LiboqsKemProvider.name, False, reason)


def available_providers() -> tuple[ProviderStatus, ...]:
    """Every provider with its availability on this host, for ``qkd-relay`` diagnostics."""
    return (
        ProviderStatus(PycaKemProvider.name, True, f"cryptography {cryptography.__version__}"),
        locate_liboqs(),
    )


def load_kem_provider(name: str = PycaKemProvider.name) -> KemProvider:
    """Return the named provider, or raise :class:`ProviderUnavailable` with the reason."""
    if name == PycaKemProvider.name:
        return PycaKemProvider()
    if name == LiboqsKemProvider.name:
        status = locate_liboqs()
        if not status.available:
            raise ProviderUnavailable(f"liboqs provider unavailable: {status.detail}")
        # Deferred on purpose: importing oqs is safe only once a loadable liboqs is proven.
        import oqs

        return LiboqsKemProvider(oqs)
    raise ProviderUnavailable(f"unknown KEM provider {name!r} (known: cryptography, liboqs)")
