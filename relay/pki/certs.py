"""A private CA and the certificates of every KME, gateway and SAE of a topology.

ECDSA P-256 keeps handshakes cheap and is accepted by every 014 client we know of (OpenSSL, rustls,
requests). Post-quantum authenticity of relayed keys comes from the gateways' ML-DSA identities
(``relay.crypto``), not from these certificates.

Each certificate carries its identity as the subject commonName and as one URI SAN
``urn:qkd-relay:<role>:<id>`` per role; ``relay.pki.tls.peer_identity`` explains which one is trusted.

Its extended key usage is what its roles do in TLS (:data:`ROLE_USAGES`), so a stolen SAE key cannot
serve TLS to anyone: OpenSSL and BoringSSL refuse a server certificate without serverAuth (and a client
certificate without clientAuth). Leaves are valid :data:`LEAF_VALIDITY_DAYS` (the CA/Browser Forum's
limit of 397 days), the CA :data:`CA_VALIDITY_DAYS`, so leaves are re-issued under the same CA
(``keys init`` renews those that expire within ``RENEW_WITHIN_DAYS``) and no leaf outlives its CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from relay.crypto.files import write_private_file

URI_PREFIX = "urn:qkd-relay:"
LEAF_VALIDITY_DAYS = 397
CA_VALIDITY_DAYS = 3650
RENEW_WITHIN_DAYS = 30
_SERVER, _CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
ROLE_USAGES: dict[str, tuple[x509.ObjectIdentifier, ...]] = {
    "gateway": (_SERVER, _CLIENT),  # gRPC server and client; 014 and 020 server; 014 client of its KME
    "kme": (_SERVER, _CLIENT),  # 014 server; 020 client of other KMSs
    "sae": (_CLIENT,),  # 014 client only
    "redis": (_SERVER,),  # a region's Redis over TLS
    "redis-client": (_CLIENT,),  # a Redis client that is no gateway: operators' redis-cli, health probes
}


@dataclass(frozen=True)
class Identity:
    """A private key and the certificate that binds it to an entity."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


@dataclass(frozen=True)
class EntityFiles:
    """Where an entity's material lives: split PEMs (most clients) and a combined cert+key PEM (rustls)."""

    cert: Path
    key: Path
    combined: Path


def entity_dns_name(entity_id: str) -> str:
    """The DNS name only ``entity_id``'s certificate carries (``keys init`` refuses IDs that share one),
    so a client that verifies it against this name knows which entity it reached."""
    return entity_id.lower()


def create_ca(common_name: str, *, days: int = CA_VALIDITY_DAYS) -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Identity(key, cert)


def issue(
    ca: Identity,
    entity_id: str,
    roles: tuple[str, ...],
    *,
    dns_names: tuple[str, ...] = ("localhost",),
    ip_addresses: tuple[str, ...] = ("127.0.0.1", "::1"),
    days: int = LEAF_VALIDITY_DAYS,
) -> Identity:
    """Issue a certificate for the TLS uses of ``roles`` (:data:`ROLE_USAGES`), valid ``days`` but never
    beyond the CA.

    ``roles`` lists what the entity acts as ("kme", "gateway", "sae", "redis"): a gateway is also an SAE
    of its vendor KMS, so its certificate names it in both roles.
    """
    if days > LEAF_VALIDITY_DAYS:
        raise ValueError(f"a leaf certificate is valid at most {LEAF_VALIDITY_DAYS} days")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    not_after = min(now + dt.timedelta(days=days), ca.certificate.not_valid_after_utc)
    alt_names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(f"{URI_PREFIX}{role}:{entity_id}") for role in roles
    ]
    alt_names += [x509.DNSName(name) for name in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(addr)) for addr in ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, entity_id)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages_of(roles)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return Identity(key, cert)


def usages_of(roles: tuple[str, ...]) -> list[x509.ObjectIdentifier]:
    """The extended key usages a certificate for ``roles`` carries: the union of each role's, in OID order."""
    unknown = [role for role in roles if role not in ROLE_USAGES]
    if unknown or not roles:
        raise ValueError(f"roles must be among {sorted(ROLE_USAGES)}, got {list(roles)}")
    return sorted({usage for role in roles for usage in ROLE_USAGES[role]}, key=lambda oid: oid.dotted_string)


def fits_profile(certificate: x509.Certificate, ca: x509.Certificate, roles: tuple[str, ...]) -> bool:
    """Whether ``keys init`` may keep ``certificate`` for ``roles``: issued by ``ca``, with exactly the
    roles' key usages, a leaf lifetime, and not due for renewal (expiring within ``RENEW_WITHIN_DAYS``,
    unless it already ends with its CA, where a new one could not last longer)."""
    try:
        certificate.verify_directly_issued_by(ca)
        usages = list(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    renewable = certificate.not_valid_after_utc < ca.not_valid_after_utc
    due = renewable and certificate.not_valid_after_utc < _now() + dt.timedelta(days=RENEW_WITHIN_DAYS)
    in_order = sorted(usages, key=lambda oid: oid.dotted_string) == usages_of(roles)
    return in_order and lifetime <= dt.timedelta(days=LEAF_VALIDITY_DAYS, minutes=5) and not due


def write_identity(directory: Path, name: str, identity: Identity) -> EntityFiles:
    """Write ``name.crt``, ``name.key`` (mode 0600) and ``name.pem`` (certificate then key), replacing any."""
    directory.mkdir(parents=True, exist_ok=True)
    files = EntityFiles(directory / f"{name}.crt", directory / f"{name}.key", directory / f"{name}.pem")
    for path in (files.cert, files.key, files.combined):
        path.unlink(missing_ok=True)
    files.cert.write_bytes(identity.cert_pem)
    write_private_file(files.key, identity.key_pem)
    write_private_file(files.combined, identity.cert_pem + identity.key_pem)
    return files


def load_identity(files: EntityFiles) -> Identity:
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{files.key} is not an EC private key")
    return Identity(key, x509.load_pem_x509_certificate(files.cert.read_bytes()))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
