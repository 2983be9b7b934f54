"""Mutual TLS for the gateway-to-gateway gRPC channels, and the peer's gateway ID from its certificate.

gRPC's TLS stack (BoringSSL in grpcio) negotiates TLS 1.3 with the hybrid X25519MLKEM768 group by
default, so the channel itself resists store-now-decrypt-later; ``negotiated_group`` lets tests and the
README state what was actually used rather than what we hope.

Both ends know who is at the other:

- The server reads the caller's gateway ID from the URI SAN ``urn:qkd-relay:gateway:<id>`` of its verified
  certificate (:func:`calling_gateway`).
- The client checks the server is the neighbour it dials by the DNS name only that neighbour's
  certificate carries (:func:`relay.pki.certs.entity_dns_name`, given as ``ssl_target_name_override``,
  so it holds on loopback too). grpcio's Python API shows a client neither the server's certificate
  nor a verification hook, so a URI SAN check after the handshake is not possible on that side.
- TLS 1.3 only: grpcio has no minimum-version setting and accepts TLS 1.2 handshakes, so every call
  of a server made by :func:`gateway_server` is refused (UNAUTHENTICATED) unless its ``auth_context()``
  reports ``ssl_tls_version`` TLSv1.3 (:class:`Tls13Only`), before any handler runs.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeAlias

import grpc

from relay.pki.certs import URI_PREFIX, entity_dns_name
from relay.pki.layout import KeyDirectory

GATEWAY_URI_PREFIX = f"{URI_PREFIX}gateway:"
TLS13 = b"TLSv1.3"  # what grpcio's auth context reports as ``ssl_tls_version``


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
MAX_FRAME_BYTES = 8 << 20  # the keys' part of a frame; coalescing keeps each frame under it
MAX_MESSAGE_BYTES = 16 << 20  # gRPC's limit both ways (default 4 MiB): a full frame plus its ML-KEM and ML-DSA parts
MESSAGE_SIZES = {
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
}
RECONNECT_BACKOFF_MS = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
}


ServicerContext: TypeAlias = grpc.aio.ServicerContext[Any, Any]
"""The context of a handler of any of our services (their request and response types vary)."""
_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


# A channel to a gateway with replicas resolves to one address per replica (Neighbour.grpc_target): round
# robin spreads calls over every connected replica and skips one whose connection is down, where gRPC's
# default (pick_first) would pin the channel to the first replica that answers.
LOAD_BALANCING = {"grpc.lb_policy_name": "round_robin"}
# grpcio sets SO_REUSEPORT on its listeners by default, so a second process on a port already served would
# silently take half its connections; each replica has a gRPC port of its own, and a clash must fail.
EXCLUSIVE_PORT = {"grpc.so_reuseport": 0}


def channel_options(gateway_id: str) -> list[tuple[str, str | int]]:
    """Options of a channel to ``gateway_id`` (any of its replicas): its certificate must carry its own DNS
    name, and calls are spread over its replicas."""
    return [
        ("grpc.ssl_target_name_override", entity_dns_name(gateway_id)),
        *LOAD_BALANCING.items(),
        *RECONNECT_BACKOFF_MS.items(),
        *MESSAGE_SIZES.items(),
    ]


def gateway_server(options: Sequence[tuple[str, int]] = ()) -> grpc.aio.Server:
    """A gRPC server that answers TLS 1.3 callers only (:class:`Tls13Only`), with ``options`` (keepalive),
    room for a full frame, and a port no other process shares."""
    return grpc.aio.server(
        interceptors=[Tls13Only()], options=[*options, *MESSAGE_SIZES.items(), *EXCLUSIVE_PORT.items()]
    )


class Tls13Only(grpc.aio.ServerInterceptor):
    """Wraps every method handler so the call is aborted (UNAUTHENTICATED) unless it came over TLS 1.3.

    The interceptor itself sees only the method name and metadata, not the connection; the wrapped
    handler sees the call's context and checks it before the servicer runs."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # unknown method: gRPC answers UNIMPLEMENTED, nothing is served
        factory = _HANDLER_FACTORIES[handler.request_streaming, handler.response_streaming]
        behaviour = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
        if behaviour is None:
            raise TypeError(f"{handler_call_details.method}: a method handler without a behaviour")
        return factory(
            _tls13_first(behaviour),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


_HANDLER_FACTORIES: dict[tuple[bool, bool], Callable[..., _Handler]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _tls13_first(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    """``behaviour`` behind the TLS 1.3 check, in its own shape: an async generator stays one (responses
    yielded), a coroutine stays one (a response returned, or streamed with ``context.write``)."""
    if inspect.isasyncgenfunction(behaviour):

        async def streamed(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
            await require_tls13(context)
            async for response in behaviour(request, context):
                yield response

        return streamed

    async def called(request: Any, context: ServicerContext) -> Any:
        await require_tls13(context)
        return await behaviour(request, context)

    return called


async def require_tls13(context: ServicerContext) -> None:
    """Abort the call (UNAUTHENTICATED) unless its connection negotiated TLS 1.3."""
    versions = list(context.auth_context().get("ssl_tls_version", []))
    if versions != [TLS13]:
        negotiated = b", ".join(versions).decode(errors="replace") or "no TLS"
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"gateway channels require TLS 1.3, not {negotiated}")


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
