"""Typed failures of the key pools.

The gateway picks its answer from the type alone: :class:`PoolUnavailable` (and its
:class:`WriteNotConfirmed`), :class:`PoolEmpty` and :class:`KeysBeingDelivered` (which a retry resolves)
become 503, :class:`KeysNotIssuedToSlave` 401, :class:`RelayedKeysNotFound` 400 with the 014 "not found"
message; a hop that meets :class:`KeyNotFound` or :class:`KeyAlreadyUsed` is voided. Messages never carry
key material. ``str()`` is the detail for logs (it may name the Redis server and its client's exception);
:attr:`PoolError.public_message` is what an answer to an SAE or a peer may say.
"""

from __future__ import annotations

from collections.abc import Sequence


class PoolError(Exception):
    """Root of every error raised by :mod:`relay.pool`."""

    @property
    def public_message(self) -> str:
        """The condition, in words fit for an answer; ``str(self)`` keeps the detail for logs."""
        return str(self)


class PoolUnavailable(PoolError):
    """Redis cannot be reached or cannot serve (down, loading its AOF, cluster slots uncovered)."""

    @property
    def public_message(self) -> str:
        return "key storage unavailable"


class WriteNotConfirmed(PoolUnavailable):
    """A write reached the Redis master but fewer replicas than required confirmed it in time.

    Answered like any unavailable storage (503): what the write did may vanish if a replica is promoted,
    so nothing that depends on it may be acknowledged. The write itself is not undone; an unconfirmed take
    at worst burns its keys.
    """


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


class KeysBeingDelivered(PoolError):
    """Another call is handing out some of these keys right now; retry (they come back if it fails)."""

    def __init__(self, master_sae_id: str, key_ids: Sequence[str]) -> None:
        super().__init__(f"{len(key_ids)} key(s) from {master_sae_id} are being delivered: {', '.join(key_ids)}")
        self.key_ids = tuple(key_ids)


class StoredKeyCorrupted(PoolError):
    """A stored key failed authentication or lost its material; it has been retired, never returned."""

    @property
    def public_message(self) -> str:
        return "a stored key failed its integrity check and was destroyed"
