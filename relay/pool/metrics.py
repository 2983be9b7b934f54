"""Plain counters for the pools, export-agnostic: an exporter reads them with ``dataclasses.asdict``.

Each object belongs to one pool or store instance (no process-wide registry), so a test or an
exporter sees exactly the counts of the object it holds. Levels are not counters; read them with
:func:`relay.pool.status.pool_status`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class QkdPoolMetrics:
    stored: int = 0
    refused: int = 0  # offered key_IDs already present or tombstoned
    taken: int = 0
    empty: int = 0  # take found too few: QKD key exhausted (alarm)
    not_found: int = 0  # take_named of a key_ID not held or already used
    discarded: int = 0


@dataclass
class RelayedStoreMetrics:
    ready_stored: int = 0
    ready_taken: int = 0
    ready_short: int = 0  # take_ready found fewer keys than asked: the gateway relays on demand
    slave_stored: int = 0
    slave_refused: int = 0
    delivered: int = 0
    released: int = 0  # reserved for a slave that had gone before its answer was written: deliverable again
    reservations_expired: int = 0  # released too late: the reservation had run out into a tombstone
    not_found: int = 0
    unauthorized: int = 0
    in_delivery: int = 0  # dec_keys refused because another call was handing out the same keys
    voided: int = 0
