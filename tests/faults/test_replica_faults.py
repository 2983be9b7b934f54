"""One replica of a replicated gateway SIGKILLed under load: the boundary keeps serving.

The three-region testbed runs as processes with GW2 (transit) and GW3 (final) as two replicas each, on
one Redis per region (AOF). Neighbours spread their calls over the replicas (gRPC round robin), SAEs reach
the shared ETSI 014 port. When one replica dies:

* requests keep succeeding: the only failures are requests that were in flight at the kill (their frame
  was on the dead replica; its pending transfer record is resolved as failed, the sender voids and
  answers 503 or retries with a fresh key), none started a second after it;
* no key is lost or delivered twice (``check_delivery``: every key a master got is fetched once by its
  slave, at the surviving replica);
* the killed replica's leases are taken over: the QKD filler of GW2's master link runs on the survivor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.process_testbed import ProcessTestbed, round_trip
from tests.support.replica_testbed import lease_holder, qkd_lanes_filled, replicated_testbed
from tests.support.sae_load import Attempt, Figures, SaeLoad, check_delivery

PAIRS = [("SAE-R1-A", "SAE-R3-A"), ("SAE-R1-B", "SAE-R3-B")]
CONCURRENCY = 6
SETTLE_S = 1.0  # after this long past the kill, a new request meets only live replicas
LEASE_TAKEOVER_S = 10.0


@pytest.fixture
def replicated(tmp_path: Path, keys_root: Path) -> Iterator[ProcessTestbed]:
    """GW2 and GW3 as two replicas each (``tests.support.replica_testbed``)."""
    yield from replicated_testbed(tmp_path / "testbed", keys_root, ("GW2", "GW3"))


def _in_flight_at(load: SaeLoad, moment: float) -> list[Attempt]:
    return [a for a in load.attempts if a.started <= moment <= a.ended]


async def _kill_lease_holder_under_load(
    testbed: ProcessTestbed, gateway_id: str, lease: str
) -> tuple[SaeLoad, float, float]:
    """SIGKILL the replica of ``gateway_id`` holding ``lease`` under load; the other must take the lease."""
    for pair in PAIRS:
        await round_trip(testbed, *pair)
    await qkd_lanes_filled(testbed, "GW2", "GW3")
    holder, survivor = (process.name for process in lease_holder(testbed, gateway_id, lease))
    taken_before = testbed.processes[survivor].stderr_text().count(f"took lease {lease}")
    async with SaeLoad(testbed.sae, PAIRS, concurrency=CONCURRENCY) as load:
        await asyncio.sleep(2.0)
        testbed.kill(holder)
        killed_at = time.monotonic()
        await asyncio.sleep(4.0)
        recovery_s = await load.wait_success(killed_at + SETTLE_S, timeout_s=20)
        await asyncio.sleep(1.0)
    deadline = killed_at + LEASE_TAKEOVER_S
    while testbed.processes[survivor].stderr_text().count(f"took lease {lease}") == taken_before:
        assert time.monotonic() < deadline, f"{survivor} did not take lease {lease!r} over"
        await asyncio.sleep(0.1)
    Figures(
        f"SIGKILL of {holder} (of 2 replicas of {gateway_id}, holding lease {lease!r})",
        load,
        faults=1,
        recovery_s=recovery_s,
        extra=f"{len(_in_flight_at(load, killed_at))} requests in flight at the kill; {survivor} took the lease over",
    ).print()
    return load, killed_at, recovery_s


def _check_failures_were_in_flight(load: SaeLoad, killed_at: float) -> None:
    failures = [a for a in load.attempts if a.status != 200]
    in_flight = _in_flight_at(load, killed_at)
    assert load.unexpected() == [], load.messages()
    assert len(failures) <= len(in_flight), (len(in_flight), load.messages())
    late = [a for a in failures if a.started > killed_at + SETTLE_S]
    assert late == [], load.messages()
    assert load.succeeded_between(killed_at + SETTLE_S, time.monotonic()) > 0


async def test_sigkill_of_a_transit_replica_keeps_the_boundary_serving(replicated: ProcessTestbed) -> None:
    """GW2's replica running the QKD filler of QKD-GW2-GW3 (GW2 is that link's master) dies."""
    load, killed_at, _ = await _kill_lease_holder_under_load(replicated, "GW2", "qkd-filler QKD-GW2-GW3")
    _check_failures_were_in_flight(load, killed_at)
    await check_delivery(replicated.sae, load.keys_by_pair())


async def test_sigkill_of_a_final_replica_loses_and_duplicates_nothing(replicated: ProcessTestbed) -> None:
    """GW3's replica running the 020 ack retries dies; the keys waiting at GW3 are fetched at the other."""
    load, killed_at, _ = await _kill_lease_holder_under_load(replicated, "GW3", "020-ack-retries")
    _check_failures_were_in_flight(load, killed_at)
    await check_delivery(replicated.sae, load.keys_by_pair())
