"""The gateway's gRPC server: KeyRelay, QkdPoolSync and EncapsulationKeys behind mutual TLS, plus health.

Handlers authenticate the calling gateway from its certificate (never from a message field). The
KeyRelay service is the receiving end of the hop transport and lives with it, in
:mod:`relay.gateway.hop_transport`, which also says what each status code means to the sender.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import grpc

from relay.gateway.config import GatewayPlan
from relay.gateway.grpc_health import GatewayHealth
from relay.gateway.grpc_tls import ServicerContext, calling_gateway
from relay.gateway.hop_transport import KeyRelayService, answer_with_status
from relay.gateway.hops import FrameHandler, VoidHandler
from relay.gateway.lane_levels import LaneBoard
from relay.gateway.qkd_announce import AnnouncementReceiver
from relay.gateway.shared_keyring import SharedKeyRing
from relay.pool import Role
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc


class QkdPoolSyncService(rpc.QkdPoolSyncServicer):
    """The slave end of each QKD link: the master announces key_IDs, we fetch our copies and store them."""

    def __init__(self, plan: GatewayPlan, receivers: Mapping[str, AnnouncementReceiver]) -> None:
        self._plan = plan
        self._receivers = receivers  # by QKD link ID

    async def AnnounceKeys(self, request: pb.AnnounceKeysRequest, context: ServicerContext) -> pb.AnnounceKeysResponse:
        sender = await calling_gateway(context)
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
            stored = await answer_with_status(
                context, lambda: receiver.accept_announced(Role(request.sender_role), list(request.key_ids))
            )
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.AnnounceKeysResponse(accepted_key_ids=stored)


class EncapsulationKeysService(rpc.EncapsulationKeysServicer):
    """Answers from the ring every replica shares, so a key fetched here opens at any replica."""

    def __init__(self, keyring: SharedKeyRing) -> None:
        self._keyring = keyring

    async def GetEncapsulationKey(
        self, request: pb.GetEncapsulationKeyRequest, context: ServicerContext
    ) -> pb.SignedEncapsulationKey:
        await calling_gateway(context)
        announcement = await answer_with_status(context, self._keyring.current_announcement)
        return pb.SignedEncapsulationKey(announcement=announcement.to_bytes())


RELAY_SERVICES = tuple(service.full_name for service in pb.DESCRIPTOR.services_by_name.values())


def add_services(
    server: grpc.aio.Server,
    plan: GatewayPlan,
    frames: FrameHandler,
    voids: VoidHandler,
    receivers: Mapping[str, AnnouncementReceiver],
    keyring: SharedKeyRing,
    board: LaneBoard,
    measure_lanes: Callable[[], Awaitable[None]],
) -> GatewayHealth:
    """Add the relay services and the standard health service (grpc.health.v1.Health), which is returned:
    its status follows Redis (see :mod:`relay.gateway.grpc_health`). Health needs the same mTLS."""
    rpc.add_KeyRelayServicer_to_server(KeyRelayService(frames, voids, board, measure_lanes), server)
    rpc.add_QkdPoolSyncServicer_to_server(QkdPoolSyncService(plan, receivers), server)
    rpc.add_EncapsulationKeysServicer_to_server(EncapsulationKeysService(keyring), server)
    health = GatewayHealth(RELAY_SERVICES)
    health.add_to(server)
    return health
