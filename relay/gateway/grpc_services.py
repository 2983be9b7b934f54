"""The gateway's gRPC server: KeyRelay, QkdPoolSync and EncapsulationKeys behind mutual TLS.

Handlers authenticate the calling gateway from its certificate (never from a message field) and map
every failure onto a status code the sending side acts on: UNAVAILABLE is retried with the same message,
RESOURCE_EXHAUSTED is a ``require-qkd`` stall (503 at the originator), FAILED_PRECONDITION asks for a
fresh encapsulation key, ABORTED means "void and start over", INVALID_ARGUMENT and PERMISSION_DENIED are
final. Details carry a short reason and never key material.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import grpc

from relay.crypto import KeyRing
from relay.crypto.errors import HopError, UnknownEncapsulationKey
from relay.gateway.config import GatewayPlan
from relay.gateway.errors import QkdExhausted, RelayFailed, TransferInProgress, TransferRefused
from relay.gateway.grpc_tls import peer_gateway_id
from relay.gateway.relay_engine import DOWN_LINK_METADATA, RelayEngine
from relay.observability.health import GatewayHealth
from relay.pool import AnnouncementReceiver, PoolError, Role
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc

log = logging.getLogger(__name__)

T = TypeVar("T")


async def _calling_gateway(context: grpc.aio.ServicerContext) -> str:
    gateway = peer_gateway_id(context)
    if gateway is None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "the client certificate does not name a gateway")
    return gateway  # type: ignore[return-value]  # abort() raises


async def _answer(context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[T]]) -> T:
    """Run a handler body and turn each failure into the status code its sender acts on."""
    try:
        return await work()
    except QkdExhausted as exc:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message)
    except RelayFailed as exc:
        if exc.down_link is not None:
            context.set_trailing_metadata(((DOWN_LINK_METADATA, ",".join(exc.down_link)),))
        await context.abort(grpc.StatusCode.ABORTED, exc.message)
    except TransferInProgress as exc:
        await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    except TransferRefused as exc:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
    except UnknownEncapsulationKey as exc:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    except HopError as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{type(exc).__name__}: {exc}")
    except PoolError as exc:
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"storage: {exc}")
    raise AssertionError("unreachable: abort() raises")


class KeyRelayService(rpc.KeyRelayServicer):
    def __init__(self, engine: RelayEngine) -> None:
        self._engine = engine

    async def RelayKey(self, request: pb.RelayKeyRequest, context: grpc.aio.ServicerContext) -> pb.RelayKeyResponse:
        sender = await _calling_gateway(context)
        return await _answer(context, lambda: self._engine.receive(request, sender, context.time_remaining()))

    async def VoidKeys(self, request: pb.VoidKeysRequest, context: grpc.aio.ServicerContext) -> pb.VoidKeysResponse:
        sender = await _calling_gateway(context)
        voided = await _answer(context, lambda: self._engine.receive_void(request, sender))
        not_voided = sorted(set(request.key_ids) - set(voided))
        return pb.VoidKeysResponse(voided_key_ids=voided, failed_to_void_key_ids=not_voided)


class QkdPoolSyncService(rpc.QkdPoolSyncServicer):
    """The slave end of each QKD link: the master announces key_IDs, we fetch our copies and store them."""

    def __init__(self, plan: GatewayPlan, receivers: Mapping[str, AnnouncementReceiver]) -> None:
        self._plan = plan
        self._receivers = receivers  # by QKD link ID

    async def AnnounceKeys(
        self, request: pb.AnnounceKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.AnnounceKeysResponse:
        sender = await _calling_gateway(context)
        neighbour = self._plan.neighbours.get(sender)
        receiver = self._receivers.get(request.qkd_link_id)
        link_of_sender = neighbour.qkd.link_id if neighbour and neighbour.qkd else None
        if receiver is None or link_of_sender != request.qkd_link_id:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{sender} is not the master of QKD link {request.qkd_link_id!r} with {self._plan.id}",
            )
        if request.sender_role not in {role.value for role in Role}:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "sender_role must be master or slave")
        try:
            stored = await _answer(
                context, lambda: receiver.accept_announced(Role(request.sender_role), list(request.key_ids))
            )
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.AnnounceKeysResponse(accepted_key_ids=stored)


class EncapsulationKeysService(rpc.EncapsulationKeysServicer):
    def __init__(self, keyring: KeyRing) -> None:
        self._keyring = keyring

    async def GetEncapsulationKey(
        self, request: pb.GetEncapsulationKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.SignedEncapsulationKey:
        await _calling_gateway(context)
        return pb.SignedEncapsulationKey(announcement=self._keyring.current_announcement().to_bytes())


RELAY_SERVICES = tuple(service.full_name for service in pb.DESCRIPTOR.services_by_name.values())


def add_services(
    server: grpc.aio.Server, engine: RelayEngine, receivers: Mapping[str, AnnouncementReceiver], keyring: KeyRing
) -> GatewayHealth:
    """Add the relay services and the standard health service (grpc.health.v1.Health), which is returned:
    its status follows Redis (see :mod:`relay.observability.health`). Health needs the same mTLS."""
    rpc.add_KeyRelayServicer_to_server(KeyRelayService(engine), server)
    rpc.add_QkdPoolSyncServicer_to_server(QkdPoolSyncService(engine.plan, receivers), server)
    rpc.add_EncapsulationKeysServicer_to_server(EncapsulationKeysService(keyring), server)
    health = GatewayHealth(RELAY_SERVICES)
    health.add_to(server)
    return health
