"""A sealed, expiring, single-use key store in one hash slot: the building block of every pool.

QKD pool lanes, ready pools and keys waiting for slaves differ only in how keys are taken (oldest first,
or by key_ID for a given owner), so they share this class and its scripts. Values are sealed with the
node's :class:`StorageCipher` before they leave the process; the associated data is the key's Redis name
plus its owner and, for a relayed key, the path it came along, so a blob moved to another key_ID, store
or slave, or given another path, no longer opens. The path is stored in clear beside the blob (gateway
IDs, no secret) because the void script compares it inside Redis.

Keys taken by key_ID can also be *reserved* first (:meth:`SealedStore.reserve_ids`) when the taker still
has to put them on the wire and may find its caller gone: the :class:`Reservation` is then committed
(the keys are retired) or released (they are deliverable again). One that is neither, because the process
died, runs out into a tombstone: at-most-once always wins over availability. Reservations are for stores
taken by key_ID; ``take_oldest`` does not look for them.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from relay.crypto.at_rest import StorageCipher
from relay.crypto.errors import AtRestError
from relay.domain import Key, check_key_id
from relay.pool.connection import RedisBackend
from relay.pool.errors import StoredKeyCorrupted
from relay.pool.keys import StoreKeys
from relay.pool.scripts import Script

MAX_BATCH = 1024  # keys per script call; keeps every call short and well inside Lua's stack limits


@dataclass(frozen=True)
class Lifetimes:
    """How long keys live, and how long their key_IDs stay tombstoned after use or expiry.

    A foreign key_ID's tombstone lives ``retired_ttl_s``: it must outlive any copy of the key elsewhere
    (the peer's pool, a message in flight) so a replayed key_ID is refused rather than served; hence at
    least twice ``ttl_s``. With an ``id_window_s``, key_IDs that carry their creation time (UUIDv7, see
    :mod:`relay.pool.scripts` for the argument) are refused once older than the window, or when stamped
    more than ``clock_skew_s`` ahead, and their tombstones end when the window does: what such keys cost
    after use is bounded by the window, not by a day of traffic. ``id_window_s = 0``: every key_ID is
    foreign (QKD pools, whose key_IDs come from the vendor KMS).
    """

    ttl_s: float
    retired_ttl_s: float
    id_window_s: float = 0.0
    clock_skew_s: float = 0.0

    def __post_init__(self) -> None:
        if self.ttl_s <= 0 or self.retired_ttl_s < 2 * self.ttl_s:
            raise ValueError("ttl_s must be positive and retired_ttl_s at least twice ttl_s")
        if self.id_window_s < 0 or self.clock_skew_s < 0:
            raise ValueError("id_window_s and clock_skew_s must not be negative")

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.ttl_s * 1000))

    @property
    def retired_ttl_ms(self) -> int:
        return max(1, round(self.retired_ttl_s * 1000))

    @property
    def script_arguments(self) -> list[int]:
        """Tombstone lifetime, ID window and skew margin in ms: the store scripts' ``ARGV[2..4]``."""
        window_ms = max(1, round(self.id_window_s * 1000)) if self.id_window_s else 0
        return [self.retired_ttl_ms, window_ms, round(self.clock_skew_s * 1000)]


class Verdict(StrEnum):
    OK = "ok"
    RETIRED = "retired"  # taken or expired before
    MISSING = "missing"  # never stored here (or its material vanished)
    DENIED = "denied"  # stored for another owner
    RESERVED = "reserved"  # being handed out by another call right now (it may yet be released)


@dataclass(frozen=True)
class TakeOutcome:
    """Either every requested key (``keys``), or nothing and a verdict per requested key_ID."""

    keys: tuple[Key, ...] = ()
    verdicts: dict[str, Verdict] | None = None
    reservation: Reservation | None = None  # set by ``reserve_ids`` when it reserved every key

    def refused(self, verdict: Verdict) -> list[str]:
        return [key_id for key_id, v in (self.verdicts or {}).items() if v is verdict]


@dataclass(frozen=True)
class VoidOutcome:
    """What a void did: ``voided`` were live and are withdrawn; ``tombstoned`` were named but not present,
    and can no longer be stored. Neither list holds a key that was handed out."""

    voided: list[str]
    tombstoned: list[str]


@dataclass(frozen=True)
class Reservation:
    """Keys set aside for one taker: :meth:`commit` once they are on the wire, :meth:`release` if not."""

    keys: tuple[Key, ...]
    store: SealedStore
    token: str

    @property
    def key_ids(self) -> list[str]:
        return [key.key_id for key in self.keys]

    async def commit(self) -> None:
        """The keys are delivered: tombstone them (also if the reservation has run out meanwhile)."""
        await self.store.retire(self.key_ids)

    async def release(self) -> int:
        """Nothing was delivered: the keys become deliverable again; returns how many were given back.

        Keys whose reservation has run out stay tombstoned (fewer than ``len(keys)`` given back).
        """
        return int(await self.store.release(self.key_ids, self.token))


class SealedStore:
    def __init__(self, backend: RedisBackend, cipher: StorageCipher, names: StoreKeys, lifetimes: Lifetimes) -> None:
        self._backend = backend
        self._cipher = cipher
        self.names = names
        self.lifetimes = lifetimes

    async def put(self, keys: Sequence[Key], owner: str = "", path: str = "") -> list[str]:
        """Store keys for ``owner``, relayed along ``path`` (an opaque label, compared by :meth:`void`);
        returns the key_IDs stored (present, tombstoned or out-of-window ones are skipped)."""
        if not keys:
            return []
        _check_batch([key.key_id for key in keys])
        args: list[str | bytes | int] = [owner, path]
        for key in keys:
            args += [key.key_id, self._cipher.seal(self._aad(key.key_id, owner, path), key.key)]
        stored = await self._run(Script.PUT, self.lifetimes.ttl_ms, *args)
        return [key_id.decode() for key_id in stored]

    async def take_oldest(self, n: int) -> list[Key]:
        """The ``n`` keys closest to expiry, retired atomically; ``[]`` if fewer than ``n`` are live."""
        if not 1 <= n <= MAX_BATCH:
            raise ValueError(f"can take 1 to {MAX_BATCH} keys at once")
        flat = await self._run(Script.TAKE_OLDEST, n)
        return [self._open(flat[i].decode(), flat[i + 1], "", b"") for i in range(0, len(flat), 2)]

    async def take_ids(self, key_ids: Sequence[str], owner: str = "") -> TakeOutcome:
        """All requested keys of ``owner``, retired atomically, or none with the reason per key_ID."""
        _check_ids(key_ids)
        status, *rest = await self._run(Script.TAKE_IDS, owner, *key_ids)
        if status == b"refused":
            return TakeOutcome(verdicts={k: Verdict(v.decode()) for k, v in zip(key_ids, rest, strict=True)})
        return TakeOutcome(keys=self._open_all(key_ids, rest, owner))

    async def reserve_ids(self, key_ids: Sequence[str], owner: str, hold_ms: int) -> TakeOutcome:
        """Like :meth:`take_ids`, but the keys are reserved for ``hold_ms``, not retired.

        Until committed or released, no call hands them out or voids them; if neither happens in time the
        keys become tombstones. The outcome's ``reservation`` settles them.
        """
        _check_ids(key_ids)
        if hold_ms < 1:
            raise ValueError("a reservation must last at least 1 ms")
        token = secrets.token_hex(16)
        status, *rest = await self._run(Script.RESERVE_IDS, owner, token, hold_ms, *key_ids)
        if status == b"refused":
            return TakeOutcome(verdicts={k: Verdict(v.decode()) for k, v in zip(key_ids, rest, strict=True)})
        keys = self._open_all(key_ids, rest, owner)
        return TakeOutcome(keys=keys, reservation=Reservation(keys, self, token))

    async def release(self, key_ids: Sequence[str], token: str) -> int:
        """Give back what reservation ``token`` still holds among ``key_ids``; returns how many."""
        _check_batch(key_ids)
        return int(await self._run(Script.RELEASE, token, *key_ids))

    async def retire(self, key_ids: Sequence[str]) -> int:
        """Tombstone key_IDs whether or not they are stored; returns how many were live."""
        if not key_ids:
            return 0
        _check_batch(key_ids)
        return int(await self._run(Script.RETIRE, *key_ids))

    async def void(self, owner: str, key_ids: Sequence[str], path: str = "") -> VoidOutcome:
        """Retire the live, unreserved keys of ``owner`` stored along ``path`` among ``key_ids`` (all of them
        if empty), and tombstone the named key_IDs not present at all."""
        _check_batch(key_ids)
        voided, tombstoned = await self._run(Script.VOID, owner, path, *key_ids)
        return VoidOutcome([k.decode() for k in voided], [k.decode() for k in tombstoned])

    async def level(self) -> int:
        return int(await self._run(Script.LEVEL))

    async def _run(self, script: Script, *args: str | bytes | int) -> Any:
        keys = [self.names.index, self.names.retired]
        return await self._backend.run(
            script, keys, [self.names.material_prefix, *self.lifetimes.script_arguments, *args]
        )

    def _aad(self, key_id: str, owner: str, path: str) -> str:
        """The associated data; a key stored without a path keeps the name-and-owner form it always had."""
        aad = f"{self.names.material(key_id)}\x00{owner}"
        return f"{aad}\x00{path}" if path else aad

    def _open_all(self, key_ids: Sequence[str], flat: Sequence[bytes | None], owner: str) -> tuple[Key, ...]:
        """Open a ``blob1, path1, blob2, path2, ...`` answer, in ``key_ids`` order."""
        return tuple(self._open(key_id, flat[2 * i], owner, flat[2 * i + 1] or b"") for i, key_id in enumerate(key_ids))

    def _open(self, key_id: str, blob: bytes | None, owner: str, path: bytes) -> Key:
        """A corrupted key is never handed out: taken ones are retired already, reserved ones run out."""
        if blob is None:
            raise StoredKeyCorrupted(f"material of key_ID {key_id} in {self.names.index} is missing")
        try:
            return Key(key_id, self._cipher.open(self._aad(key_id, owner, path.decode()), blob))
        except AtRestError as exc:
            raise StoredKeyCorrupted(f"key_ID {key_id} in {self.names.index}: {exc}") from None


def _check_ids(key_ids: Sequence[str]) -> None:
    _check_batch(key_ids)
    if not key_ids or len(set(key_ids)) != len(key_ids):
        raise ValueError("key_IDs must be non-empty and distinct")


def _check_batch(key_ids: Sequence[str]) -> None:
    if len(key_ids) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} keys per call")
    for key_id in key_ids:
        check_key_id(key_id)
