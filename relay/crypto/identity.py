"""Gateway ML-DSA identities and the pinned trust store.

Key directory layout (``keys/<topology>/identities/``), written by ``qkd-relay keys init``:

    <gateway_id>.mldsa.pub   PEM SubjectPublicKeyInfo. Pinned: every gateway loads all of them.
    <gateway_id>.mldsa.key   PEM PKCS#8 holding the 32-byte ML-DSA seed, mode 0600. Deploy only to the
                             host of that gateway.

The ML-DSA parameter set of the key (65 or 87) fixes the gateway's suite (A or B). Trust is by pinning
alone: a peer is trusted only if its public key file is in the directory; there is no CA and no trust on
first use, so adding a gateway means distributing its ``.pub`` file.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from relay.crypto.errors import KeyFileError, UnknownPeer
from relay.crypto.files import read_private_file, write_private_file
from relay.crypto.suites import SUITE_A, Suite, suite_for_signing_key

PUBLIC_SUFFIX = ".mldsa.pub"
PRIVATE_SUFFIX = ".mldsa.key"
_GATEWAY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def validate_gateway_id(gateway_id: str) -> str:
    """Gateway IDs become file names, so they are restricted to a safe, bounded alphabet."""
    if not _GATEWAY_ID.fullmatch(gateway_id):
        raise ValueError(f"invalid gateway ID {gateway_id!r}: use 1-64 of [A-Za-z0-9._-], not starting with . _ -")
    return gateway_id


@dataclass(frozen=True)
class PeerIdentity:
    """A pinned public ML-DSA key and the gateway it belongs to."""

    gateway_id: str
    suite: Suite
    public_key: Any

    @classmethod
    def from_public_bytes(cls, gateway_id: str, suite: Suite, raw: bytes) -> "PeerIdentity":
        """Rebuild from a raw FIPS 204 public key (used by the committed test vectors)."""
        return cls(gateway_id, suite, suite.signature.public_key_class.from_public_bytes(raw))

    def public_bytes(self) -> bytes:
        return bytes(self.public_key.public_bytes_raw())

    def verify(self, signature: bytes, data: bytes, context: bytes) -> bool:
        """FIPS 204 verification under a context string; callers raise their own typed error."""
        try:
            self.public_key.verify(signature, data, context)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class GatewayIdentity:
    """This gateway's ML-DSA signing key."""

    gateway_id: str
    suite: Suite
    private_key: Any = field(repr=False)

    @cached_property
    def peer(self) -> PeerIdentity:
        """The public half, as peers pin it."""
        return PeerIdentity(self.gateway_id, self.suite, self.private_key.public_key())

    def sign(self, data: bytes, context: bytes) -> bytes:
        """FIPS 204 hedged signature; the context string separates hop and key-announcement signatures."""
        return bytes(self.private_key.sign(data, context))


@dataclass(frozen=True)
class TrustStore:
    """The pinned peer identities, by gateway ID."""

    peers: Mapping[str, PeerIdentity]

    def get(self, gateway_id: str) -> PeerIdentity:
        try:
            return self.peers[gateway_id]
        except KeyError:
            raise UnknownPeer(f"gateway {gateway_id!r} is not pinned in the trust store") from None


def generate_identity(gateway_id: str, directory: Path, suite: Suite = SUITE_A) -> GatewayIdentity:
    """Create ``<gateway_id>.mldsa.key`` (0600) and ``.mldsa.pub`` in ``directory``; never overwrite."""
    validate_gateway_id(gateway_id)
    private_path = directory / f"{gateway_id}{PRIVATE_SUFFIX}"
    public_path = directory / f"{gateway_id}{PUBLIC_SUFFIX}"
    for path in (private_path, public_path):
        if path.exists():
            raise KeyFileError(f"{path} already exists; refusing to overwrite an identity")
    key = suite.signature.private_key_class.generate()
    write_private_file(
        private_path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    with public_path.open("xb") as file:
        file.write(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    return GatewayIdentity(gateway_id, suite, key)


def load_peer_identity(path: Path) -> PeerIdentity:
    """Load one pinned ``<gateway_id>.mldsa.pub`` file."""
    if not path.name.endswith(PUBLIC_SUFFIX):
        raise KeyFileError(f"{path} is not a {PUBLIC_SUFFIX} file")
    gateway_id = validate_gateway_id(path.name.removesuffix(PUBLIC_SUFFIX))
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
        return PeerIdentity(gateway_id, suite_for_signing_key(key), key)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{path} is not an ML-DSA-65/87 public key: {exc}") from None


def load_identity(gateway_id: str, directory: Path) -> GatewayIdentity:
    """Load this gateway's signing key, checking it matches its own pinned public key."""
    validate_gateway_id(gateway_id)
    private_path = directory / f"{gateway_id}{PRIVATE_SUFFIX}"
    try:
        key = serialization.load_pem_private_key(read_private_file(private_path), password=None)
        suite = suite_for_signing_key(key)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"{private_path} is not an unencrypted ML-DSA-65/87 private key") from None
    identity = GatewayIdentity(gateway_id, suite, key)
    if load_peer_identity(directory / f"{gateway_id}{PUBLIC_SUFFIX}").public_bytes() != identity.peer.public_bytes():
        raise KeyFileError(f"{private_path} does not match the pinned public key of {gateway_id!r}")
    return identity


def load_trust_store(directory: Path) -> TrustStore:
    """Pin every ``*.mldsa.pub`` in ``directory``; an empty directory is an error, not an empty trust."""
    peers = {peer.gateway_id: peer for peer in map(load_peer_identity, sorted(directory.glob(f"*{PUBLIC_SUFFIX}")))}
    if not peers:
        raise KeyFileError(f"no pinned identities ({PUBLIC_SUFFIX}) in {directory}")
    return TrustStore(MappingProxyType(peers))
