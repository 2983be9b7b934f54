"""Key material, a running vendor KMS and a slave's delivery, as the pool tests use them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from relay.domain import Key
from relay.etsi014.client import Etsi014Client
from relay.kms_sim.service import RunningKms
from relay.pool.relayed_store import RelayedKeyStore
from tests.support.simulated_kms import ManualClock

MASTER_SAE, SLAVE_SAE, LINK = "SAE-1", "SAE-2", "L-1-2"  # the simulator's link between KME-A and KME-B


def make_keys(number: int, size_bytes: int = 32) -> list[Key]:
    return [Key(str(uuid.uuid4()), os.urandom(size_bytes)) for _ in range(number)]


async def deliver_to_slave(
    store: RelayedKeyStore, slave_sae_id: str, master_sae_id: str, key_ids: Sequence[str]
) -> list[Key]:
    """A dec_keys answered as the 014 server answers it: the keys reserved, then committed once written.

    Refused (nothing reserved) as :meth:`RelayedKeyStore.reserve_for_slave` refuses; the keys returned are
    delivered, in request order, and no later call gets them again.
    """
    reservation = await store.reserve_for_slave(slave_sae_id, master_sae_id, key_ids)
    await reservation.commit()
    return list(reservation.keys)


@dataclass
class Vendor:
    """A running vendor KMS with one QKD link; SAE-1 is the master gateway, SAE-2 the slave gateway."""

    running: RunningKms
    clock: ManualClock
    master_kme: Etsi014Client
    slave_kme: Etsi014Client
