"""Key material and a running vendor KMS, as the pool tests use them."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

from relay.domain import Key
from relay.etsi014.client import Etsi014Client
from relay.kms_sim.service import RunningKms
from tests.support.simulated_kms import ManualClock

MASTER_SAE, SLAVE_SAE, LINK = "SAE-1", "SAE-2", "L-1-2"  # the simulator's link between KME-A and KME-B


def make_keys(number: int, size_bytes: int = 32) -> list[Key]:
    return [Key(str(uuid.uuid4()), os.urandom(size_bytes)) for _ in range(number)]


@dataclass
class Vendor:
    """A running vendor KMS with one QKD link; SAE-1 is the master gateway, SAE-2 the slave gateway."""

    running: RunningKms
    clock: ManualClock
    master_kme: Etsi014Client
    slave_kme: Etsi014Client
