"""The two algorithm suites a topology may choose.

Suite A (default): ML-KEM-768, HKDF-SHA-256, AES-256-GCM, ML-DSA-65.
Suite B (CNSA 2.0 style, high security): ML-KEM-1024, HKDF-SHA-384, AES-256-GCM, ML-DSA-87.

A suite is chosen per topology, not negotiated per message: each gateway's ML-DSA identity fixes its suite
(the ML-DSA parameter set is visible in its pinned public key), and every header names its suite so that
a message can never be read under another suite's rules.
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mldsa

from relay.crypto.kem import ML_KEM_768, ML_KEM_1024, KemAlgorithm


@dataclass(frozen=True)
class SignatureAlgorithm:
    """An ML-DSA parameter set and its ``cryptography`` key classes."""

    name: str
    private_key_class: Any
    public_key_class: Any
    signature_size: int


ML_DSA_65 = SignatureAlgorithm("ML-DSA-65", mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey, 3309)
ML_DSA_87 = SignatureAlgorithm("ML-DSA-87", mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey, 4627)


@dataclass(frozen=True, repr=False)
class Suite:
    """Algorithms used together on a hop; ``hash`` drives HKDF, the transcript hash and the HMAC."""

    id: str
    kem: KemAlgorithm
    hash: hashes.HashAlgorithm
    signature: SignatureAlgorithm

    def __repr__(self) -> str:
        return f"Suite {self.id} ({self.description})"

    @property
    def description(self) -> str:
        return f"{self.kem.name} / HKDF-{self.hash.name.upper()} / AES-256-GCM / {self.signature.name}"

    @property
    def hash_size(self) -> int:
        return self.hash.digest_size

    def digest(self, data: bytes) -> bytes:
        """The suite hash, used for the transcript hash and the hash of the wrapped key."""
        return hashlib.new(self.hash.name, data).digest()


SUITE_A = Suite("A", ML_KEM_768, hashes.SHA256(), ML_DSA_65)
SUITE_B = Suite("B", ML_KEM_1024, hashes.SHA384(), ML_DSA_87)

SUITES: Mapping[str, Suite] = MappingProxyType({suite.id: suite for suite in (SUITE_A, SUITE_B)})


def suite_for_signing_key(key: object) -> Suite:
    """The suite an ML-DSA key (private or public) belongs to; ValueError for any other key type."""
    for suite in SUITES.values():
        if isinstance(key, (suite.signature.private_key_class, suite.signature.public_key_class)):
            return suite
    raise ValueError(f"{type(key).__name__} is not the ML-DSA key of any suite")
