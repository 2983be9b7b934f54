"""Faults of real processes under sustained load: the final gateway SIGKILLed, a region's Redis restarted,
a vendor KMS down and back.

Each test runs the three-region testbed as processes (``tests.support.process_testbed``) with AOF on every
Redis (``appendfsync always``, as the launcher deploys it), so what a gateway stored survives a crash.
The SIGKILL of the middle gateway GW2 is ``tests/e2e/test_three_regions.py``'s scenario 4.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.process_testbed import ProcessTestbed, round_trip, running_with_aof
from tests.support.sae_load import Figures, SaeLoad, check_delivery

POOL_PAIRS = [("SAE-R1-A", "SAE-R3-A"), ("SAE-R1-B", "SAE-R3-B")]


def _testbed(
    directory: Path, keys_root: Path, *, gateway_options: list[str], kms_options: list[str]
) -> Iterator[ProcessTestbed]:
    testbed = ProcessTestbed(directory, keys_root, gateway_options=gateway_options, kms_options=kms_options)
    yield from running_with_aof(testbed)


@pytest.fixture
def pooled(tmp_path: Path, keys_root: Path) -> Iterator[ProcessTestbed]:
    """Pre-relay on (small ready pools), plenty of QKD key: default-size keys come from the ready pool."""
    yield from _testbed(
        tmp_path / "testbed",
        keys_root,
        gateway_options=["--ready-pool", "2:6", "--hop-timeout", "3"],
        kms_options=["--initial-keys", "5000"],
    )


@pytest.fixture
def small_qkd_pools(tmp_path: Path, keys_root: Path) -> Iterator[ProcessTestbed]:
    yield from _testbed(
        tmp_path / "testbed",
        keys_root,
        gateway_options=["--no-prerelay", "--qkd-pool", "4:16"],
        kms_options=["--initial-keys", "5000"],
    )


async def test_sigkill_of_the_final_gateway_keeps_stored_keys_fetchable_once(pooled: ProcessTestbed) -> None:
    """GW3 holds the keys waiting for SAE-R3-*: SIGKILLed under load, restarted on the same Redis (AOF).

    Half the workers ask for default-size keys (served from GW1's ready pool while it lasts, even with GW3
    down: those keys are stored at GW3 already), half for 512-bit keys (always relayed on demand: 503
    while GW3 is down). Every key handed out before, during and after is fetched once after the restart.
    """
    testbed = pooled
    await round_trip(testbed, *POOL_PAIRS[0])
    async with SaeLoad(testbed.sae, POOL_PAIRS, concurrency=6, on_demand_share=0.5) as load:
        await asyncio.sleep(2.0)
        testbed.kill("GW3")
        killed_at = time.monotonic()
        await asyncio.sleep(2.0)
        await testbed.restart_async("GW3")
        restarted_at = time.monotonic()
        recovery_s = await load.wait_success(restarted_at, on_demand=True, timeout_s=20)
        await asyncio.sleep(1.0)

    while_down = load.succeeded_between(killed_at, restarted_at)
    Figures(
        "SIGKILL of GW3 (final gateway, keys waiting in its Redis, AOF)",
        load,
        faults=1,
        recovery_s=recovery_s,
        extra=f"down {restarted_at - killed_at:.1f} s; {while_down} pool-served keys handed out while GW3 "
        f"was down; recovery = first on-demand relay after the restart",
    ).print()
    assert load.unexpected("cannot relay keys to SAE-R3-") == []
    assert load.max_latency() < 10
    assert load.succeeded_between(killed_at, restarted_at, on_demand=True) <= 6  # only requests already answered
    await check_delivery(testbed.sae, load.keys_by_pair())


@pytest.mark.parametrize("region", ["region3", "region1"])
async def test_redis_restart_answers_503_meanwhile_and_loses_nothing(pooled: ProcessTestbed, region: str) -> None:
    """The region's Redis is SIGKILLed under load and restarted 2 s later on its AOF.

    region3: GW3's (the keys waiting for SAE-R3-*, GW3's QKD lane); region1: GW1's (ready pools, QKD
    lanes, transfer records, replay guard). Requests needing it answer 503 meanwhile; keys stored before
    are fetched exactly once after it.
    """
    testbed = pooled
    await round_trip(testbed, *POOL_PAIRS[0])
    redis = testbed.redis[region]
    async with SaeLoad(testbed.sae, POOL_PAIRS, concurrency=6, on_demand_share=0.5) as load:
        await asyncio.sleep(2.0)
        redis.kill()
        killed_at = time.monotonic()
        await asyncio.sleep(2.0)
        restarting_at = time.monotonic()  # down until here; serving from some instant before restarted_at
        await asyncio.to_thread(redis.start)
        restarted_at = time.monotonic()
        recovery_s = max(
            [await load.wait_success(restarted_at, on_demand=flag, timeout_s=20) for flag in (True, False)]
        )
        await asyncio.sleep(1.0)

    Figures(
        f"Redis of {region} SIGKILLed and restarted (AOF)",
        load,
        faults=1,
        recovery_s=recovery_s,
        extra=f"down {restarted_at - killed_at:.1f} s; meanwhile "
        f"{load.succeeded_between(killed_at, restarted_at, on_demand=False)} default-size and "
        f"{load.succeeded_between(killed_at, restarted_at, on_demand=True)} on-demand keys handed out",
    ).print()
    assert load.unexpected() == []
    assert load.max_latency() < 10
    if region == "region1":  # GW1's ready pool is gone meanwhile; on-demand relays over the pqc-only GW1-GW3
        # link need no state at GW1 and may succeed (when GW1 avoids GW2 for a while), over GW2 they cannot.
        assert [
            a for a in load.successes if killed_at + 0.5 < a.started and a.ended < restarting_at and not a.on_demand
        ] == []
        print(
            "DIAG",
            restarting_at,
            restarted_at,
            [
                (a.started, a.ended)
                for a in load.successes
                if killed_at + 0.5 < a.started and a.ended < restarted_at and not a.on_demand
            ],
        )
    assert all(process.running for process in testbed.processes.values())
    await check_delivery(testbed.sae, load.keys_by_pair())


async def test_vendor_kms_down_drains_the_qkd_pools_then_503_and_recovers(small_qkd_pools: ProcessTestbed) -> None:
    """KMS-R2 (the QKD-GW2-GW3 vendor network) is SIGKILLed: relays keep going on the pooled QKD key until
    the require-qkd lane is dry (503), then the KMS comes back (fresh key store) and the filler refills."""
    testbed = small_qkd_pools
    pairs = [("SAE-R1-A", "SAE-R3-A"), ("SAE-R2-A", "SAE-R3-B")]
    await round_trip(testbed, *pairs[1])
    async with SaeLoad(testbed.sae, pairs, concurrency=6) as load:
        await asyncio.sleep(1.0)
        testbed.kill("KMS-R2")
        killed_at = time.monotonic()
        drained_s = await load.wait_failures(killed_at, count=5, containing="require-qkd", timeout_s=20)
        await asyncio.sleep(1.0)
        await testbed.restart_async("KMS-R2")
        restarted_at = time.monotonic()
        recovery_s = max([await load.wait_success(restarted_at + 0.1, pair=pair, timeout_s=20) for pair in pairs])
        await asyncio.sleep(1.0)

    Figures(
        "vendor KMS-R2 down and back (QKD-GW2-GW3, require-qkd)",
        load,
        faults=1,
        recovery_s=recovery_s,
        extra=f"{load.succeeded_between(killed_at, killed_at + drained_s)} keys from the pooled QKD key "
        f"before the lane ran dry {drained_s:.1f} s after the kill; down "
        f"{restarted_at - killed_at:.1f} s",
    ).print()
    assert load.unexpected("require-qkd") == []
    assert load.max_latency() < 10
    await check_delivery(testbed.sae, load.keys_by_pair())
