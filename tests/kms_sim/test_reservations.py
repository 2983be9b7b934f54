"""The simulator's dec_keys reserves, as the gateway's does: released keys are fetchable again (until they
expire), reserved ones go to nobody else meanwhile, committed ones are gone."""

from __future__ import annotations

import pytest

from relay.etsi014.errors import UnavailableError, ValidationError
from relay.etsi014.models import KeyIds, KeyRequest
from relay.kms_sim.config import SimSettings
from relay.kms_sim.kms import SimulatedKms
from tests.support.simulated_kms import ManualClock, sim_config


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def kms(clock: ManualClock) -> SimulatedKms:
    return SimulatedKms(sim_config(SimSettings(initial_key_count=10, availability_timeout_s=10.0)), clock=clock)


def issued_ids(kms: SimulatedKms, number: int = 2) -> KeyIds:
    keys = kms.issue("SAE-1", "SAE-2", KeyRequest(number=number)).keys
    return KeyIds(tuple(key.key_id for key in keys))


async def test_a_released_reservation_is_fetchable_again_and_a_committed_one_is_gone(kms: SimulatedKms) -> None:
    ids = issued_ids(kms)
    first = kms.redeem("SAE-2", "SAE-1", ids)
    await first.release()
    second = kms.redeem("SAE-2", "SAE-1", ids)
    assert second.container.keys == first.container.keys
    await second.commit()
    with pytest.raises(ValidationError):
        kms.redeem("SAE-2", "SAE-1", ids)


async def test_reserved_keys_go_to_nobody_else_meanwhile(kms: SimulatedKms) -> None:
    ids = issued_ids(kms)
    held = kms.redeem("SAE-2", "SAE-1", ids)
    with pytest.raises(UnavailableError, match="being delivered"):
        kms.redeem("SAE-2", "SAE-1", ids)
    await held.commit()


async def test_a_key_released_after_its_timeout_stays_expired(kms: SimulatedKms, clock: ManualClock) -> None:
    ids = issued_ids(kms)
    late = kms.redeem("SAE-2", "SAE-1", ids)
    clock.advance(10.1)
    issued_ids(kms, 1)  # any call expires what has timed out
    await late.release()
    with pytest.raises(ValidationError):
        kms.redeem("SAE-2", "SAE-1", ids)
