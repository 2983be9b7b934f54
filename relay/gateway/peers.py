"""The gRPC side of each neighbour: one mutual-TLS channel, its stubs, and the neighbour's verified ek.

Whether the neighbour is alive is :class:`relay.gateway.liveness.NeighbourLiveness`'s to remember; a
:class:`Peer` only asks (:meth:`Peer.probe`) and reports whether its channel is connected now.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2

from relay.crypto import Clock, EncapsulationKey, EncapsulationKeyAnnouncement, TrustStore
from relay.crypto.errors import BadAnnouncement
from relay.gateway.config import Neighbour
from relay.gateway.grpc_tls import channel_credentials, channel_options
from relay.gateway.keepalive import KeepaliveSettings
from relay.pki.layout import KeyDirectory
from relay.pool import Role
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc

EK_REFRESH_MARGIN_MS = 60_000  # fetch a new encapsulation key this long before the cached one expires
CONTROL_TIMEOUT_S = 5.0
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


class Peer:
    def __init__(
        self,
        neighbour: Neighbour,
        keys: KeyDirectory,
        own_id: str,
        trust: TrustStore,
        clock: Clock,
        keepalive: KeepaliveSettings = KeepaliveSettings(),
    ) -> None:
        self.neighbour = neighbour
        self._trust = trust
        self._clock = clock
        self._channel = grpc.aio.secure_channel(
            neighbour.grpc_target,
            channel_credentials(keys, own_id),
            options=[*channel_options(neighbour.id), *keepalive.channel_options()],
        )
        self.relay = rpc.KeyRelayStub(self._channel)
        self._health_check = self._channel.unary_unary(  # the typeshed stub of HealthStub lacks Check
            HEALTH_CHECK,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        self._pool_sync = rpc.QkdPoolSyncStub(self._channel)
        self._encapsulation_keys = rpc.EncapsulationKeysStub(self._channel)
        self._ek: EncapsulationKey | None = None
        self._ek_lock = asyncio.Lock()

    @property
    def id(self) -> str:
        return self.neighbour.id

    def is_connected(self) -> bool:
        """Whether the channel is connected now (asking also starts connecting an idle channel)."""
        return self._channel.get_state(try_to_connect=True) is grpc.ChannelConnectivity.READY

    async def probe(self, timeout_s: float) -> bool:
        """Whether the neighbour's application answers the health check SERVING within ``timeout_s``.

        The answer comes from its Python event loop, so a frozen or starved process fails the probe
        even while its channel stays READY.
        """
        try:
            answer = await self._health_check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        except grpc.aio.AioRpcError:
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    async def wait_ready(self, timeout_s: float) -> bool:
        """Whether the channel connected within ``timeout_s`` (start-up ordering, tests)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._channel.channel_ready()
        except TimeoutError:
            return False
        return True

    async def encapsulation_key(self) -> EncapsulationKey:
        """The neighbour's current ML-KEM key, verified against its pinned ML-DSA identity."""
        async with self._ek_lock:
            now = self._clock()
            if self._ek is None or self._ek.not_after_ms - EK_REFRESH_MARGIN_MS < now:
                answer = await self._encapsulation_keys.GetEncapsulationKey(
                    pb.GetEncapsulationKeyRequest(), timeout=CONTROL_TIMEOUT_S
                )
                announcement = EncapsulationKeyAnnouncement.from_bytes(answer.announcement)
                key = announcement.verify(self._trust, now)
                if key.gateway_id != self.id:
                    raise BadAnnouncement(f"{self.id} answered with the encapsulation key of {key.gateway_id}")
                self._ek = key
            return self._ek

    def forget_encapsulation_key(self) -> None:
        """After the neighbour refused our ek (it restarted and lost its keyring), fetch a fresh one."""
        self._ek = None

    async def announce(self, link_id: str, sender: Role, key_ids: Sequence[str]) -> Sequence[str]:
        """:class:`relay.gateway.qkd_announce.PeerAnnouncer` over gRPC: the neighbour fetches and stores the keys."""
        answer = await self._pool_sync.AnnounceKeys(
            pb.AnnounceKeysRequest(qkd_link_id=link_id, key_ids=list(key_ids), sender_role=sender.value),
            timeout=CONTROL_TIMEOUT_S,
        )
        return list(answer.accepted_key_ids)

    async def close(self) -> None:
        await self._channel.close()
