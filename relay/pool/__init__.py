"""Redis key stores of a gateway: QKD key pools per link, relayed keys per SAE pair, at-most-once delivery.

Start here: :class:`RedisBackend` (connection), :func:`link_pools` / :class:`QkdPool` (QKD key, one lane
per sending direction), :class:`QkdFiller` and :class:`AnnouncementReceiver` (filling both gateways'
lanes from the vendor KMS), :class:`RelayedKeyStore` (ready and waiting relayed keys), and
:func:`pool_status` (levels against watermarks). Every failure is a :class:`PoolError`.
"""

from relay.pool.connection import RedisBackend, RedisConfig
from relay.pool.errors import (
    KeyAlreadyUsed,
    KeyNotFound,
    KeysNotIssuedToSlave,
    PoolEmpty,
    PoolError,
    PoolUnavailable,
    RelayedKeysNotFound,
    StoredKeyCorrupted,
)
from relay.pool.keys import Keyspace
from relay.pool.qkd_announce import AnnouncementReceiver, PeerAnnouncer
from relay.pool.qkd_filler import FillerSettings, QkdFiller
from relay.pool.qkd_pool import QkdPool, QkdPoolSettings, Role, link_pools
from relay.pool.relayed_store import RelayedKeyStore, RelayedStoreSettings
from relay.pool.status import PoolStatus, pool_status
from relay.pool.store import Lifetimes
from relay.pool.watermarks import PoolState, Watermarks

__all__ = [
    "AnnouncementReceiver",
    "FillerSettings",
    "KeyAlreadyUsed",
    "KeyNotFound",
    "KeysNotIssuedToSlave",
    "Keyspace",
    "Lifetimes",
    "PeerAnnouncer",
    "PoolEmpty",
    "PoolError",
    "PoolState",
    "PoolStatus",
    "PoolUnavailable",
    "QkdFiller",
    "QkdPool",
    "QkdPoolSettings",
    "RedisBackend",
    "RedisConfig",
    "RelayedKeyStore",
    "RelayedKeysNotFound",
    "RelayedStoreSettings",
    "Role",
    "StoredKeyCorrupted",
    "Watermarks",
    "link_pools",
    "pool_status",
]
