"""Domain types every layer shares: a key with its key_ID, key-ID rules and the SAE-ID bound.

They sit below the wire protocols (014, 020, gRPC) and below storage, so that the key pools, the relay
engine and the vendor KMS simulator agree on what a key is without importing an interface that happens
to carry it. Invariants: a :class:`Key` never prints its bytes; a key_ID that passed
:func:`check_key_id` is a short token that cannot break a Redis name or a Lua argument.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from urllib.parse import quote

MAX_KEY_ID_LENGTH = 128  # UUIDs are 36; the bound keeps names small even for odd vendor IDs
MAX_SAE_ID_LENGTH = 64  # ETSI 020's bound (014 sets none): one limit, so an SAE valid on one API is on both


@dataclass(frozen=True)
class Key:
    """One key: its ``key_id`` (a UUID for keys we mint) and the raw key bytes, never shown in ``repr``."""

    key_id: str
    key: bytes = field(repr=False)


def new_key_id() -> str:
    """A fresh random key_ID (UUID version 4, as 014 and 020 expect)."""
    return str(uuid.uuid4())


def canonical_key_id(value: str) -> str | None:
    """The lowercase hyphenated UUID form, so the same key_ID always names the same entry; None if not a UUID."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        return None


def name_part(identifier: str) -> str:
    """``identifier`` percent-encoded to a token without ``:``, ``{``, ``}`` or spaces."""
    if not identifier:
        raise ValueError("identifiers in key names must not be empty")
    return quote(identifier, safe="-._~")


def gateway_key_prefix(gateway_id: str) -> str:
    """The namespace of every Redis name a gateway writes; its Redis user may touch nothing outside it."""
    return f"qkdr.{name_part(gateway_id)}"


def check_key_id(key_id: str) -> str:
    """Key_IDs go verbatim into names and Lua arguments, so refuse anything that is not a short token."""
    if not key_id or len(key_id) > MAX_KEY_ID_LENGTH or name_part(key_id) != key_id:
        raise ValueError(f"unsupported key_ID {key_id[:MAX_KEY_ID_LENGTH]!r}")
    return key_id
