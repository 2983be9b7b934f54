"""Redis key stores of a gateway: QKD key pools per link, relayed keys per SAE pair, at-most-once delivery.

Start here: :class:`RedisBackend` (connection), :func:`link_pools` / :class:`QkdPool` (QKD key, one lane
per sending direction), :class:`RelayedKeyStore` (ready and waiting relayed keys), :class:`HandoverLedger`
(ETSI 020 hand-overs and acks), :class:`TokenBuckets` (SAE pairs' fair shares), and :func:`pool_status`
(levels against watermarks). Every failure is a :class:`PoolError`. Storage knows no wire protocol: what
fills the QKD lanes from the vendor KMS lives with the gateway (:mod:`relay.gateway.qkd_filler`,
:mod:`relay.gateway.qkd_announce`).
"""

from relay.pool.buckets import Bucket, Shortfall, TokenBuckets
from relay.pool.connection import RedisBackend, RedisConfig
from relay.pool.errors import (
    KeyAlreadyUsed,
    KeyNotFound,
    KeysBeingDelivered,
    KeysNotIssuedToSlave,
    PoolEmpty,
    PoolError,
    PoolUnavailable,
    RelayedKeysNotFound,
    StoredKeyCorrupted,
)
from relay.pool.handovers import HandoverLedger
from relay.pool.keys import Keyspace
from relay.pool.qkd_pool import QkdPool, QkdPoolSettings, Role, link_pools
from relay.pool.relayed_store import RelayedKeyStore, RelayedStoreSettings, SlaveReservation
from relay.pool.status import PoolStatus, pool_status
from relay.pool.store import MAX_BATCH, Lifetimes
from relay.pool.watermarks import PoolState, Watermarks

__all__ = [
    "MAX_BATCH",
    "Bucket",
    "HandoverLedger",
    "KeyAlreadyUsed",
    "KeyNotFound",
    "KeysBeingDelivered",
    "KeysNotIssuedToSlave",
    "Keyspace",
    "Lifetimes",
    "PoolEmpty",
    "PoolError",
    "PoolState",
    "PoolStatus",
    "PoolUnavailable",
    "QkdPool",
    "QkdPoolSettings",
    "RedisBackend",
    "RedisConfig",
    "RelayedKeyStore",
    "RelayedKeysNotFound",
    "RelayedStoreSettings",
    "Role",
    "Shortfall",
    "SlaveReservation",
    "StoredKeyCorrupted",
    "TokenBuckets",
    "Watermarks",
    "link_pools",
    "pool_status",
]
