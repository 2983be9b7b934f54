"""Keeps each SAE pair's ready pool between its watermarks, so enc_keys is served without a relay.

Each round tops up every pair below its high watermark with up to ``prerelay_batch`` keys relayed
concurrently; a key enters the ready pool only after the slave's gateway confirmed storing it. Failures
(a link down, a ``require-qkd`` link out of QKD key) are counted and retried next round: pre-relay must
never compete harder for scarce QKD key than the on-demand requests it exists to spare, so it backs off
while a pair keeps failing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from relay.aio import repeat_until_cancelled
from relay.gateway.errors import RelayFailed
from relay.gateway.relay_engine import RelayEngine, new_key
from relay.gateway.voiding import Voiding
from relay.pool import PoolError, RelayedKeyStore

log = logging.getLogger(__name__)

MAX_BACKOFF_ROUNDS = 32


@dataclass
class PrerelayMetrics:
    rounds: int = 0
    keys_prerelayed: int = 0
    failures: int = 0


class Prerelay:
    def __init__(
        self,
        engine: RelayEngine,
        voiding: Voiding,
        store: RelayedKeyStore,
        pairs: Sequence[tuple[str, str]],
        *,
        key_size_bytes: int,
        batch: int,
        interval_s: float,
    ) -> None:
        self.metrics = PrerelayMetrics()
        self._engine = engine
        self._voiding = voiding
        self._store = store
        self._pairs = list(pairs)
        self._key_size = key_size_bytes
        self._batch = batch
        self._interval_s = interval_s
        self._skip: dict[tuple[str, str], int] = {}  # rounds a failing pair sits out
        self._failures: dict[tuple[str, str], int] = {}

    async def run(self) -> None:
        """Top up forever; cancel the task to stop."""
        await repeat_until_cancelled(self.fill_once, self._interval_s)

    async def fill_once(self) -> int:
        """One round over every pair; returns how many keys entered ready pools."""
        self.metrics.rounds += 1
        added = 0
        for pair in self._pairs:  # one pair at a time: a burst of sealing would stall the SAEs' requests
            added += await self._top_up(pair)
        return added

    async def _top_up(self, pair: tuple[str, str]) -> int:
        """Relay what the pair lacks (at most one batch); keys that made it are kept even if others failed,
        since each one already spent QKD key on every hop."""
        if self._skip.get(pair, 0) > 0:
            self._skip[pair] -= 1
            return 0
        master, slave = pair
        try:
            missing = self._store.settings.ready_watermarks.deficit(await self._store.ready_level(master, slave))
        except PoolError as exc:
            return self._failed(pair, exc)
        if missing == 0:
            return 0
        keys = [new_key(self._key_size) for _ in range(min(missing, self._batch))]
        outcomes = await asyncio.gather(
            *(self._engine.relay_key(master, slave, key, no_degrade=True) for key in keys), return_exceptions=True
        )
        relayed = [key for key, outcome in zip(keys, outcomes, strict=True) if outcome is None]
        failure = next((outcome for outcome in outcomes if isinstance(outcome, BaseException)), None)
        if relayed:
            try:
                stored = await self._store.put_ready(master, slave, relayed)
            except PoolError as exc:
                self._voiding.void_later(master, slave, [key.key_id for key in relayed])  # never reach the master
                return self._failed(pair, exc)
            self.metrics.keys_prerelayed += len(stored)
        if failure is not None:
            if not isinstance(failure, (RelayFailed, PoolError)):
                raise failure
            self._failed(pair, failure)
        else:
            self._failures.pop(pair, None)
        return len(relayed)

    def _failed(self, pair: tuple[str, str], exc: Exception) -> int:
        """Back off exponentially: a pair that cannot relay must not keep claiming scarce QKD key."""
        failures = self._failures[pair] = self._failures.get(pair, 0) + 1
        self._skip[pair] = min(2**failures, MAX_BACKOFF_ROUNDS)
        self.metrics.failures += 1
        log.info("pre-relay %s -> %s paused for %d rounds: %s", *pair, self._skip[pair], exc)
        return 0
