"""Relayed keys: ready for a master SAE (pre-relayed), and waiting for a slave SAE (by key_ID).

Ready pools are per SAE pair on the master's gateway: ``take_ready`` hands out whole batches, oldest
first. Keys waiting for slaves live on the slave's gateway in one store per *master* (not per pair): the
014 dec_keys call names the master and the key_IDs, and only with every key of that master in one hash
slot can one atomic script tell "no such key" (400) from "exists, but not issued to you" (401).

Pre-relayed keys must expire at the master before the slave's copy does, or a master could be handed a
key its slave can no longer fetch: hence ``ready_ttl_s`` < ``waiting_ttl_s``, with the difference covering
the time from the slave-side store to the master-side store (the end-to-end ack).

A slave's keys are handed over in two steps (:meth:`RelayedKeyStore.reserve_for_slave`): reserved, then
committed once the answer is on the wire or released if the slave has gone before anything was written,
so a caller that gave up loses no key. ``reservation_ttl_s`` bounds how long a reservation may stay open;
one left open (the process died) ends as a tombstone, never delivered twice.

Each key waiting for a slave carries the path it was relayed along, and :meth:`RelayedKeyStore.void_for_slave`
withdraws only keys of the void's path (the caller has verified that path's origin signed the void), never
a reserved or delivered one; named key_IDs not present are tombstoned, so a late hop cannot store them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from relay.crypto.at_rest import StorageCipher
from relay.domain import Key
from relay.pool.connection import RedisBackend
from relay.pool.errors import KeysBeingDelivered, KeysNotIssuedToSlave, RelayedKeysNotFound
from relay.pool.keys import Keyspace
from relay.pool.metrics import RelayedStoreMetrics
from relay.pool.store import Lifetimes, Reservation, SealedStore, TakeOutcome, Verdict
from relay.pool.watermarks import Watermarks


@dataclass(frozen=True)
class RelayedStoreSettings:
    ready_ttl_s: float = 240.0
    waiting_ttl_s: float = 300.0
    retired_ttl_s: float = 86_400.0  # tombstones of foreign key_IDs only; ours (UUIDv7) end with id_window_s
    ready_watermarks: Watermarks = field(default_factory=lambda: Watermarks(low=4, high=32))
    reservation_ttl_s: float = 30.0  # reserve -> commit: writing one 014 answer; never past the key's own expiry
    clock_skew_s: float = 30.0  # between the gateway that minted a key_ID and this Redis

    def __post_init__(self) -> None:
        if not 0 < self.ready_ttl_s < self.waiting_ttl_s:
            raise ValueError("ready_ttl_s must be positive and shorter than waiting_ttl_s")
        if self.reservation_ttl_s <= 0:
            raise ValueError("reservation_ttl_s must be positive")
        Lifetimes(self.waiting_ttl_s, self.retired_ttl_s, clock_skew_s=self.clock_skew_s)  # validates both

    @property
    def id_window_s(self) -> float:
        """How long after its creation a UUIDv7 key_ID may still be stored (and stays tombstoned): the longest
        key lifetime here plus the skew margin, far beyond the seconds from minting to the last put."""
        return self.waiting_ttl_s + self.clock_skew_s

    @property
    def ready(self) -> Lifetimes:
        return Lifetimes(self.ready_ttl_s, self.retired_ttl_s, self.id_window_s, self.clock_skew_s)

    @property
    def waiting(self) -> Lifetimes:
        return Lifetimes(self.waiting_ttl_s, self.retired_ttl_s, self.id_window_s, self.clock_skew_s)

    @property
    def reservation_ttl_ms(self) -> int:
        return max(1, round(self.reservation_ttl_s * 1000))


@dataclass(frozen=True)
class SlaveReservation:
    """Keys reserved for one slave's dec_keys: :meth:`commit` once answered, :meth:`release` if it left."""

    reservation: Reservation
    metrics: RelayedStoreMetrics

    @property
    def keys(self) -> tuple[Key, ...]:
        return self.reservation.keys

    async def commit(self) -> None:
        await self.reservation.commit()
        self.metrics.delivered += len(self.keys)

    async def release(self) -> None:
        given_back = await self.reservation.release()
        self.metrics.released += given_back
        self.metrics.reservations_expired += len(self.keys) - given_back


@dataclass(frozen=True)
class ReadyPoolGauge:
    """The ready pool of one SAE pair, as seen by :func:`relay.pool.status.pool_status`."""

    store: RelayedKeyStore
    master_sae_id: str
    slave_sae_id: str

    @property
    def name(self) -> str:
        return f"ready:{self.master_sae_id}->{self.slave_sae_id}"

    @property
    def watermarks(self) -> Watermarks:
        return self.store.settings.ready_watermarks

    async def level(self) -> int:
        return await self.store.ready_level(self.master_sae_id, self.slave_sae_id)


def path_label(path: Sequence[str]) -> str:
    """The stored form of a path: JSON, so no two paths share a label whatever their IDs contain."""
    return json.dumps(list(path), separators=(",", ":")) if path else ""


class RelayedKeyStore:
    def __init__(
        self, backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace, settings: RelayedStoreSettings
    ) -> None:
        self.settings = settings
        self.metrics = RelayedStoreMetrics()
        self._backend = backend
        self._cipher = cipher
        self._keyspace = keyspace

    async def put_ready(self, master_sae_id: str, slave_sae_id: str, keys: Sequence[Key]) -> list[str]:
        """Store keys already relayed to the slave's gateway; returns the key_IDs stored."""
        stored = await self._ready(master_sae_id, slave_sae_id).put(keys)
        self.metrics.ready_stored += len(stored)
        return stored

    async def take_ready(self, master_sae_id: str, slave_sae_id: str, number: int) -> list[Key]:
        """``number`` ready keys, each handed out once; ``[]`` if fewer are ready (then relay on demand).

        All or nothing because an enc_keys answer is whole: a partial batch would still need a relay.
        """
        keys = await self._ready(master_sae_id, slave_sae_id).take_oldest(number)
        if keys:
            self.metrics.ready_taken += len(keys)
        else:
            self.metrics.ready_short += 1
        return keys

    async def ready_level(self, master_sae_id: str, slave_sae_id: str) -> int:
        return await self._ready(master_sae_id, slave_sae_id).level()

    def ready_gauge(self, master_sae_id: str, slave_sae_id: str) -> ReadyPoolGauge:
        return ReadyPoolGauge(self, master_sae_id, slave_sae_id)

    async def put_for_slave(
        self, master_sae_id: str, slave_sae_id: str, keys: Sequence[Key], *, path: Sequence[str] = ()
    ) -> list[str]:
        """Store keys relayed along ``path`` (gateway IDs, origin first; ``()`` for keys that travelled no
        path) for ``slave_sae_id``; returns the key_IDs stored. Only a void of that same path withdraws them.

        A key_ID already stored, delivered or voided is skipped, so a retried transfer can be confirmed
        again without ever making a delivered key available a second time, and a late hop cannot bring
        back a voided one.
        """
        stored = await self._waiting(master_sae_id).put(keys, owner=slave_sae_id, path=path_label(path))
        self.metrics.slave_stored += len(stored)
        self.metrics.slave_refused += len(keys) - len(stored)
        return stored

    async def reserve_for_slave(
        self, slave_sae_id: str, master_sae_id: str, key_ids: Sequence[str]
    ) -> SlaveReservation:
        """Every requested key, in request order, reserved for ``slave_sae_id`` until committed or released;
        or none. Committed keys are delivered exactly once.

        Raises :class:`RelayedKeysNotFound` if any key_ID is unknown, expired or already delivered, else
        :class:`KeysNotIssuedToSlave` if any belongs to another slave (checked in that order, as 014 does),
        else :class:`KeysBeingDelivered` if another call holds a reservation on any of them (it may yet
        release it).
        """
        store = self._waiting(master_sae_id)
        outcome = await store.reserve_ids(key_ids, slave_sae_id, self.settings.reservation_ttl_ms)
        self._raise_if_refused(outcome, slave_sae_id, master_sae_id, key_ids)
        assert outcome.reservation is not None
        return SlaveReservation(outcome.reservation, self.metrics)

    def _raise_if_refused(
        self, outcome: TakeOutcome, slave_sae_id: str, master_sae_id: str, key_ids: Sequence[str]
    ) -> None:
        """The 014 order: not found (400), then not issued to this slave (401), then in delivery (503)."""
        if outcome.verdicts is None:
            return
        not_found = outcome.refused(Verdict.MISSING) + outcome.refused(Verdict.RETIRED)
        if not_found:
            self.metrics.not_found += 1
            raise RelayedKeysNotFound(master_sae_id, [k for k in key_ids if k in not_found])
        denied = outcome.refused(Verdict.DENIED)
        if denied:
            self.metrics.unauthorized += 1
            raise KeysNotIssuedToSlave(slave_sae_id, denied)
        self.metrics.in_delivery += 1
        raise KeysBeingDelivered(master_sae_id, outcome.refused(Verdict.RESERVED))

    async def void_for_slave(
        self, master_sae_id: str, slave_sae_id: str, key_ids: Sequence[str], *, path: Sequence[str] = ()
    ) -> list[str]:
        """Withdraw keys relayed along ``path`` and not yet handed to ``slave_sae_id`` (every such key of the
        pair if ``key_ids`` is empty); a named key_ID not stored yet is tombstoned, so it never will be.

        Returns the key_IDs voided; the others were already delivered or being delivered, expired, stored
        along another path or for another slave, or never stored here.
        """
        outcome = await self._waiting(master_sae_id).void(slave_sae_id, key_ids, path_label(path))
        self.metrics.voided += len(outcome.voided)
        return outcome.voided

    async def withdraw_ready(self, master_sae_id: str, slave_sae_id: str, key_ids: Sequence[str]) -> list[str]:
        """Take keys out of the pair's ready pool before their slave copies are voided (every ready key if
        ``key_ids`` is empty). Returns the key_IDs that are now certain never to reach the master: those
        withdrawn and those never stored (now tombstoned); a key already taken is not among them.
        """
        outcome = await self._ready(master_sae_id, slave_sae_id).void("", key_ids)
        return outcome.voided + outcome.tombstoned

    def _ready(self, master_sae_id: str, slave_sae_id: str) -> SealedStore:
        names = self._keyspace.ready(master_sae_id, slave_sae_id)
        return SealedStore(self._backend, self._cipher, names, self.settings.ready)

    def _waiting(self, master_sae_id: str) -> SealedStore:
        names = self._keyspace.waiting_for_slaves(master_sae_id)
        return SealedStore(self._backend, self._cipher, names, self.settings.waiting)
