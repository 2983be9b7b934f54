"""Redis key names of the pools, built so that each store lives in exactly one Cluster hash slot.

Every store is three things under one hash tag: an index (sorted set of key_ID -> expiry), a tombstone
set (sorted set of key_ID -> tombstone expiry) and one hash per key holding the sealed material. The tag
``{qkd:<link>:<sender>}`` / ``{ready:<master>:<slave>}`` / ``{slave:<master>}`` makes every multi-key
script of a store single-slot. Names carry only the namespace, link or SAE IDs and key_IDs: none of them
is secret. IDs are percent-encoded so that ``:``, ``{``, ``}`` or spaces in an SAE ID can neither collide
with another name nor break the hash tag.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

MAX_KEY_ID_LENGTH = 128  # UUIDs are 36; the bound keeps names small even for odd vendor IDs


def _part(identifier: str) -> str:
    if not identifier:
        raise ValueError("identifiers in key names must not be empty")
    return quote(identifier, safe="-._~")


def check_key_id(key_id: str) -> str:
    """Key_IDs go verbatim into names and Lua arguments, so refuse anything that is not a short token."""
    if not key_id or len(key_id) > MAX_KEY_ID_LENGTH or _part(key_id) != key_id:
        raise ValueError(f"unsupported key_ID {key_id[:MAX_KEY_ID_LENGTH]!r}")
    return key_id


@dataclass(frozen=True)
class StoreKeys:
    """The names of one store; ``material_prefix + key_ID`` names the hash holding that key."""

    index: str
    retired: str
    material_prefix: str

    def material(self, key_id: str) -> str:
        return self.material_prefix + check_key_id(key_id)


@dataclass(frozen=True)
class Keyspace:
    """A gateway's namespace; two gateways sharing one Redis must use different prefixes."""

    prefix: str = "qkdr"

    def __post_init__(self) -> None:
        if not self.prefix or _part(self.prefix) != self.prefix:
            raise ValueError("the key prefix must be a non-empty token without ':', '{', '}' or spaces")

    def qkd_pool(self, link_id: str, sender: str) -> StoreKeys:
        return self._store(f"qkd:{_part(link_id)}:{_part(sender)}")

    def ready(self, master_sae_id: str, slave_sae_id: str) -> StoreKeys:
        return self._store(f"ready:{_part(master_sae_id)}:{_part(slave_sae_id)}")

    def waiting_for_slaves(self, master_sae_id: str) -> StoreKeys:
        return self._store(f"slave:{_part(master_sae_id)}")

    def _store(self, tag: str) -> StoreKeys:
        base = f"{self.prefix}:{{{tag}}}"
        return StoreKeys(index=f"{base}:idx", retired=f"{base}:used", material_prefix=f"{base}:k:")
