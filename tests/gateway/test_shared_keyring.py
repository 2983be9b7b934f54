"""Two replicas' encapsulation keyrings on one real Redis, with real ML-KEM and real frames: a frame sealed
to the key one replica announced opens at the other, a rotation is seen at the first frame that needs it,
concurrent rotations leave one current and one previous key, and expired keys are gone everywhere."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from relay.crypto.at_rest import StorageCipher
from relay.crypto.errors import KemError, UnknownEncapsulationKey
from relay.crypto.frame import FrameEntry, open_frame, seal_frame
from relay.crypto.header import HopMode, QkdUse
from relay.crypto.keyring import EncapsulationKey, EncapsulationKeyAnnouncement
from relay.crypto.replay import MemoryReplayGuard
from relay.gateway.shared_keyring import SharedKeyRing
from relay.pool import RedisBackend, RedisConfig
from relay.pool.ek_store import EncapsulationKeyStore
from tests.support.crypto_identities import KEM, Identities, ManualClock
from tests.support.redis_servers import RedisServer

LIFETIME_MS = 600_000
PREFIX = "t"


@dataclass
class Replicas:
    """Two replicas of gateway ``a-receiver`` (each its own Redis connection), a sender, one clock."""

    a: SharedKeyRing
    b: SharedKeyRing
    identities: Identities
    clock: ManualClock
    backend: RedisBackend
    store: EncapsulationKeyStore

    def verified(self, announcement: EncapsulationKeyAnnouncement) -> EncapsulationKey:
        return announcement.verify(self.identities.trust, self.clock())

    async def send(self, recipient: EncapsulationKey, receiver: SharedKeyRing) -> bytes:
        """Seal a key to ``recipient`` (as the sender fetched it) and open it at ``receiver``."""
        key = os.urandom(32)
        entry = FrameEntry(uuid.uuid4().bytes, 1, ("GW0", "GW1"), "SAE-A", "SAE-B", str(uuid.uuid4()), key)
        pending = seal_frame(
            [entry],
            recipient=recipient,
            identity=self.identities.by_id["a-sender"],
            mode=HopMode.PQC_ONLY,
            qkd_use=QkdUse.HKDF,
            qkd_key=None,
            pad_keys=[],
            kem=KEM,
            clock=self.clock,
        )
        await receiver.ensure_loaded(pending.message.header.ek_id)  # what HopProtection.open does first
        opened = await open_frame(
            pending.message,
            recipient=receiver,
            trust=self.identities.trust,
            mode=HopMode.PQC_ONLY,
            qkd_use=QkdUse.HKDF,
            replay=MemoryReplayGuard(self.clock),
            clock=self.clock,
            fetch_qkd_keys=_no_qkd_keys,
        )
        assert opened.keys == (key,)
        return key

    async def ring_in_redis(self) -> list[bytes]:
        return [entry.ek_id for entry in await self.store.load(self.clock())]


async def _no_qkd_keys(key_ids: object) -> list[bytes]:
    raise AssertionError("a pqc-only frame names no QKD key")


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> Identities:
    return Identities.create(tmp_path_factory.mktemp("identities"))


@pytest.fixture
async def replicas(private_redis: RedisServer, identities: Identities) -> AsyncIterator[Replicas]:
    cipher = StorageCipher(os.urandom(32))  # the gateway's storage key, one file for every replica
    clock = ManualClock()
    backends = [RedisBackend.connect(RedisConfig(private_redis.admin_url)) for _ in range(3)]
    rings = [
        SharedKeyRing(
            identities.by_id["a-receiver"],
            EncapsulationKeyStore(backend, cipher, PREFIX),
            kem=KEM,
            clock=clock,
            lifetime_ms=LIFETIME_MS,
        )
        for backend in backends[:2]
    ]
    try:
        yield Replicas(*rings, identities, clock, backends[2], EncapsulationKeyStore(backends[2], cipher, PREFIX))
    finally:
        for backend in backends:
            await backend.close()


async def test_a_frame_sealed_to_the_key_one_replica_announced_opens_at_the_other(replicas: Replicas) -> None:
    await replicas.a.start()  # the first replica publishes the gateway's first key
    await replicas.b.start()  # the second loads it
    from_a = replicas.verified(await replicas.a.current_announcement())
    assert replicas.verified(await replicas.b.current_announcement()) == from_a
    await replicas.send(from_a, replicas.b)
    await replicas.send(from_a, replicas.a)
    assert await replicas.ring_in_redis() == [from_a.ek_id]


async def test_a_rotation_by_one_replica_is_seen_by_the_other_at_the_first_frame_sealed_to_it(
    replicas: Replicas,
) -> None:
    await replicas.a.start()
    await replicas.b.start()
    old = replicas.verified(await replicas.b.current_announcement())
    new = replicas.verified(await replicas.a.rotate())
    assert new.ek_id != old.ek_id
    with pytest.raises(UnknownEncapsulationKey):  # B has not reloaded yet...
        replicas.b.decapsulation_key(new.ek_id, new.ek_hash)
    await replicas.send(new, replicas.b)  # ...and does so once, for the first frame naming the new key
    await replicas.send(old, replicas.b)  # the previous key still opens hops sealed before the rotation
    assert replicas.verified(await replicas.b.current_announcement()) == new
    assert await replicas.ring_in_redis() == [new.ek_id, old.ek_id]


async def test_replicas_rotating_at_once_publish_one_key(replicas: Replicas) -> None:
    await replicas.a.start()
    await replicas.b.start()
    first = replicas.verified(await replicas.a.current_announcement())
    replicas.clock.advance(LIFETIME_MS // 2 + 1)  # both find the current key due for rotation
    await asyncio.gather(replicas.a.maintain(), replicas.b.maintain())
    ring = await replicas.ring_in_redis()
    assert len(ring) == 2 and ring[1] == first.ek_id
    for replica in (replicas.a, replicas.b):
        assert replicas.verified(await replica.current_announcement()).ek_id == ring[0]
    replicas.clock.advance(1)
    await asyncio.gather(replicas.a.rotate(), replicas.b.rotate())  # forced, at once: still one + one
    forced = await replicas.ring_in_redis()
    assert len(forced) == 2 and first.ek_id not in forced and ring[0] not in forced
    for replica in (replicas.a, replicas.b):
        await replica.refresh()
        assert replicas.verified(await replica.current_announcement()).ek_id == forced[0]
        with pytest.raises(UnknownEncapsulationKey):
            replica.decapsulation_key(first.ek_id, first.ek_hash)


async def test_expired_keys_leave_redis_and_every_replica(replicas: Replicas) -> None:
    await replicas.a.start()
    await replicas.b.start()
    old = replicas.verified(await replicas.a.current_announcement())
    held_by_b = replicas.b.decapsulation_key(old.ek_id, old.ek_hash)
    old_name = replicas.store.entry_name(old.ek_id)
    replicas.clock.advance(LIFETIME_MS + 1)  # no replica rotated in time: the key expired
    await replicas.a.maintain()  # drops it from Redis and publishes a fresh one
    new = replicas.verified(await replicas.a.current_announcement())
    assert await replicas.ring_in_redis() == [new.ek_id]
    assert await replicas.backend.command("EXISTS", old_name) == 0
    await replicas.b.refresh()
    with pytest.raises(UnknownEncapsulationKey):
        replicas.b.decapsulation_key(old.ek_id, old.ek_hash)
    with pytest.raises(KemError, match="destroyed"):
        held_by_b.seed()  # B's copy of the expired dk was destroyed, not merely forgotten
    await replicas.send(new, replicas.b)


async def test_the_decapsulation_key_is_not_stored_in_the_clear(replicas: Replicas) -> None:
    await replicas.a.start()
    current = replicas.verified(await replicas.a.current_announcement())
    seed = bytes(replicas.a.decapsulation_key(current.ek_id, current.ek_hash).seed())
    raw = await replicas.backend.command("GET", replicas.store.entry_name(current.ek_id))
    assert len(seed) == 64 and seed not in raw and seed.hex().encode() not in raw
    assert current.encapsulation_key not in raw
