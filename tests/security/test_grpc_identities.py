"""Gateway-to-gateway gRPC: the client reaches only the neighbour it dials, and only over TLS 1.3."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from relay.gateway.grpc_tls import channel_credentials, channel_options, gateway_server, server_credentials
from relay.pki.layout import KeyDirectory
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc
from tests.support.impostors import impostor_keys
from tests.support.tcp_proxy import TcpProxy

TIMEOUT_S = 5.0


class CountingKeys(rpc.EncapsulationKeysServicer):
    """Answers with the caller's TLS version, and counts the calls that reached it."""

    def __init__(self) -> None:
        self.calls = 0

    async def GetEncapsulationKey(
        self, request: pb.GetEncapsulationKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.SignedEncapsulationKey:
        self.calls += 1
        return pb.SignedEncapsulationKey(announcement=b"".join(context.auth_context()["ssl_tls_version"]))


class Listening:
    def __init__(self, server: grpc.aio.Server, port: int, servicer: CountingKeys) -> None:
        self.server, self.port, self.servicer = server, port, servicer


async def _listen(keys: KeyDirectory, gateway_id: str) -> Listening:
    server = gateway_server()
    servicer = CountingKeys()
    rpc.add_EncapsulationKeysServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(keys, gateway_id))
    await server.start()
    return Listening(server, port, servicer)


@pytest.fixture
async def gw2(topology_keys: KeyDirectory) -> AsyncIterator[Listening]:
    listening = await _listen(topology_keys, "GW2")
    yield listening
    await listening.server.stop(None)


async def _dial_as_gw1(keys: KeyDirectory, port: int, *, dialling: str = "GW2") -> pb.SignedEncapsulationKey:
    """The channel exactly as :class:`relay.gateway.peers.Peer` builds it for neighbour ``dialling``."""
    credentials = channel_credentials(keys, "GW1")
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=channel_options(dialling)) as channel:
        return await rpc.EncapsulationKeysStub(channel).GetEncapsulationKey(
            pb.GetEncapsulationKeyRequest(), timeout=TIMEOUT_S
        )


async def test_the_neighbour_dialled_answers(topology_keys: KeyDirectory, gw2: Listening) -> None:
    answer = await _dial_as_gw1(topology_keys, gw2.port)
    assert answer.announcement == b"TLSv1.3" and gw2.servicer.calls == 1


@pytest.mark.parametrize("presenting", ["GW3", "KME-R2-A"])
async def test_a_server_with_another_entitys_certificate_is_refused(
    topology_keys: KeyDirectory, tmp_path: Path, presenting: str
) -> None:
    """ "GW2" listening with GW3's (or a KME's) genuine certificate: the handshake fails on the name."""
    impostor = await _listen(
        impostor_keys(topology_keys, tmp_path / "k", serving_as="GW2", presenting=presenting), "GW2"
    )
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _dial_as_gw1(topology_keys, impostor.port)
        assert impostor.servicer.calls == 0
        await _dial_as_gw1(topology_keys, impostor.port, dialling=presenting)  # the control: the name
    finally:
        await impostor.server.stop(None)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


def _gw1_client_tls(keys: KeyDirectory, maximum: ssl.TLSVersion) -> ssl.SSLContext:
    context = keys.client_context("GW1")
    context.maximum_version = maximum
    context.set_alpn_protocols(["h2"])  # gRPC servers require HTTP/2 by ALPN
    return context


async def _call_through(keys: KeyDirectory, port: int, maximum: ssl.TLSVersion) -> pb.SignedEncapsulationKey:
    """A real gRPC call from GW1's certificate, over a TLS connection capped at ``maximum``."""
    proxy = TcpProxy(port, upstream_tls=_gw1_client_tls(keys, maximum), server_hostname="gw2")
    await proxy.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proxy.port}") as channel:
            return await rpc.EncapsulationKeysStub(channel).GetEncapsulationKey(
                pb.GetEncapsulationKeyRequest(), timeout=TIMEOUT_S
            )
    finally:
        await proxy.close()


async def test_a_tls12_client_gets_nothing(topology_keys: KeyDirectory, gw2: Listening) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _call_through(topology_keys, gw2.port, ssl.TLSVersion.TLSv1_2)
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "require TLS 1.3, not TLSv1.2" in (refused.value.details() or "")
    assert gw2.servicer.calls == 0  # the servicer never ran


async def test_the_same_client_over_tls13_is_answered(topology_keys: KeyDirectory, gw2: Listening) -> None:
    """The control: the TLS 1.2 refusal is the version's, not the proxy's."""
    answer = await _call_through(topology_keys, gw2.port, ssl.TLSVersion.TLSv1_3)
    assert answer.announcement == b"TLSv1.3" and gw2.servicer.calls == 1
