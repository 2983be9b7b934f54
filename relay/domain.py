"""Domain types every layer shares: a key with its key_ID, key-ID rules and the SAE-ID bound.

They sit below the wire protocols (014, 020, gRPC) and below storage, so that the key pools, the relay
engine and the vendor KMS simulator agree on what a key is without importing an interface that happens
to carry it. Invariants: a :class:`Key` never prints its bytes; a key_ID that passed
:func:`check_key_id` is a short token that cannot break a Redis name or a Lua argument.
"""

from __future__ import annotations

import os
import time
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


def new_key_id(now_ms: int | None = None) -> str:
    """A fresh key_ID that carries its creation time: a UUID version 7 (RFC 9562), still the UUID 014 and
    020 expect. 48 bits of Unix milliseconds (``now_ms``, default the wall clock), then 74 random bits.

    The stores of relayed keys read the time back (:mod:`relay.pool.scripts`) and refuse a key_ID older
    than their window, so its tombstone need not outlive the window. The 74 random bits keep key_IDs minted
    in the same millisecond, by any number of gateways, distinct; a collision would only make a store
    refuse the second key, never hand out one twice.
    """
    stamp = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if not 0 <= stamp < 1 << 48:
        raise ValueError("a UUIDv7 holds 48 bits of Unix milliseconds")
    random_bits = int.from_bytes(os.urandom(10)) >> 6  # 74 bits: rand_a (12) and rand_b (62)
    value = stamp << 80 | 0x7 << 76 | (random_bits >> 62) << 64 | 0b10 << 62 | random_bits & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


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
