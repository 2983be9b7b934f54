"""How each hop is protected: sealing for a neighbour and opening from one, under the link's policy.

Per link policy: ``qkd+pqc`` seals each frame with a fresh QKD key from the link's pool (and, with
``qkd_use: otp``, a one-time pad of fresh QKD key per relayed key) and, when the pool is short, degrades
the keys it cannot cover to ``pqc-only`` with a warning and a counted metric, the mode being signed into
the frame header; ``require-qkd`` never degrades and refuses those keys with :class:`QkdExhausted` (503);
``pqc-only`` uses ML-KEM alone. A key marked ``no_degrade`` (pre-relay) is refused rather than degraded.
Receivers accept exactly the modes and the ``qkd_use`` their link policy allows, so neither can be talked
down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from relay.crypto import (
    DEFAULT_WINDOW_MS,
    Clock,
    EncapsulationKey,
    FrameEntry,
    GatewayIdentity,
    HopMode,
    KemProvider,
    OpenedFrame,
    PendingFrame,
    QkdKey,
    QkdUse,
    ReplayGuard,
    SealedFrame,
    TrustStore,
    VoidOrder,
    check_void,
    open_frame,
    pad_keys_needed,
    seal_frame,
    verify_void,
)
from relay.crypto.kdf import QKD_KEY_SIZE
from relay.gateway.config import LinkPolicy, Neighbour
from relay.gateway.errors import QkdExhausted, RelayFailed, TransferRefused
from relay.gateway.lane_levels import LaneBoard
from relay.gateway.relay_events import RelayObserver, RelayOrigin
from relay.gateway.shared_keyring import SharedKeyRing
from relay.pool import MAX_BATCH, PoolEmpty, PoolError, QkdPool, Role

log = logging.getLogger(__name__)

REFILL_POLL_S = 0.05  # how often a waiting require-qkd frame looks at its lane

_ALLOWED_MODES = {
    LinkPolicy.QKD_PQC: (HopMode.QKD_PQC, HopMode.PQC_ONLY),
    LinkPolicy.REQUIRE_QKD: (HopMode.QKD_PQC,),
    LinkPolicy.PQC_ONLY: (HopMode.PQC_ONLY,),
}


@dataclass(frozen=True)
class HopCrypto:
    """This gateway's keys and trust anchors, as hop sealing and opening need them."""

    identity: GatewayIdentity
    keyring: SharedKeyRing
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


@dataclass
class Sealing:
    """The frames a batch of keys for one neighbour was sealed into, and the keys refused for want of QKD key.

    Usually one frame; a ``qkd+pqc`` link short of QKD key seals the keys QKD key covers in one frame and
    the rest pqc-only in another, and refuses those that must not degrade; an ``otp`` batch whose pads
    need more than one take of QKD keys (``MAX_BATCH``) is sealed in several frames.
    """

    frames: list[tuple[PendingFrame, list[int]]] = field(default_factory=list)  # each with its entries' indices
    refused: dict[int, QkdExhausted] = field(default_factory=dict)


class HopProtection:
    def __init__(
        self,
        own_id: str,
        neighbours: Mapping[str, Neighbour],
        lanes: QkdLanes,
        crypto: HopCrypto,
        observer: RelayObserver,
        board: LaneBoard,
        *,
        qkd_wait_s: float,
    ) -> None:
        """``board``: told at once when a lane is found short, so the refusal reports it upstream;
        ``qkd_wait_s``: how long keys on a ``require-qkd`` link wait for the lane to refill before refusal."""
        self._own_id = own_id
        self._neighbours = neighbours
        self._lanes = lanes
        self._crypto = crypto
        self._observer = observer
        self._board = board
        self._qkd_wait_s = qkd_wait_s
        self._turns = {neighbour_id: asyncio.Lock() for neighbour_id in neighbours}  # require-qkd waits, in order

    async def seal(
        self, entries: Sequence[FrameEntry], neighbour_id: str, recipient: EncapsulationKey, *, send_by: Sequence[float]
    ) -> Sealing:
        """Seal ``entries`` for the neighbour under its link's policy and ``qkd_use``; an entry's
        ``no_degrade`` forbids it the pqc-only fallback. On a ``require-qkd`` link keys the lane cannot
        cover yet wait for it to refill, up to ``qkd_wait_s`` per refill: a link that distils key slowly
        makes its keys wait, and frames fill up meanwhile. A key still waiting at its ``send_by`` (monotonic)
        is refused, and never spends QKD key: its sender has given up on it."""
        neighbour = self._neighbours[neighbour_id]
        sealing = Sealing()
        if neighbour.policy is LinkPolicy.PQC_ONLY or neighbour.qkd is None:
            self._seal_into(sealing, entries, range(len(entries)), neighbour, recipient, None, [])
            return sealing
        rest = list(range(len(entries)))
        if neighbour.policy is LinkPolicy.REQUIRE_QKD:  # batches wait for QKD key one after the other, in order
            try:
                async with asyncio.timeout_at(_loop_time(max(send_by))):
                    await self._turns[neighbour.id].acquire()
            except TimeoutError:
                for index in rest:
                    sealing.refused[index] = self._exhausted(neighbour, entries[index].no_degrade, late=True)
                return sealing
        try:
            rest = await self._seal_covered(sealing, entries, rest, neighbour, recipient, send_by)
        finally:
            if neighbour.policy is LinkPolicy.REQUIRE_QKD:
                self._turns[neighbour.id].release()
        if not rest:
            return sealing
        self._board.found_short(neighbour.id)
        degradable = [i for i in rest if neighbour.policy is LinkPolicy.QKD_PQC and not entries[i].no_degrade]
        for index in sorted(set(rest) - set(degradable)):
            sealing.refused[index] = self._exhausted(neighbour, entries[index].no_degrade)
        if degradable:
            self._observer.counts.qkd_fallbacks += len(degradable)
            log.warning(
                "QKD pool of link %s is short: %d keys to %s are sealed pqc-only (policy qkd+pqc)",
                neighbour.qkd.link_id,
                len(degradable),
                neighbour.id,
                extra={"link": neighbour.qkd.link_id},
            )
            self._seal_into(sealing, entries, degradable, neighbour, recipient, None, [])
        return sealing

    async def _seal_covered(
        self,
        sealing: Sealing,
        entries: Sequence[FrameEntry],
        rest: list[int],
        neighbour: Neighbour,
        recipient: EncapsulationKey,
        send_by: Sequence[float],
    ) -> list[int]:
        """Seal the entries QKD key covers; the indices left uncovered.

        On require-qkd the batch first waits (until its earliest key's ``send_by``, ``qkd_wait_s`` at most)
        for the lane to cover all of it, so that an ``otp`` frame's own QKD key is shared by the whole batch
        rather than by the few keys one refill covers; then it takes what is there, and waits again for
        the rest."""
        # A lane found short within the last qkd_wait_s is not waited on again: its link is not refilling
        # (halted, or slower than the load), and batches queued behind the one that waited fail at once.
        waits = neighbour.policy is LinkPolicy.REQUIRE_QKD and not self._board.short_within(
            neighbour.id, self._qkd_wait_s
        )
        while rest:  # more than one frame only when one take cannot cover them all (MAX_BATCH QKD keys)
            now = time.monotonic()
            for index in (i for i in rest if send_by[i] <= now):
                sealing.refused[index] = self._exhausted(neighbour, entries[index].no_degrade, late=True)
            rest = [i for i in rest if i not in sealing.refused]
            if not rest:
                break
            if waits:
                whole = min(MAX_BATCH, 1 + sum(self._pad_keys(neighbour, entries[i]) for i in rest))
                await self._refilled(neighbour, whole, min(now + self._qkd_wait_s, min(send_by[i] for i in rest)))
            covered, qkd_key, pads = await self._take_qkd_keys(neighbour, [entries[i] for i in rest])
            if not covered:
                first = 1 + self._pad_keys(neighbour, entries[rest[0]])
                if waits and await self._refilled(neighbour, first, min(now + self._qkd_wait_s, max(send_by))):
                    continue
                break
            self._seal_into(sealing, entries, rest[:covered], neighbour, recipient, qkd_key, pads)
            rest = rest[covered:]
        return rest

    async def open(self, message: SealedFrame, sender: str) -> OpenedFrame:
        """Authenticate and unwrap a frame from neighbour ``sender``; refusals are :class:`HopError`s."""
        neighbour = self._neighbours[sender]
        allowed = _ALLOWED_MODES[neighbour.policy]
        await self._crypto.keyring.ensure_loaded(message.header.ek_id)  # another replica's newer key
        return await open_frame(
            message,
            recipient=self._crypto.keyring,
            trust=self._crypto.trust,
            mode=message.header.mode if message.header.mode in allowed else allowed[0],
            qkd_use=neighbour.qkd_use,
            replay=self._crypto.replay,
            clock=self._crypto.clock,
            window_ms=self._crypto.window_ms,
            fetch_qkd_keys=lambda key_ids: self._received_qkd_keys(neighbour, key_ids),
            expected_sender=sender,
        )

    def _seal_into(
        self,
        sealing: Sealing,
        entries: Sequence[FrameEntry],
        indices: Sequence[int],
        neighbour: Neighbour,
        recipient: EncapsulationKey,
        qkd_key: QkdKey | None,
        pads: list[QkdKey],
    ) -> None:
        pending = seal_frame(
            [entries[i] for i in indices],
            recipient=recipient,
            identity=self._crypto.identity,
            mode=HopMode.PQC_ONLY if qkd_key is None else HopMode.QKD_PQC,
            qkd_use=neighbour.qkd_use,
            qkd_key=qkd_key,
            pad_keys=pads,
            kem=self._crypto.kem,
            clock=self._crypto.clock,
        )
        qkd_bits = 0 if qkd_key is None else 8 * QKD_KEY_SIZE * (1 + len(pads))
        self._observer.frame_sealed(neighbour.id, len(indices), qkd_bits)
        sealing.frames.append((pending, list(indices)))

    async def _take_qkd_keys(
        self, neighbour: Neighbour, entries: Sequence[FrameEntry]
    ) -> tuple[int, QkdKey | None, list[QkdKey]]:
        """How many leading entries QKD key covers, with the combiner's key and their pads (otp).

        hkdf: one key covers the whole frame. otp: one key plus a whole pad per entry, taken at once or
        not at all; when the lane holds less, the longest prefix it covers (never a partial pad)."""
        assert neighbour.qkd is not None
        lane = self._lanes.outbound(neighbour.id)
        needs = [self._pad_keys(neighbour, entry) for entry in entries]
        covered, wanted = len(entries), 1 + sum(needs)
        try:
            while True:
                if wanted > MAX_BATCH:
                    covered, wanted = _prefix_within(needs, MAX_BATCH)
                try:
                    taken = await lane.take(wanted)
                    break
                except PoolEmpty:
                    covered, wanted = _prefix_within(needs, min(await lane.level(), wanted - 1))
                    if covered == 0:
                        return 0, None, []
        except PoolError as exc:
            log.warning("QKD pool of link %s failed: %s", neighbour.qkd.link_id, exc)
            raise RelayFailed(
                f"QKD pool of link {neighbour.qkd.link_id}: {exc.public_message}", retryable=True
            ) from exc
        keys = [QkdKey(key.key_id, key.key) for key in taken]
        return covered, keys[0], keys[1:]

    @staticmethod
    def _pad_keys(neighbour: Neighbour, entry: FrameEntry) -> int:
        return pad_keys_needed(len(entry.key)) if neighbour.qkd_use is QkdUse.OTP else 0

    async def _refilled(self, neighbour: Neighbour, need: int, deadline: float) -> bool:
        """Whether the outbound lane holds ``need`` QKD keys, now or by ``deadline``."""
        lane = self._lanes.outbound(neighbour.id)
        try:
            if await lane.level() >= need:
                return True
        except PoolError:
            return False
        while time.monotonic() + REFILL_POLL_S < deadline:
            await asyncio.sleep(REFILL_POLL_S)
            try:
                if await lane.level() >= need:
                    return True
            except PoolError:
                return False
        return False

    def _exhausted(self, neighbour: Neighbour, no_degrade: bool, *, late: bool = False) -> QkdExhausted:
        assert neighbour.qkd is not None
        self._observer.counts.of(RelayOrigin.of_hop(no_degrade)).qkd_exhausted += 1
        link = f"link {neighbour.qkd.link_id} ({self._own_id}-{neighbour.id})"
        if late:
            return QkdExhausted(f"the key's deadline passed while it waited for QKD key on {link}")
        why = "its policy is require-qkd" if neighbour.policy is LinkPolicy.REQUIRE_QKD else "pre-relay waits"
        return QkdExhausted(f"QKD key on {link} is exhausted and {why}")

    async def _received_qkd_keys(self, neighbour: Neighbour, key_ids: Sequence[str]) -> list[bytes]:
        if neighbour.qkd is None:
            raise TransferRefused(f"link to {neighbour.id} has no QKD key pool")
        try:
            return [key.key for key in await self._lanes.inbound(neighbour.id).take_named(key_ids)]
        except PoolError as exc:
            log.warning("QKD keys of link %s: %s", neighbour.qkd.link_id, exc)
            message = f"QKD keys of link {neighbour.qkd.link_id}: {exc.public_message}"
            raise RelayFailed(message, retryable=True) from exc


def _loop_time(monotonic_s: float) -> float:
    """The event loop's clock at the moment ``time.monotonic()`` reads ``monotonic_s``."""
    return asyncio.get_running_loop().time() + monotonic_s - time.monotonic()


def _prefix_within(needs: Sequence[int], available: int) -> tuple[int, int]:
    """The most leading entries whose QKD keys (one for the frame, plus each entry's pad) fit in ``available``,
    and how many keys that takes."""
    covered, wanted = 0, 1
    for need in needs:
        if wanted + need > available:
            break
        covered, wanted = covered + 1, wanted + need
    return covered, wanted if covered else 0
