"""Which identity a verified certificate carries, and the errors of missing key material."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509

from relay import topology as topology_module
from relay.gateway.config import plan_gateway
from relay.pki.certs import create_ca, issue
from relay.pki.layout import KeyDirectory, MissingKeyMaterial
from relay.pki.tls import ExpectedPeer, WrongPeer, peer_identity
from tests.support.local_testbed import default_document


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


def test_a_pinned_peer_is_named_by_its_uri_san_for_the_role() -> None:
    ca = create_ca("ca")
    kme = ExpectedPeer(("kme",), "KME-A")
    kme.check(_peercert(issue(ca, "KME-A", ("kme",))))
    for impostor in (issue(ca, "KME-B", ("kme",)), issue(ca, "KME-A", ("sae",))):  # another KME; the name, not the role
        with pytest.raises(WrongPeer, match="expected kme KME-A"):
            kme.check(_peercert(impostor))
    with pytest.raises(WrongPeer, match="no certificate"):
        kme.check(None)


def test_a_vendor_certificate_matches_the_configured_tls_name_only_without_our_uris() -> None:
    vendor = {"subject": ((("commonName", "qkd-node-7"),),), "subjectAltName": (("DNS", "kme7.vendor.example"),)}
    ExpectedPeer(("kme",), "KME-A", "kme7.vendor.example").check(vendor)  # its DNS name
    ExpectedPeer(("kme",), "KME-A", "qkd-node-7").check(vendor)  # or its commonName
    with pytest.raises(WrongPeer, match="CN=qkd-node-7"):
        ExpectedPeer(("kme",), "KME-A").check(vendor)  # no name configured: not the KME named
    ours = _peercert(issue(create_ca("ca"), "SAE-1", ("sae",), dns_names=("kme7.vendor.example",)))
    with pytest.raises(WrongPeer, match="sae:SAE-1"):  # one of our certificates, for another role
        ExpectedPeer(("kme",), "KME-A", "kme7.vendor.example").check(ours)


def test_the_topology_carries_a_kmes_tls_name_to_the_gateway_plan() -> None:
    document = default_document()
    document["kms"][0]["kmes"][0]["tls_name"] = "kme.vendor.example"
    topology = topology_module.parse(document)
    kme = topology.kms[0].kmes[0]
    ends = [nb.qkd for gw in topology.gateways for nb in plan_gateway(topology, gw.id).neighbours.values() if nb.qkd]
    assert {end.kme for end in ends if end.kme.id == kme.id} == {ExpectedPeer(("kme",), kme.id, "kme.vendor.example")}
