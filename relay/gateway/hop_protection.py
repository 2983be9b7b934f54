"""How each hop is protected: sealing for a neighbour and opening from one, under the link's policy.

Per link policy: ``qkd+pqc`` seals with a fresh QKD key from the link's pool and, when the pool is
empty, degrades that hop to ``pqc-only`` with a warning and a counted metric, the mode being signed into
the hop header; ``require-qkd`` never degrades and answers :class:`QkdExhausted` (503); ``pqc-only``
uses ML-KEM alone. Receivers accept exactly the modes their link policy allows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from relay.crypto import (
    DEFAULT_WINDOW_MS,
    Clock,
    EncapsulationKey,
    GatewayIdentity,
    HopMode,
    HopRoute,
    KemProvider,
    KeyRing,
    OpenedHop,
    PendingHop,
    QkdKey,
    ReplayGuard,
    SealedHop,
    TrustStore,
    VoidOrder,
    check_void,
    open_hop,
    seal_hop,
    verify_void,
)
from relay.gateway.config import LinkPolicy, Neighbour
from relay.gateway.errors import QkdExhausted, RelayFailed, TransferRefused
from relay.gateway.lane_levels import LaneBoard
from relay.gateway.relay_events import RelayObserver, RelayOrigin
from relay.pool import PoolEmpty, PoolError, QkdPool, Role

log = logging.getLogger(__name__)

_ALLOWED_MODES = {
    LinkPolicy.QKD_PQC: (HopMode.QKD_PQC, HopMode.PQC_ONLY),
    LinkPolicy.REQUIRE_QKD: (HopMode.QKD_PQC,),
    LinkPolicy.PQC_ONLY: (HopMode.PQC_ONLY,),
}


@dataclass(frozen=True)
class HopCrypto:
    """This gateway's keys and trust anchors, as hop sealing and opening need them."""

    identity: GatewayIdentity
    keyring: KeyRing
    trust: TrustStore
    kem: KemProvider
    replay: ReplayGuard
    clock: Clock
    window_ms: int = (
        DEFAULT_WINDOW_MS  # hop and void freshness; the replay guard remembers a hop this long at most twice
    )

    def check_void(self, order: VoidOrder, signature: bytes) -> None:
        """Signature and freshness of a void passing through (no replay check: the last gateway's)."""
        check_void(order, signature, trust=self.trust, clock=self.clock, window_ms=self.window_ms)

    async def verify_void(self, order: VoidOrder, signature: bytes) -> None:
        """Everything the last gateway checks before a void touches a key, replay cache included."""
        await verify_void(
            order, signature, trust=self.trust, replay=self.replay, clock=self.clock, window_ms=self.window_ms
        )


class QkdLanes:
    """The QKD pool lanes of each neighbour's link (none for a pqc-only link), by neighbour ID."""

    def __init__(self, neighbours: Mapping[str, Neighbour], lanes: Mapping[str, Mapping[Role, QkdPool]]) -> None:
        self._neighbours = neighbours
        self._lanes = lanes

    def outbound(self, neighbour_id: str) -> QkdPool:
        """The lane this gateway seals hops to ``neighbour_id`` with."""
        return self._lane(neighbour_id, inbound=False)

    def inbound(self, neighbour_id: str) -> QkdPool:
        """The lane ``neighbour_id`` seals its hops to this gateway with."""
        return self._lane(neighbour_id, inbound=True)

    async def outbound_levels(self) -> dict[str, int]:
        """The level of each outbound lane, by neighbour ID (what :class:`LaneBoard` reports upstream)."""
        return {neighbour_id: await self.outbound(neighbour_id).level() for neighbour_id in self._lanes}

    def of(self, neighbour_id: str) -> list[QkdPool]:
        """Both lanes of the QKD link to ``neighbour_id``."""
        return list(self._lanes.get(neighbour_id, {}).values())

    def _lane(self, neighbour_id: str, *, inbound: bool) -> QkdPool:
        qkd = self._neighbours[neighbour_id].qkd
        if qkd is None:
            raise KeyError(f"the link to {neighbour_id} has no QKD pool")
        return self._lanes[neighbour_id][qkd.role.peer if inbound else qkd.role]


class HopProtection:
    def __init__(
        self,
        own_id: str,
        neighbours: Mapping[str, Neighbour],
        lanes: QkdLanes,
        crypto: HopCrypto,
        observer: RelayObserver,
        board: LaneBoard,
    ) -> None:
        """``board``: told at once when a lane is found empty, so the refusal reports it upstream."""
        self._own_id = own_id
        self._neighbours = neighbours
        self._lanes = lanes
        self._crypto = crypto
        self._observer = observer
        self._board = board

    async def seal(
        self, key: bytes, route: HopRoute, neighbour_id: str, recipient: EncapsulationKey, *, no_degrade: bool
    ) -> tuple[PendingHop, HopMode]:
        """Seal ``key`` for the neighbour under its link's policy; ``no_degrade`` forbids the pqc-only fallback."""
        mode, qkd_key = await self._protection(self._neighbours[neighbour_id], no_degrade, route.transfer_id)
        # Sealing is ~1 ms of CPU (mostly the ML-DSA signature). Yield first, so that when many hops become
        # ready at once, requests already queued on the loop are served between them, not after all of them.
        await asyncio.sleep(0)
        pending = seal_hop(
            key,
            route=route,
            recipient=recipient,
            identity=self._crypto.identity,
            mode=mode,
            qkd_key=qkd_key,
            kem=self._crypto.kem,
            clock=self._crypto.clock,
        )
        return pending, mode

    async def open(self, message: SealedHop, sender: str) -> OpenedHop:
        """Authenticate and unwrap a hop from neighbour ``sender``; refusals are :class:`HopError`s."""
        neighbour = self._neighbours[sender]
        allowed = _ALLOWED_MODES[neighbour.policy]
        return await open_hop(
            message,
            recipient=self._crypto.keyring,
            trust=self._crypto.trust,
            mode=message.header.mode if message.header.mode in allowed else allowed[0],
            replay=self._crypto.replay,
            clock=self._crypto.clock,
            window_ms=self._crypto.window_ms,
            fetch_qkd_key=lambda key_id: self._received_qkd_key(neighbour, key_id),
            expected_sender=sender,
        )

    async def _protection(
        self, neighbour: Neighbour, no_degrade: bool, transfer_id: bytes
    ) -> tuple[HopMode, QkdKey | None]:
        if neighbour.policy is LinkPolicy.PQC_ONLY or neighbour.qkd is None:
            return HopMode.PQC_ONLY, None
        lane = self._lanes.outbound(neighbour.id)
        try:
            qkd_key = await lane.take_any()
        except PoolEmpty:
            self._board.measured(neighbour.id, 0)
            if neighbour.policy is LinkPolicy.REQUIRE_QKD or no_degrade:
                self._observer.counts.of(RelayOrigin.of_hop(no_degrade)).qkd_exhausted += 1
                why = "its policy is require-qkd" if neighbour.policy is LinkPolicy.REQUIRE_QKD else "pre-relay waits"
                raise QkdExhausted(
                    f"QKD key on link {neighbour.qkd.link_id} ({self._own_id}-{neighbour.id}) is exhausted and {why}"
                ) from None
            self._observer.counts.qkd_fallbacks += 1
            log.warning(
                "QKD pool of link %s is empty: this hop to %s is sealed pqc-only (policy qkd+pqc)",
                neighbour.qkd.link_id,
                neighbour.id,
                extra={"transfer_id": transfer_id.hex(), "link": neighbour.qkd.link_id},
            )
            return HopMode.PQC_ONLY, None
        except PoolError as exc:
            log.warning("QKD pool of link %s failed: %s", neighbour.qkd.link_id, exc)
            raise RelayFailed(
                f"QKD pool of link {neighbour.qkd.link_id}: {exc.public_message}", retryable=True
            ) from exc
        return HopMode.QKD_PQC, QkdKey(qkd_key.key_id, qkd_key.key)

    async def _received_qkd_key(self, neighbour: Neighbour, key_id: str) -> bytes:
        if neighbour.qkd is None:
            raise TransferRefused(f"link to {neighbour.id} has no QKD key pool")
        try:
            return (await self._lanes.inbound(neighbour.id).take_specific(key_id)).key
        except PoolError as exc:
            log.warning("QKD key %s of link %s: %s", key_id, neighbour.qkd.link_id, exc)
            message = f"QKD key {key_id} of link {neighbour.qkd.link_id}: {exc.public_message}"
            raise RelayFailed(message, retryable=True) from exc
