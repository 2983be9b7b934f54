"""Typed failures of the key pools.

The gateway picks its answer from the type alone: :class:`PoolUnavailable` and :class:`PoolEmpty` become
503, :class:`KeysNotIssuedToSlave` 401, :class:`RelayedKeysNotFound` 400 with the 014 "not found" message;
a hop that meets :class:`KeyNotFound` or :class:`KeyAlreadyUsed` is voided. Messages carry pool names and
key_IDs only, never key material, because they end up in logs and HTTP answers.
"""

from __future__ import annotations

from collections.abc import Sequence


class PoolError(Exception):
    """Root of every error raised by :mod:`relay.pool`."""


class PoolUnavailable(PoolError):
    """Redis cannot be reached or cannot serve (down, loading its AOF, cluster slots uncovered)."""


class PoolEmpty(PoolError):
    """The pool holds no usable key right now; QKD key is exhausted until the filler catches up."""


class KeyNotFound(PoolError):
    """The pool never held this key_ID, or it expired before anyone took it."""

    def __init__(self, pool: str, key_id: str) -> None:
        super().__init__(f"key_ID {key_id} is not in pool {pool}")
        self.key_id = key_id


class KeyAlreadyUsed(PoolError):
    """The key_ID was taken (or expired) before: a tombstone forbids handing it out again."""

    def __init__(self, pool: str, key_id: str) -> None:
        super().__init__(f"key_ID {key_id} of pool {pool} was already used or has expired")
        self.key_id = key_id


class RelayedKeysNotFound(PoolError):
    """Some requested relayed keys do not exist for this master (never stored, delivered, or expired)."""

    def __init__(self, master_sae_id: str, key_ids: Sequence[str]) -> None:
        super().__init__(f"{len(key_ids)} key(s) from {master_sae_id} not found: {', '.join(key_ids)}")
        self.key_ids = tuple(key_ids)


class KeysNotIssuedToSlave(PoolError):
    """The keys exist but were issued to another slave SAE (ETSI 014: 401)."""

    def __init__(self, slave_sae_id: str, key_ids: Sequence[str]) -> None:
        super().__init__(f"{len(key_ids)} key(s) were not issued to {slave_sae_id}: {', '.join(key_ids)}")
        self.key_ids = tuple(key_ids)


class StoredKeyCorrupted(PoolError):
    """A stored key failed authentication or lost its material; it has been retired, never returned."""
