"""What ``keys init`` writes: key usages per role, leaf and CA lifetimes, renewal, and that the TLS stacks
enforce the usages (a real handshake: OpenSSL for Python's ssl, BoringSSL for gRPC)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from relay import topology as topology_module
from relay.gateway.grpc_tls import channel_credentials, channel_options, gateway_server, server_credentials
from relay.pki.certs import CA_VALIDITY_DAYS, LEAF_VALIDITY_DAYS, issue, load_identity, write_identity
from relay.pki.layout import KeyDirectory
from relay.pki.provision import entity_roles, provision
from relay.pki.redis_access import REDIS_CLIENT_ENTITY, redis_server_entity
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc

SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
TOPOLOGY = topology_module.load_default()


def _certificate(keys: KeyDirectory, entity: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(keys.entity(entity).cert.read_bytes())


def _usages(keys: KeyDirectory, entity: str) -> set[x509.ObjectIdentifier]:
    return set(_certificate(keys, entity).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _lifetime(certificate: x509.Certificate) -> dt.timedelta:
    return certificate.not_valid_after_utc - certificate.not_valid_before_utc


def test_each_role_gets_only_the_key_usages_it_needs(topology_keys: KeyDirectory) -> None:
    expected = {gateway.id: {SERVER, CLIENT} for gateway in TOPOLOGY.gateways}  # gRPC both ways, 014/020
    expected |= {kme.id: {SERVER, CLIENT} for kms in TOPOLOGY.kms for kme in kms.kmes}  # 014 server, 020 client
    expected |= {sae.id: {CLIENT} for sae in TOPOLOGY.saes}  # a 014 client only
    expected |= {redis_server_entity(region.id): {SERVER} for region in TOPOLOGY.regions}
    expected |= {REDIS_CLIENT_ENTITY: {CLIENT}}
    assert {entity: _usages(topology_keys, entity) for entity in expected} == expected


def test_leaves_live_at_most_397_days_and_never_beyond_the_ca(topology_keys: KeyDirectory) -> None:
    ca = _certificate(topology_keys, "ca")
    assert _lifetime(ca) <= dt.timedelta(days=CA_VALIDITY_DAYS, minutes=5)
    leaves = sorted(path.stem for path in topology_keys.root.glob("*.crt") if path.stem != "ca")
    assert len(leaves) == len(entity_roles(TOPOLOGY))
    for entity in leaves:
        leaf = _certificate(topology_keys, entity)
        assert _lifetime(leaf) <= dt.timedelta(days=LEAF_VALIDITY_DAYS, minutes=5), entity
        assert leaf.not_valid_after_utc <= ca.not_valid_after_utc, entity


def test_issue_refuses_a_longer_leaf(topology_keys: KeyDirectory) -> None:
    with pytest.raises(ValueError, match="397 days"):
        issue(load_identity(topology_keys.ca), "SAE-X", ("sae",), days=398)


def test_keys_init_is_idempotent_and_renews_what_no_longer_fits(tmp_path: Path) -> None:
    first = provision(TOPOLOGY, tmp_path)
    keys = first.directory
    written = {path.name: path.read_bytes() for path in keys.root.glob("*.crt")}
    again = provision(TOPOLOGY, tmp_path)
    assert again.created == () and {path.name: path.read_bytes() for path in keys.root.glob("*.crt")} == written

    ca = load_identity(keys.ca)
    for entity, identity in (
        ("SAE-R1-A", issue(ca, "SAE-R1-A", ("gateway", "sae"))),  # an old profile: serverAuth on an SAE
        ("SAE-R1-B", issue(ca, "SAE-R1-B", ("sae",), days=10)),  # due for renewal
    ):
        write_identity(keys.root, entity, identity)
    renewed = provision(TOPOLOGY, tmp_path)
    assert renewed.created == ("SAE-R1-A", "SAE-R1-B")
    assert _usages(keys, "SAE-R1-A") == {CLIENT}
    assert _lifetime(_certificate(keys, "SAE-R1-B")) > dt.timedelta(days=LEAF_VALIDITY_DAYS - 1)
    assert _certificate(keys, "ca") == ca.certificate  # renewed under the same CA


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[str, str]:
    """A real TLS handshake on loopback, the server greeting with "ok": what each side met.

    Both sides report, since in TLS 1.3 the client finishes before the server has judged its certificate."""
    outcome = {"server": "no connection"}
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            raw, _ = listener.accept()
            try:
                with server.wrap_socket(raw, server_side=True) as tls:
                    tls.sendall(b"ok")
                    outcome["server"] = "ok"
            except (ssl.SSLError, OSError) as exc:
                outcome["server"] = str(exc)

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=5) as raw:
                with client.wrap_socket(raw, server_hostname="localhost") as tls:
                    answer = tls.recv(2).decode() or "closed"
        except (ssl.SSLError, OSError) as exc:
            answer = str(exc)
        thread.join(timeout=5)
    return answer, outcome["server"]


def test_openssl_refuses_an_sae_certificate_as_a_server(topology_keys: KeyDirectory) -> None:
    gw1 = topology_keys.client_context("GW1")  # an ordinary verifying client: no pin
    client, _ = _handshake(topology_keys.server_context("SAE-R1-A"), gw1)
    assert "unsuitable certificate purpose" in client
    assert _handshake(topology_keys.server_context("KME-R1-A"), gw1) == ("ok", "ok")  # the control


def test_openssl_refuses_the_redis_server_certificate_as_a_client(topology_keys: KeyDirectory) -> None:
    """A stolen Redis server key cannot log in anywhere: its certificate has no clientAuth."""
    gateway_014 = topology_keys.server_context("GW1")  # requires a client certificate
    client, server = _handshake(gateway_014, topology_keys.client_context(redis_server_entity("region1")))
    assert "unsuitable certificate purpose" in server and client != "ok"
    assert _handshake(gateway_014, topology_keys.client_context("SAE-R1-A")) == ("ok", "ok")  # the control


async def test_boringssl_refuses_an_sae_certificate_as_a_grpc_server(topology_keys: KeyDirectory) -> None:
    server = gateway_server()
    rpc.add_EncapsulationKeysServicer_to_server(rpc.EncapsulationKeysServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(topology_keys, "SAE-R1-A"))
    await server.start()
    try:
        credentials = channel_credentials(topology_keys, "GW1")
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=channel_options("SAE-R1-A")) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await rpc.EncapsulationKeysStub(ch).GetEncapsulationKey(pb.GetEncapsulationKeyRequest(), timeout=5)
    finally:
        await server.stop(None)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE  # the handshake, not the servicer
