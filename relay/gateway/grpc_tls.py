"""Mutual TLS for the gateway-to-gateway gRPC channels, and the peer's gateway ID from its certificate.

gRPC's TLS stack (BoringSSL in grpcio) negotiates TLS 1.3 with the hybrid X25519MLKEM768 group by
default, so the channel itself resists store-now-decrypt-later; ``negotiated_group`` lets tests and the
README state what was actually used rather than what we hope.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from relay.pki.certs import URI_PREFIX
from relay.pki.layout import KeyDirectory

GATEWAY_URI_PREFIX = f"{URI_PREFIX}gateway:"
# Certificates name hosts "localhost" and "<id lowercased>"; the testbed dials 127.0.0.1, so the TLS
# server name to verify is given explicitly.
TLS_SERVER_NAME = "localhost"


def server_credentials(keys: KeyDirectory, gateway_id: str) -> grpc.ServerCredentials:
    files = keys.entity(gateway_id)
    return grpc.ssl_server_credentials(
        [(files.key.read_bytes(), files.cert.read_bytes())],
        root_certificates=keys.ca.cert.read_bytes(),
        require_client_auth=True,
    )


def channel_credentials(keys: KeyDirectory, gateway_id: str) -> grpc.ChannelCredentials:
    files = keys.entity(gateway_id)
    return grpc.ssl_channel_credentials(
        root_certificates=keys.ca.cert.read_bytes(),
        private_key=files.key.read_bytes(),
        certificate_chain=files.cert.read_bytes(),
    )


# gRPC's default reconnect backoff starts at 1 s and grows to 120 s; a neighbour that restarts would then
# be refused for far longer than it is down. Short and capped, the channel retries about every second.
RECONNECT_BACKOFF_MS = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
}


ServicerContext: TypeAlias = grpc.aio.ServicerContext[Any, Any]
"""The context of a handler of any of our services (their request and response types vary)."""


def channel_options() -> list[tuple[str, str | int]]:
    return [("grpc.ssl_target_name_override", TLS_SERVER_NAME), *RECONNECT_BACKOFF_MS.items()]


def peer_gateway_id(context: ServicerContext) -> str | None:
    """The calling gateway, from the URI SAN of its verified certificate; None if it is not a gateway."""
    uris = context.auth_context().get("peer_uri", [])
    for uri in (value.decode("utf-8", "replace") for value in uris):
        if uri.startswith(GATEWAY_URI_PREFIX):
            return uri[len(GATEWAY_URI_PREFIX) :]
    return None


async def calling_gateway(context: ServicerContext) -> str:
    """The calling gateway; a caller whose certificate names no gateway is refused with PERMISSION_DENIED."""
    gateway = peer_gateway_id(context)
    if gateway is None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "the client certificate does not name a gateway")
    return gateway  # abort() raises, so this is the gateway


def negotiated_group(context: ServicerContext) -> str | None:
    values = list(context.auth_context().get("ssl_negotiated_key_exchange_group", []))
    return values[0].decode() if values else None
