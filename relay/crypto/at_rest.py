"""AEAD for key material at rest in Redis, bound to the Redis key name.

Blob layout: ``version (1 byte) || nonce (12 random bytes) || AES-256-GCM(ciphertext || tag)`` with
associated data ``version || name``. Binding the name means a blob copied to another key (say, from one SAE
pair's store to another's) no longer opens. With random 96-bit nonces, NIST SP 800-38D allows 2^32
encryptions per key; a node seals far fewer.

The storage key is node-local: a 32-byte file created 0600 by :func:`load_or_create_storage_key`.
"""

import contextlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relay.crypto.errors import AtRestError, KeyFileError
from relay.crypto.files import read_private_file, write_private_file

STORAGE_KEY_SIZE = 32
_VERSION = b"\x01"
_NONCE_SIZE = 12
_TAG_SIZE = 16


class StorageCipher:
    """Seals values under a node-local key; ``name`` (the Redis key name) is the associated data."""

    def __init__(self, key: bytes) -> None:
        if len(key) != STORAGE_KEY_SIZE:
            raise ValueError(f"storage key must be {STORAGE_KEY_SIZE} bytes")
        self._aead = AESGCM(key)

    def seal(self, name: str, plaintext: bytes | bytearray) -> bytes:
        nonce = os.urandom(_NONCE_SIZE)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, _VERSION + name.encode())

    def open(self, name: str, blob: bytes) -> bytes:
        """Raises :class:`AtRestError` if the blob was altered, truncated or stored under another name."""
        if len(blob) < len(_VERSION) + _NONCE_SIZE + _TAG_SIZE or blob[:1] != _VERSION:
            raise AtRestError(f"stored value for {name!r} is truncated or has an unknown version")
        nonce = blob[1 : 1 + _NONCE_SIZE]
        try:
            return self._aead.decrypt(nonce, blob[1 + _NONCE_SIZE :], _VERSION + name.encode())
        except InvalidTag:
            raise AtRestError(f"stored value for {name!r} failed authentication") from None


def load_or_create_storage_key(path: Path) -> bytes:
    """Read the node's storage key, creating it (0600, 32 random bytes) on first start.

    Raises :class:`KeyFileError` for a file of the wrong length or one readable by group or others.
    """
    if not path.exists():
        with contextlib.suppress(KeyFileError):  # another process created it first: read theirs
            write_private_file(path, os.urandom(STORAGE_KEY_SIZE))
    key = read_private_file(path)
    if len(key) != STORAGE_KEY_SIZE:
        raise KeyFileError(f"{path} holds {len(key)} bytes; a storage key is {STORAGE_KEY_SIZE} bytes")
    return key
