"""Keeps a link's QKD pool lanes topped up from the vendor KMS, on the master gateway of the link.

With several replicas of that gateway, :meth:`QkdFiller.run` (announcements to the slave included) runs on
one replica at a time, under the link's lease (:func:`relay.pool.leases.run_while_leased`, started by the
gateway's service); two fillers of one link at once would only fetch more vendor key than the lanes need.

Each round reads both lane levels and the KME's stored key count, then fetches at most what the lanes
lack and what the KME holds, so it never asks for more than the link has distilled; scarce key is shared
evenly between the lanes. Every batch is announced to the peer before the vendor's availability
timeout, and the order of storing follows one rule: **the receiver of a lane holds a key before its
sender can use it.** On the master's own lane the peer stores first and the master keeps only what the
peer accepted; on the slave's lane the master stores first and retires what the peer turned down. A crash
in between can leave keys on the receiving side only, where they are never asked for and simply expire.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from relay.aio import repeat_until_cancelled
from relay.domain import Key
from relay.etsi014.client import Etsi014Client
from relay.etsi014.models import KeyRequest
from relay.gateway.qkd_announce import KME_ERRORS, PeerAnnouncer
from relay.pool import PoolState, PoolUnavailable, QkdPool, Role

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class FillerMetrics:
    batches: int = 0
    keys_fetched: int = 0  # from the vendor KMS
    keys_stored: int = 0  # in this gateway's pools, after the peer accepted them
    keys_lost: int = 0  # fetched but not accepted by the peer: vendor key spent for nothing
    kms_errors: int = 0
    announce_errors: int = 0
    pool_unavailable: int = 0
    rounds_peer_unreachable: int = 0  # rounds skipped: fetching then would waste vendor key
    vendor_stock_at_start: int | None = None  # keys the KME held when first asked: distilled before we pulled


@dataclass(frozen=True)
class FillerSettings:
    interval_s: float = 0.5
    announce_timeout_s: float = 5.0  # well inside the vendor's ~10 s availability timeout
    max_batch: int = 128  # keys fetched per round, over both lanes

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.announce_timeout_s <= 0 or self.max_batch < 1:
            raise ValueError("interval_s, announce_timeout_s and max_batch must be positive")


class QkdFiller:
    def __init__(
        self,
        link_id: str,
        slave_sae_id: str,
        kme: Etsi014Client,
        pools: Mapping[Role, QkdPool],
        announcer: PeerAnnouncer,
        settings: FillerSettings,
        *,
        peer_reachable: Callable[[], bool] = lambda: True,
    ) -> None:
        self.link_id = link_id
        self.metrics = FillerMetrics()
        self._slave = slave_sae_id
        self._kme = kme
        self._pools = pools
        self._announcer = announcer
        self._settings = settings
        self._peer_reachable = peer_reachable
        self._states: dict[Role, PoolState] = {}
        self._rounds = 0

    async def run(self) -> None:
        """Fill forever; cancel the task to stop. Expected failures are counted and retried next round."""
        await repeat_until_cancelled(self.fill_once, self._settings.interval_s)

    async def fill_once(self) -> int:
        """One round over both lanes; returns how many keys this gateway stored."""
        plan = await self._guarded(self._plan())
        stored = 0
        for pool, number in plan or []:
            stored += await self._guarded(self._fill_lane(pool, number)) or 0
        return stored

    async def _plan(self) -> list[tuple[QkdPool, int]]:
        """How many keys each lane gets this round: none while the peer cannot take its copies, since the
        vendor's keys would expire unannounced and that QKD key would be lost."""
        if not self._peer_reachable():
            self.metrics.rounds_peer_unreachable += 1
            return []
        levels = {role: await pool.level() for role, pool in self._pools.items()}
        self._report_states(levels)
        if all(pool.watermarks.deficit(levels[role]) == 0 for role, pool in self._pools.items()):
            return []
        status = await self._kme.get_status(self._slave)
        if self.metrics.vendor_stock_at_start is None:
            self.metrics.vendor_stock_at_start = status.stored_key_count
        available = min(status.stored_key_count, status.max_key_per_request, self._settings.max_batch)
        grants = self._share(levels, available)
        return [(self._pools[role], number) for role, number in grants.items() if number > 0]

    def _share(self, levels: Mapping[Role, int], available: int) -> dict[Role, int]:
        """Water-filling: each key goes to the lane lowest after the grants so far, so scarce vendor key is
        split evenly; ties go to each lane in turn, round by round, or one lane could starve the other."""
        roles = list(levels)
        if self._rounds % 2:
            roles.reverse()
        self._rounds += 1
        grants = dict.fromkeys(roles, 0)
        for _ in range(available):
            needy = [r for r in roles if self._pools[r].watermarks.deficit(levels[r] + grants[r]) > 0]
            if not needy:
                break
            grants[min(needy, key=lambda r: levels[r] + grants[r])] += 1
        return grants

    async def _guarded(self, step: Awaitable[T]) -> T | None:
        """Run one step; a vendor or Redis failure is counted and logged, and the round moves on."""
        try:
            return await step
        except KME_ERRORS as exc:
            self.metrics.kms_errors += 1
            log.warning("link %s: vendor KMS: %s", self.link_id, exc)
        except PoolUnavailable as exc:
            self.metrics.pool_unavailable += 1
            log.warning("link %s: %s", self.link_id, exc)
        return None

    async def _fill_lane(self, pool: QkdPool, number: int) -> int:
        container = await self._kme.get_key(self._slave, KeyRequest(number=number, size=pool.settings.key_size_bits))
        keys = container.keys
        self.metrics.batches += 1
        self.metrics.keys_fetched += len(keys)
        if pool.sender is Role.SLAVE:
            stored = await pool.put(keys)  # we receive on this lane: hold the keys before announcing them
            accepted = await self._announce(pool.sender, stored)
            rejected = [] if accepted is None else sorted(set(stored) - set(accepted))
            await pool.discard(rejected)
            stored_count = len(stored) - len(rejected)
        else:
            accepted = await self._announce(pool.sender, [key.key_id for key in keys])
            stored_count = len(await pool.put(_only(keys, accepted or [])))
        self.metrics.keys_stored += stored_count
        self.metrics.keys_lost += len(keys) - stored_count
        return stored_count

    async def _announce(self, sender: Role, key_ids: Sequence[str]) -> list[str] | None:
        """The key_IDs the peer stored (only among those offered), or None if the outcome is unknown."""
        if not key_ids:
            return []
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that arrives
            # as the announcement completes, and the filler task would then never stop.
            async with asyncio.timeout(self._settings.announce_timeout_s):
                accepted = await self._announcer.announce(self.link_id, sender, key_ids)
        except Exception as exc:  # any transport failure: the filler must keep running
            self.metrics.announce_errors += 1
            log.warning("link %s: announcing %d keys failed: %r", self.link_id, len(key_ids), exc)
            return None
        offered = set(key_ids)
        return [key_id for key_id in accepted if key_id in offered]

    def _report_states(self, levels: Mapping[Role, int]) -> None:
        """Log lane state changes: the low-watermark alarm fires here, before the lane runs dry."""
        for role, level in levels.items():
            pool = self._pools[role]
            state = pool.watermarks.state(level)
            if self._states.get(role, PoolState.OK) is not state:
                logger = log.info if state is PoolState.OK else log.warning
                logger("QKD pool %s is %s (level %d, low %d)", pool.name, state, level, pool.watermarks.low)
            self._states[role] = state


def _only(keys: Sequence[Key], key_ids: Sequence[str]) -> list[Key]:
    wanted = set(key_ids)
    return [key for key in keys if key.key_id in wanted]
