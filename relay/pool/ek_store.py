"""The gateway's ML-KEM encapsulation keyring in Redis, shared by every replica of the gateway.

A frame sealed to an encapsulation key one replica announced must open at any other, so the ring's
entries live in the gateway's Redis: per ek_id the signed announcement and the 64-byte seed of its
decapsulation key, sealed with the gateway's :class:`relay.crypto.at_rest.StorageCipher` (one storage
key file for all replicas) under the entry's own name, so no entry opens under another ek_id.

Names share the hash tag ``{ekring}``: ``<prefix>:{ekring}:idx`` (sorted set of ek_id hex -> not_after
ms) and ``<prefix>:{ekring}:ek:<ek_id hex>`` (the sealed entry, expiring at not_after). Both scripts
(:data:`relay.pool.scripts.Script.EK_LOAD`, ``EK_PUBLISH``) first drop entries past not_after, so an
expired dk leaves Redis at the latest on the next call of any replica; publishing keeps the two newest
entries only, so the ring in Redis holds one current and at most one previous key whoever rotates.
What an entry means (signatures, dks) is the caller's business: this module stores bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.crypto.at_rest import StorageCipher
from relay.crypto.errors import AtRestError
from relay.crypto.kem import SEED_SIZE
from relay.pool.connection import RedisBackend
from relay.pool.errors import StoredKeyCorrupted
from relay.pool.scripts import Script


@dataclass(frozen=True)
class StoredEncapsulationKey:
    """One opened entry; ``seed`` is secret: the caller derives the dk from it, then wipes it."""

    ek_id: bytes
    not_after_ms: int
    announcement: bytes
    seed: bytearray = field(repr=False)


class EncapsulationKeyStore:
    """Sealed ring entries of one gateway; every failure to reach Redis is :class:`PoolUnavailable`."""

    def __init__(self, backend: RedisBackend, cipher: StorageCipher, prefix: str) -> None:
        self._backend = backend
        self._cipher = cipher
        self.index = f"{prefix}:{{ekring}}:idx"
        self._entry_prefix = f"{prefix}:{{ekring}}:ek:"

    def entry_name(self, ek_id: bytes) -> str:
        return self._entry_prefix + ek_id.hex()

    async def load(self, now_ms: int) -> list[StoredEncapsulationKey]:
        """The unexpired entries, newest first. An entry that does not open raises :class:`StoredKeyCorrupted`
        and is left in place: the likeliest cause is a replica started with another storage key, which must
        not destroy the ring its siblings share."""
        raw = await self._backend.run(Script.EK_LOAD, [self.index], [self._entry_prefix, now_ms])
        entries: list[StoredEncapsulationKey] = []
        for i in range(0, len(raw), 3):
            ek_id, not_after, blob = bytes.fromhex(raw[i].decode()), int(raw[i + 1]), raw[i + 2]
            name = self.entry_name(ek_id)
            try:
                plaintext = bytearray(self._cipher.open(name, blob))
            except AtRestError as exc:
                raise StoredKeyCorrupted(
                    f"encapsulation key {ek_id.hex()} in Redis does not open with this gateway's storage key "
                    f"(every replica must use the same storage key file): {exc}"
                ) from None
            entries.append(
                StoredEncapsulationKey(ek_id, not_after, bytes(plaintext[SEED_SIZE:]), plaintext[:SEED_SIZE])
            )
            plaintext[:] = bytes(len(plaintext))
        return entries[::-1]

    async def publish(
        self, entry: StoredEncapsulationKey, *, now_ms: int, unless_held_until: int | None = None
    ) -> bool:
        """Store ``entry`` and keep the two newest entries; True if it is held now.

        ``unless_held_until``: publish only if no stored key's not_after reaches that time (the current key
        is due for rotation); two replicas rotating at once then publish one key, the other gets False.
        """
        plaintext = bytearray(entry.seed) + entry.announcement
        try:
            sealed = self._cipher.seal(self.entry_name(entry.ek_id), plaintext)
        finally:
            plaintext[:] = bytes(len(plaintext))
        condition = "" if unless_held_until is None else str(unless_held_until)
        args: list[str | bytes | int] = [
            self._entry_prefix,
            now_ms,
            entry.ek_id.hex(),
            entry.not_after_ms,
            sealed,
            condition,
        ]
        return bool(await self._backend.run(Script.EK_PUBLISH, [self.index], args))
