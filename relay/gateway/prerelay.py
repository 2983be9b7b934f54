"""Keeps the ready pools of the SAE pairs that use them topped up, so enc_keys is served without a relay.

Which pairs and how full comes from :class:`relay.gateway.demand.DemandTracker`: pairs that asked recently
or that the topology pins, each with a target level sized by its rate within the gateway's budgets; an
idle pair is never visited. Each round tops up every kept pair below its target with up to
``prerelay_batch`` keys relayed concurrently; a key enters the ready pool only after the slave's gateway
confirmed storing it. Pre-relay must never compete harder for scarce QKD key than the on-demand requests
it exists to spare, so failures (a link down, a lane out of QKD key: pre-relay never degrades a hop)
pause every pair towards the same gateway, since they share the route: :class:`DestinationPace` keeps,
per destination gateway, how many keys a pair may send this round and when the destination may be tried
again. A destination starts with a single key per round (a gateway starts before its QKD lanes hold key)
and its batch doubles with each round that got through. A round with no key through doubles the wait
(bounded by ``MAX_BACKOFF_S``) and leaves a single key as the next probe; a probe that gets through doubles
the batch again, so a lane that holds key again is back at full speed within a few rounds of the bounded
wait.

With several replicas of the gateway, each pair is topped up by one of them at a time: a replica visits a
pair only while it holds the pair's lease (:class:`relay.pool.leases.Lease`, taken or extended at each
visit, released when the pair is no longer kept or pre-relay stops), so whichever replica asks first after
a holder died takes the pair over within the lease's time to live. The lease only spares duplicate work;
two replicas topping up one pair at once would merely overfill its ready pool a little.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from relay.aio import repeat_until_cancelled
from relay.domain import Key
from relay.gateway.demand import DemandTracker
from relay.gateway.errors import RelayFailed
from relay.gateway.relay_engine import GatewayPath, RelayEngine, keys_by_path, new_key
from relay.gateway.relay_events import RelayOrigin
from relay.gateway.voiding import Voiding
from relay.pool import PoolError, PoolUnavailable, RelayedKeyStore
from relay.pool.leases import RELEASE_TIMEOUT_S, Lease

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5  # after a round in which no key got through to a destination
MAX_BACKOFF_S = 4.0  # the longest a destination waits: a lane that refilled is probed again within this


@dataclass
class PrerelayMetrics:
    rounds: int = 0
    keys_prerelayed: int = 0
    failures: int = 0  # pair rounds that failed (each one waits, then retries)


@dataclass(frozen=True)
class Waiting:
    """A destination gateway pre-relay is backing off from, and why."""

    destination: str
    retry_in_s: float
    reason: str


class DestinationPace:
    """How fast pre-relay may send towards one destination gateway: a batch size and a wait after failures."""

    def __init__(self, batch: int) -> None:
        self._full_batch = batch
        self.batch = 1  # slow start: a probe first, full batches once keys get through
        self.retry_at = 0.0  # monotonic time before which the destination is not tried
        self.dry_rounds = 0  # consecutive rounds in which no key got through
        self.reason = ""

    def ready(self, now: float) -> bool:
        return now >= self.retry_at

    def passed(self) -> bool:
        """Every key of a round got through: grow the batch back. True when this ends a dry spell."""
        recovered = self.dry_rounds > 0
        self.batch = min(self._full_batch, self.batch * 2)
        self.dry_rounds = 0
        self.reason = ""
        return recovered

    def failed(self, now: float, relayed: int, reason: str) -> float:
        """Some keys of a round failed; returns how long the destination now waits.

        If some got through, the lane holds a little key: send that many next time, after the shortest
        wait. If none did, send a single key as a probe after a wait that doubles each time, up to the bound.
        """
        self.reason = reason
        if relayed:
            self.dry_rounds = 0
            self.batch = relayed
            wait = FIRST_BACKOFF_S
        else:
            self.dry_rounds += 1
            self.batch = 1
            wait = min(FIRST_BACKOFF_S * 2 ** (self.dry_rounds - 1), MAX_BACKOFF_S)
        self.retry_at = now + wait
        return wait


class Prerelay:
    def __init__(
        self,
        engine: RelayEngine,
        voiding: Voiding,
        store: RelayedKeyStore,
        demand: DemandTracker,
        homes: Mapping[str, str],
        lease_for: Callable[[str, str], Lease],
        *,
        key_size_bytes: int,
        batch: int,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``homes`` maps each slave SAE to its gateway: the destination whose route its pair shares;
        ``lease_for(master, slave)`` makes this replica's lease on a pair."""
        self.metrics = PrerelayMetrics()
        self._engine = engine
        self._voiding = voiding
        self._store = store
        self.demand = demand
        self._homes = homes
        self._key_size = key_size_bytes
        self._batch = batch
        self._interval_s = interval_s
        self._clock = clock
        self._paces: dict[str, DestinationPace] = {}  # per destination gateway, made when a pair first needs it
        self._lease_for = lease_for
        self._leases: dict[tuple[str, str], Lease] = {}  # of the pairs kept when last visited

    async def run(self) -> None:
        """Top up forever; cancel the task to stop (the pairs' leases are then released)."""
        try:
            await repeat_until_cancelled(self.fill_once, self._interval_s)
        finally:
            with contextlib.suppress(TimeoutError):  # a Redis that does not answer lets the leases run out
                async with asyncio.timeout(RELEASE_TIMEOUT_S):
                    await self._release(list(self._leases))

    async def fill_once(self) -> int:
        """One round over the pairs kept now that this replica holds the lease of; returns how many keys
        entered ready pools."""
        self.metrics.rounds += 1
        targets = await self.demand.targets()
        await self._release([pair for pair in self._leases if pair not in targets])
        added = 0
        for pair, target in targets.items():  # one at a time: a burst of sealing would stall the SAEs' requests
            if await self._leased(pair):
                added += await self._top_up(pair, target)
        return added

    def waiting(self) -> list[Waiting]:
        """The destinations pre-relay is backing off from right now."""
        now = self._clock()
        return [
            Waiting(destination, round(pace.retry_at - now, 3), pace.reason)
            for destination, pace in sorted(self._paces.items())
            if not pace.ready(now)
        ]

    async def _leased(self, pair: tuple[str, str]) -> bool:
        """Whether this replica holds the pair's lease now (taking it if free, extending it if ours)."""
        lease = self._leases.get(pair)
        if lease is None:
            lease = self._leases[pair] = self._lease_for(*pair)
        try:
            return await lease.try_acquire()
        except PoolUnavailable:  # the round's storage calls fail the same way and pace the destination
            return False

    async def _release(self, pairs: list[tuple[str, str]]) -> None:
        """Hand back the leases of pairs no longer visited, so another replica need not wait them out."""
        for pair in pairs:
            lease = self._leases.pop(pair)
            if lease.held:
                with contextlib.suppress(PoolUnavailable):
                    await lease.release()

    async def _top_up(self, pair: tuple[str, str], target: int) -> int:
        """Relay what the pair lacks below ``target`` (at most what its destination's pace allows); keys that
        made it are kept even if others failed, since each one already spent QKD key on every hop."""
        pace = self._pace(pair)
        if not pace.ready(self._clock()):
            return 0
        master, slave = pair
        try:
            missing = max(0, target - await self._store.ready_level(master, slave))
        except PoolError as exc:
            return self._failed(pair, pace, 0, exc)
        if missing == 0:
            return 0
        keys = [new_key(self._key_size) for _ in range(min(missing, pace.batch))]
        outcomes = await asyncio.gather(
            *(self._engine.relay_key(master, slave, key, origin=RelayOrigin.PRERELAY) for key in keys),
            return_exceptions=True,
        )
        relayed = [(key, path) for key, path in zip(keys, outcomes, strict=True) if not isinstance(path, BaseException)]
        failure = next((outcome for outcome in outcomes if isinstance(outcome, BaseException)), None)
        if relayed:
            try:
                stored = await self._store.put_ready(master, slave, [key for key, _ in relayed])
            except PoolError as exc:
                await self._void_unreleased(master, slave, relayed)
                return self._failed(pair, pace, 0, exc)
            self.metrics.keys_prerelayed += len(stored)
        if failure is None:
            if pace.passed():
                log.info("pre-relay towards %s resumed (%s -> %s got its keys through)", self._homes[pair[1]], *pair)
            return len(relayed)
        if not isinstance(failure, (RelayFailed, PoolError)):
            raise failure
        return self._failed(pair, pace, len(relayed), failure)

    def _pace(self, pair: tuple[str, str]) -> DestinationPace:
        destination = self._homes[pair[1]]
        pace = self._paces.get(destination)
        if pace is None:
            pace = self._paces[destination] = DestinationPace(self._batch)
        return pace

    async def _void_unreleased(self, master: str, slave: str, relayed: list[tuple[Key, GatewayPath]]) -> None:
        """After a failed ``put_ready`` some keys may be ready after all (the write may have happened) and even
        taken already: void at the slave's gateway, each along the path it took, only those now certain
        never to reach the master."""
        try:
            unreleased = set(await self._store.withdraw_ready(master, slave, [key.key_id for key, _ in relayed]))
        except PoolError as exc:
            log.warning("%d pre-relayed keys of %s -> %s left to expire: %s", len(relayed), master, slave, exc)
            return
        for path, key_ids in keys_by_path((key, path) for key, path in relayed if key.key_id in unreleased).items():
            self._voiding.void_later(master, slave, key_ids, path)

    def _failed(self, pair: tuple[str, str], pace: DestinationPace, relayed: int, exc: Exception) -> int:
        """Pause the pair's destination: a route that cannot relay must not keep claiming scarce QKD key."""
        wait = pace.failed(self._clock(), relayed, str(exc))
        self.metrics.failures += 1
        log.info(
            "pre-relay towards %s waits %.1f s (%s -> %s: %d relayed, then %s)",
            self._homes[pair[1]],
            wait,
            *pair,
            relayed,
            exc,
        )
        return relayed
