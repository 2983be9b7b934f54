"""The QKD key pool of one link, as two lanes: one per sending direction.

Both gateways of a link hold the same keys under the same key_IDs. A hop's sender takes any key and names
its key_ID in the hop header; the receiver takes that very key_ID. If both directions drew from one set,
two hops crossing in opposite directions could pick the same key_ID, and one of them would find it used.
So each link has two lanes, named by the QKD role of the gateway that sends with them: a gateway sends
with ``pools[my_role].take(n)`` and receives with ``pools[my_role.peer].take_named(key_ids)``.

Taking is atomic and leaves a tombstone, so a key_ID is handed out once, ever, across processes and
Redis restarts (with AOF), until its tombstone expires long after the key itself would have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from relay.crypto.at_rest import StorageCipher
from relay.domain import Key
from relay.pool.connection import RedisBackend
from relay.pool.errors import KeyAlreadyUsed, KeyNotFound, PoolEmpty
from relay.pool.keys import Keyspace
from relay.pool.metrics import QkdPoolMetrics
from relay.pool.store import Lifetimes, SealedStore, Verdict
from relay.pool.watermarks import Watermarks


class Role(StrEnum):
    """A gateway's ETSI 014 role on a QKD link: the master calls enc_keys, the slave dec_keys."""

    MASTER = "master"
    SLAVE = "slave"

    @property
    def peer(self) -> Role:
        return Role.SLAVE if self is Role.MASTER else Role.MASTER


@dataclass(frozen=True)
class QkdPoolSettings:
    """Defaults: keys live an hour in the pool, key_IDs stay tombstoned for a day."""

    lifetimes: Lifetimes = field(default_factory=lambda: Lifetimes(ttl_s=3600, retired_ttl_s=86_400))
    watermarks: Watermarks = field(default_factory=Watermarks)
    key_size_bits: int = 256


class QkdPool:
    """One lane: the keys the ``sender`` side of ``link_id`` encrypts with."""

    def __init__(
        self,
        backend: RedisBackend,
        cipher: StorageCipher,
        keyspace: Keyspace,
        link_id: str,
        sender: Role,
        settings: QkdPoolSettings,
    ) -> None:
        self.link_id = link_id
        self.sender = sender
        self.settings = settings
        self.metrics = QkdPoolMetrics()
        self._store = SealedStore(backend, cipher, keyspace.qkd_pool(link_id, sender), settings.lifetimes)

    @property
    def name(self) -> str:
        return f"qkd:{self.link_id}:{self.sender}-sends"

    @property
    def watermarks(self) -> Watermarks:
        return self.settings.watermarks

    async def put(self, keys: Sequence[Key]) -> list[str]:
        """Store keys fetched from the vendor KMS; returns the key_IDs stored (never-seen ones only)."""
        expected = self.settings.key_size_bits // 8
        wrong = [key.key_id for key in keys if len(key.key) != expected]
        if wrong:
            raise ValueError(f"{self.name} holds {self.settings.key_size_bits}-bit keys; wrong size: {wrong}")
        stored = await self._store.put(keys)
        self.metrics.stored += len(stored)
        self.metrics.refused += len(keys) - len(stored)
        return stored

    async def take(self, n: int) -> list[Key]:
        """The ``n`` keys closest to expiry, marked used; all or none: raises :class:`PoolEmpty` when fewer
        are left (a frame never gets part of what it needs, e.g. a partial one-time pad)."""
        taken = await self._store.take_oldest(n)
        if not taken:
            self.metrics.empty += 1
            raise PoolEmpty(f"QKD key pool {self.name} holds fewer than {n} keys")
        self.metrics.taken += n
        return taken

    async def take_named(self, key_ids: Sequence[str]) -> list[Key]:
        """The keys the peer named, in order, marked used; all or none. Raises :class:`KeyAlreadyUsed` or
        :class:`KeyNotFound` for the first key_ID that cannot be taken."""
        outcome = await self._store.take_ids(key_ids)
        if outcome.verdicts is None:
            self.metrics.taken += len(key_ids)
            return list(outcome.keys)
        self.metrics.not_found += 1
        for key_id in key_ids:
            if outcome.verdicts[key_id] is Verdict.RETIRED:
                raise KeyAlreadyUsed(self.name, key_id)
        missing = next(key_id for key_id in key_ids if outcome.verdicts[key_id] is not Verdict.OK)
        raise KeyNotFound(self.name, missing)

    async def discard(self, key_ids: Sequence[str]) -> None:
        """Retire keys the peer turned down, so this side never expects them to be used."""
        self.metrics.discarded += await self._store.retire(key_ids)

    async def level(self) -> int:
        return await self._store.level()


def link_pools(
    backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace, link_id: str, settings: QkdPoolSettings
) -> dict[Role, QkdPool]:
    """Both lanes of a link, keyed by the role that sends with them."""
    return {role: QkdPool(backend, cipher, keyspace, link_id, role, settings) for role in Role}
