"""The encapsulation keyring every replica of a gateway shares: entries in Redis, a process copy here.

Peers fetch our encapsulation key from any replica and seal frames that any replica may receive, so the
ring lives in the gateway's Redis (:class:`relay.pool.ek_store.EncapsulationKeyStore`, sealed at rest)
and each replica holds a copy in a :class:`relay.crypto.keyring.KeyRing`, which keeps the ring's
invariants locally: at most two keys, none past its not_after, every dk it lets go of destroyed. The copy
is loaded at start (:meth:`SharedKeyRing.start`), refreshed periodically (:meth:`SharedKeyRing.maintain`)
and reloaded once when a frame names a key it does not hold (:meth:`SharedKeyRing.ensure_loaded`), so a
rotation by one replica is seen by another at the first frame sealed to the new key.

Rotation is one atomic publish in Redis: a replica publishes a new key only if no stored key lives
beyond half a lifetime from now, so replicas rotating at once publish one key between them (the others
destroy theirs), and Redis keeps the two newest. Only :meth:`SharedKeyRing.rotate` publishes regardless
(an operator's or a test's forced rotation); the ring still ends with one current and one previous key.
"""

from __future__ import annotations

import asyncio
import logging

from relay.crypto import Clock, EncapsulationKeyAnnouncement, GatewayIdentity, KemProvider, KeyRing, RingEntry, Suite
from relay.crypto.kem import DecapsulationKey
from relay.crypto.keyring import DEFAULT_LIFETIME_MS
from relay.pool import StoredKeyCorrupted
from relay.pool.ek_store import EncapsulationKeyStore, StoredEncapsulationKey

log = logging.getLogger(__name__)

MAX_REFRESH_S = 5.0  # how stale a replica's copy may get between frames naming unknown keys


class SharedKeyRing:
    """This gateway's encapsulation keys as all its replicas hold them; :class:`relay.crypto.frame.RecipientKeys`."""

    def __init__(
        self,
        identity: GatewayIdentity,
        store: EncapsulationKeyStore,
        *,
        kem: KemProvider,
        clock: Clock,
        lifetime_ms: int = DEFAULT_LIFETIME_MS,
    ) -> None:
        self._ring = KeyRing(identity, kem=kem, clock=clock, lifetime_ms=lifetime_ms, entries=())
        self._store = store
        self._kem = kem
        self._clock = clock
        self._loading = asyncio.Lock()
        self._loads_started = 0

    @property
    def gateway_id(self) -> str:
        return self._ring.gateway_id

    @property
    def suite(self) -> Suite:
        return self._ring.suite

    @property
    def lifetime_ms(self) -> int:
        return self._ring.lifetime_ms

    @property
    def refresh_s(self) -> float:
        """How often :meth:`maintain` should run: often enough to rotate well before half a lifetime is over."""
        return min(MAX_REFRESH_S, self.lifetime_ms / 8000)

    async def start(self) -> None:
        """Load the ring, and publish a first key if Redis holds none due to stay."""
        await self.maintain()

    async def maintain(self) -> None:
        """One periodic round: reload the copy, then rotate if the current key is past half its lifetime."""
        await self.refresh()
        held = self._ring.held()
        if not held or held[0].key.not_after_ms - self._clock() < self.lifetime_ms / 2:
            await self._publish(due=True)

    async def rotate(self) -> EncapsulationKeyAnnouncement:
        """Publish a new current key whatever the ring holds; returns the current key afterwards."""
        await self.refresh()  # so the new key expires after every key held (see KeyRing.mint)
        await self._publish(due=False)
        return await self.current_announcement()

    async def current_announcement(self) -> EncapsulationKeyAnnouncement:
        """The current key, as peers fetch it (EncapsulationKeys); reloads or publishes if none is held."""
        if not self._ring.held():
            await self.maintain()
        held = self._ring.held()
        if not held:  # our own clock is past every key just loaded or published: a broken clock
            raise RuntimeError("no unexpired encapsulation key after a rotation; check the gateway's clock")
        return held[0].announcement

    def decapsulation_key(self, ek_id: bytes, ek_hash: bytes) -> DecapsulationKey:
        """From the process copy; call :meth:`ensure_loaded` first so another replica's new key is found."""
        return self._ring.decapsulation_key(ek_id, ek_hash)

    async def ensure_loaded(self, ek_id: bytes) -> None:
        """Reload once if ``ek_id`` is not held: another replica may have published it since our last load."""
        if not any(entry.key.ek_id == ek_id for entry in self._ring.held()):
            await self.refresh()

    async def refresh(self, minted: RingEntry | None = None) -> None:
        """Hold what Redis holds. ``minted``: the entry just published, reused rather than derived again; its
        dk is destroyed unless the ring holds it afterwards."""
        try:
            await self._reload(minted)
        finally:
            if minted is not None and not any(entry is minted for entry in self._ring.held()):
                minted.decapsulation_key.destroy()

    async def _reload(self, minted: RingEntry | None) -> None:
        """Callers that arrive while a load runs wait for one that starts after them (a load begun earlier
        may predate the publish they need to see) and share it. A load that fails keeps the copy in hand."""
        asked = self._loads_started
        async with self._loading:
            if self._loads_started > asked and minted is None:
                return  # a load that started after we asked has just completed
            self._loads_started += 1
            entries: list[RingEntry] = []
            try:
                for stored in await self._store.load(self._clock()):
                    entries.append(self._entry(stored, minted))
            except BaseException:
                self._ring.hold([*self._ring.held(), *entries])  # the copy in hand first; the rest destroyed
                raise
            self._ring.hold(entries)

    async def _publish(self, *, due: bool) -> None:
        """Mint a key and publish it (if rotation is still due in Redis, when ``due``); then reload."""
        minted = self._ring.mint()
        seed = minted.decapsulation_key.seed()
        stored = StoredEncapsulationKey(minted.key.ek_id, minted.key.not_after_ms, minted.announcement.to_bytes(), seed)
        now = self._clock()
        try:
            published = await self._store.publish(
                stored, now_ms=now, unless_held_until=now + self.lifetime_ms // 2 if due else None
            )
        except BaseException:
            minted.decapsulation_key.destroy()
            raise
        finally:
            seed[:] = bytes(len(seed))
        if published:
            log.info("encapsulation key %s published", minted.key.ek_id.hex(), extra={"gateway": self.gateway_id})
        await self.refresh(minted)

    def _entry(self, stored: StoredEncapsulationKey, minted: RingEntry | None) -> RingEntry:
        """The held (or just minted) entry of a stored ek_id, else one derived from its seed, which is wiped."""
        try:
            candidates = [*self._ring.held(), *([] if minted is None else [minted])]
            for entry in candidates:
                if entry.key.ek_id == stored.ek_id:
                    return entry
            announcement = EncapsulationKeyAnnouncement.from_bytes(stored.announcement)
            dk = self._kem.from_seed(self.suite.kem, stored.seed)
        finally:
            stored.seed[:] = bytes(len(stored.seed))
        key = announcement.key
        if key.ek_id != stored.ek_id or key.encapsulation_key != dk.encapsulation_key or key.suite is not self.suite:
            dk.destroy()
            raise StoredKeyCorrupted(f"stored encapsulation key {stored.ek_id.hex()} does not match its entry")
        return RingEntry(announcement, dk)
