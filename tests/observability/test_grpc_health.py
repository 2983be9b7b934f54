"""The standard gRPC health service on the gateway's mTLS gRPC port follows the pools' Redis."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from relay.gateway.config import GatewaySettings
from relay.gateway.grpc_services import RELAY_SERVICES
from relay.gateway.grpc_tls import channel_credentials, channel_options
from relay.pki.layout import KeyDirectory
from tests.support.local_testbed import running_testbed
from tests.support.redis_servers import RedisServer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _status(stub: health_pb2_grpc.HealthStub, service: str = "") -> int:
    return (await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)).status


async def _wait_for(stub: health_pb2_grpc.HealthStub, wanted: int, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while await _status(stub) != wanted:
            await asyncio.sleep(0.1)


async def test_health_is_serving_then_not_serving_without_redis(
    topology_keys: KeyDirectory, private_redis: RedisServer
) -> None:
    async with running_testbed(topology_keys, private_redis.url, GatewaySettings(prerelay=False)) as testbed:
        gw1 = testbed.gateways["GW1"]
        target = f"127.0.0.1:{gw1.grpc_port}"
        async with grpc.aio.secure_channel(
            target, channel_credentials(topology_keys, "GW2"), options=channel_options("GW1")
        ) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            assert await _status(stub) == SERVING
            for service in RELAY_SERVICES:
                assert await _status(stub, service) == SERVING
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await _status(stub, "no.such.Service")
            assert unknown.value.code() is grpc.StatusCode.NOT_FOUND

            watch = stub.Watch(health_pb2.HealthCheckRequest(service="qkdrelay.v1.KeyRelay"))
            assert (await watch.read()).status == SERVING
            private_redis.stop()
            await _wait_for(stub, NOT_SERVING)
            assert (await asyncio.wait_for(watch.read(), 5)).status == NOT_SERVING
            assert gw1.health.serving is False

            private_redis.restart()
            await _wait_for(stub, SERVING)
            assert (await asyncio.wait_for(watch.read(), 5)).status == SERVING
            watch.cancel()


async def test_health_requires_a_client_certificate(topology_keys: KeyDirectory, private_redis: RedisServer) -> None:
    async with running_testbed(topology_keys, private_redis.url, GatewaySettings(prerelay=False)) as testbed:
        target = f"127.0.0.1:{testbed.gateways['GW1'].grpc_port}"
        anonymous = grpc.ssl_channel_credentials(root_certificates=topology_keys.ca.cert.read_bytes())
        async with grpc.aio.secure_channel(target, anonymous, options=channel_options("GW1")) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _status(health_pb2_grpc.HealthStub(channel))
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
