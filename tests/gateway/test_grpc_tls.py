"""The gateway-to-gateway gRPC channel: mutual TLS 1.3, its key-exchange group, and who may call."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from relay import topology as topology_module
from relay.gateway.config import GatewaySettings
from relay.gateway.grpc_tls import channel_credentials, channel_options, negotiated_group, server_credentials
from relay.pki.layout import KeyDirectory
from relay.pki.provision import provision
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc
from tests.support.local_testbed import LocalTestbed, default_document, running_testbed
from tests.support.redis_servers import RedisServer


class GroupReporter(rpc.EncapsulationKeysServicer):
    """Answers with what the server side of the handshake saw, so the test reads the real negotiation."""

    async def GetEncapsulationKey(
        self, request: pb.GetEncapsulationKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.SignedEncapsulationKey:
        return pb.SignedEncapsulationKey(announcement=(negotiated_group(context) or "unknown").encode())


async def test_gateway_channels_negotiate_tls13_with_the_hybrid_ml_kem_group(topology_keys: KeyDirectory) -> None:
    server = grpc.aio.server()
    rpc.add_EncapsulationKeysServicer_to_server(GroupReporter(), server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(topology_keys, "GW2"))
    await server.start()
    try:
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{port}", channel_credentials(topology_keys, "GW1"), options=channel_options("GW2")
        ) as channel:
            answer = await rpc.EncapsulationKeysStub(channel).GetEncapsulationKey(pb.GetEncapsulationKeyRequest())
    finally:
        await server.stop(None)
    assert answer.announcement.decode() == "X25519MLKEM768"  # a TLS 1.3-only hybrid group


@pytest.fixture
async def testbed(topology_keys: KeyDirectory, private_redis: RedisServer) -> AsyncIterator[LocalTestbed]:
    async with running_testbed(topology_keys, private_redis.url, GatewaySettings(prerelay=False)) as running:
        yield running


async def call_gw2(testbed: LocalTestbed, keys: KeyDirectory, entity: str) -> grpc.aio.AioRpcError:
    target = f"127.0.0.1:{testbed.gateways['GW2'].grpc_port}"
    async with grpc.aio.secure_channel(
        target, channel_credentials(keys, entity), options=channel_options("GW2")
    ) as chan:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await rpc.EncapsulationKeysStub(chan).GetEncapsulationKey(pb.GetEncapsulationKeyRequest(), timeout=5)
    return refused.value


async def test_an_sae_certificate_cannot_speak_to_a_gateway(testbed: LocalTestbed) -> None:
    error = await call_gw2(testbed, testbed.keys, "SAE-R2-A")
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_a_gateway_certificate_from_another_ca_is_refused_at_the_handshake(
    testbed: LocalTestbed, tmp_path_factory: pytest.TempPathFactory
) -> None:
    impostor = provision(topology_module.parse(default_document()), tmp_path_factory.mktemp("other-ca")).directory
    error = await call_gw2(testbed, impostor, "GW1")
    assert error.code() is grpc.StatusCode.UNAVAILABLE
