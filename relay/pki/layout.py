"""Where a topology's certificates live, and TLS contexts built from them.

Layout of ``keys/<topology>/``: ``ca.crt`` / ``ca.key`` (the private CA) and, for every KME, gateway and
SAE, ``<id>.crt``, ``<id>.key`` and ``<id>.pem`` (certificate and key in one file); ``identities/`` holds
the gateways' ML-DSA keys; ``redis/`` the Redis users' passwords (``<user>.password``, 0600) and each
region's ACL file (``<region>.acl``, see ``relay.pki.redis_access``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from relay.pki.certs import EntityFiles
from relay.pki.tls import ExpectedPeer, client_context, server_context


class MissingKeyMaterial(FileNotFoundError):
    """Certificates were not generated yet; the message says which command creates them."""


@dataclass(frozen=True)
class KeyDirectory:
    root: Path

    @property
    def identities(self) -> Path:
        """Gateway ML-DSA identities: private keys and the pinned public keys of every gateway."""
        return self.root / "identities"

    @property
    def redis(self) -> Path:
        """Redis credentials: one password per gateway user and the admin, and the ACL file per region."""
        return self.root / "redis"

    def redis_password_file(self, user: str) -> Path:
        return self.redis / f"{user}.password"

    def redis_acl_file(self, region_id: str) -> Path:
        return self.redis / f"{region_id}.acl"

    @property
    def ca(self) -> EntityFiles:
        return self.entity("ca")

    def entity(self, name: str) -> EntityFiles:
        return EntityFiles(self.root / f"{name}.crt", self.root / f"{name}.key", self.root / f"{name}.pem")

    def certificate(self, name: str) -> x509.Certificate:
        """``name``'s certificate (``"ca"`` for the CA's), as loaded by the TLS contexts below."""
        path = self.entity(name).cert
        if not path.is_file():
            raise MissingKeyMaterial(f"{path} is missing; run `qkd-relay keys init` first")
        return x509.load_pem_x509_certificate(path.read_bytes())

    def server_context(self, name: str, minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2) -> ssl.SSLContext:
        files = self._existing(name)
        return server_context(files.cert, files.key, self.ca.cert, minimum=minimum)

    def client_context(
        self, name: str, minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2, *, peer: ExpectedPeer | None = None
    ) -> ssl.SSLContext:
        """``name``'s client side; with ``peer``, only that server is accepted (``relay.pki.tls.pin_server``)."""
        files = self._existing(name)
        return client_context(self.ca.cert, files.cert, files.key, minimum=minimum, peer=peer)

    def _existing(self, name: str) -> EntityFiles:
        files = self.entity(name)
        for path in (self.ca.cert, files.cert, files.key):
            if not path.is_file():
                raise MissingKeyMaterial(f"{path} is missing; run `qkd-relay keys init` first")
        return files
