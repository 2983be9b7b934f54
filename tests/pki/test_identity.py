"""Which identity a verified certificate carries, and the errors of missing key material."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509

from relay.pki.certs import create_ca, issue
from relay.pki.layout import KeyDirectory, MissingKeyMaterial
from relay.pki.tls import peer_identity


def _peercert(identity: Any) -> dict[str, Any]:
    """The shape ``SSLSocket.getpeercert()`` returns, built from a certificate."""
    cert: x509.Certificate = identity.certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    alt = [("URI", uri) for uri in san.get_values_for_type(x509.UniformResourceIdentifier)]
    alt += [("DNS", name) for name in san.get_values_for_type(x509.DNSName)]
    cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    return {"subject": ((("commonName", cn),),), "subjectAltName": tuple(alt)}


def test_identity_comes_from_the_uri_san_for_the_requested_role() -> None:
    ca = create_ca("ca")
    gateway = _peercert(issue(ca, "GW1", ("gateway", "sae")))
    assert peer_identity(gateway, "sae") == "GW1"
    assert peer_identity(gateway, "gateway") == "GW1"
    assert peer_identity(gateway, "kme") is None
    assert peer_identity(None, "sae") is None


def test_vendor_certificates_without_our_san_fall_back_to_common_name() -> None:
    vendor = {"subject": ((("countryName", "AT"),), (("commonName", "vendor-sae-7"),)), "subjectAltName": ()}
    assert peer_identity(vendor, "sae") == "vendor-sae-7"


def test_missing_key_material_names_the_command_that_creates_it(tmp_path: Any) -> None:
    with pytest.raises(MissingKeyMaterial, match="qkd-relay keys init"):
        KeyDirectory(tmp_path).client_context("SAE-1")
