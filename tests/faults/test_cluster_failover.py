"""A Redis Cluster master of the final gateway's region SIGKILLed under SAE load: clean 503s, then recovery.

The three-region testbed runs as processes; region3's Redis is a Redis Cluster of three masters with a
replica each, and GW3 confirms every write on a replica (``--redis-cluster --redis-wait-replicas 1``).
Every key is relayed on demand (no pre-relay), so each request from SAE-R1-* to SAE-R3-* makes GW3
store the relayed key before GW1 answers. The master holding GW3's store of keys waiting for SAE-R3-A
(``{slave:SAE-R1-A}``, GW3's most written slot under this load; its transfer records spread over every
master) is SIGKILLed, its replica is promoted, and the killed node is started again.

* During the failover the only failures are clean 503s, in two phases: first the shard has no master
  (until the cluster notices and promotes the replica), then it has a master without a replica, whose
  writes ``WAIT 1`` can never confirm. The test holds the killed node back until GW3 counted such an
  unconfirmed write, so both phases are seen. No request for SAE-R3-A that started after the kill
  succeeds before the node is back: a key stored only on a master without a replica is never acknowledged.
* Recovery is therefore not the promotion but the killed node rejoining, as the promoted master's
  replica: once it replicates, that shard's writes are confirmed again and requests succeed.
* Nothing duplicated, nothing acknowledged lost (``check_delivery``): every key a master SAE was given
  is fetched exactly once by its slave, with identical bytes, from the promoted replica.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.domain import gateway_key_prefix
from relay.pool.keys import Keyspace
from tests.support.admin_http import scrape
from tests.support.process_testbed import ProcessTestbed, round_trip
from tests.support.sae_load import Figures, SaeLoad, check_delivery

PAIRS = [("SAE-R1-A", "SAE-R3-A"), ("SAE-R1-B", "SAE-R3-B")]
CLUSTER_REGION = "region3"
CONCURRENCY = 6
BEFORE_KILL_S = 2.0  # of load before the fault, so the failover hits requests under way
RECOVERY_TIMEOUT_S = 20.0
UNCONFIRMED_TIMEOUT_S = 10.0  # the load writes to the lone master many times a second
AFTER_RECOVERY_S = 1.0  # of load after the first success, to see the shard keep serving


async def _unconfirmed_writes(testbed: ProcessTestbed, gateway_id: str) -> float:
    """How many writes of ``gateway_id`` fewer replicas confirmed than it waits for (its admin /metrics)."""
    gateway = next(g for g in testbed.topology.gateways if g.id == gateway_id)
    metrics = await scrape(f"http://127.0.0.1:{gateway.admin_port}")
    return metrics.value("qkdr_errors_total", component="redis", type="unconfirmed")


async def _wait_unconfirmed(testbed: ProcessTestbed, gateway_id: str, *, more_than: float) -> None:
    """Until ``gateway_id`` counted more unconfirmed writes than ``more_than``."""
    deadline = time.monotonic() + UNCONFIRMED_TIMEOUT_S
    while await _unconfirmed_writes(testbed, gateway_id) <= more_than:
        assert time.monotonic() < deadline, f"{gateway_id} never met a write its lone master could not confirm"
        await asyncio.sleep(0.05)


@pytest.fixture
def clustered(tmp_path: Path, keys_root: Path) -> Iterator[ProcessTestbed]:
    testbed = ProcessTestbed(
        tmp_path / "testbed",
        keys_root,
        gateway_options=["--no-prerelay"],
        kms_options=["--initial-keys", "5000"],
        redis_cluster_regions=(CLUSTER_REGION,),
    )
    testbed.start()
    try:
        yield testbed
    finally:
        testbed.stop()


async def test_killed_cluster_master_gives_clean_503s_then_recovers_losing_nothing(
    clustered: ProcessTestbed,
) -> None:
    cluster = clustered.redis_clusters[CLUSTER_REGION]
    for pair in PAIRS:
        await round_trip(clustered, *pair)
    store = Keyspace(gateway_key_prefix("GW3")).waiting_for_slaves(PAIRS[0][0])
    master = cluster.master_of(store.index)
    replica = cluster.replica_of(master)

    async with SaeLoad(clustered.sae, PAIRS, concurrency=CONCURRENCY) as load:
        await asyncio.sleep(BEFORE_KILL_S)
        unconfirmed_before = await _unconfirmed_writes(clustered, "GW3")
        master.kill()
        killed_at = time.monotonic()
        await asyncio.to_thread(cluster.wait_promoted, replica)
        promoted_at = time.monotonic()
        await _wait_unconfirmed(clustered, "GW3", more_than=unconfirmed_before)  # the lone master's phase
        rejoin_from = time.monotonic()
        await asyncio.to_thread(cluster.rejoin, master)  # as the promoted master's replica
        rejoined_at = time.monotonic()
        recovery_s = max(
            [await load.wait_success(rejoined_at, timeout_s=RECOVERY_TIMEOUT_S, pair=pair) for pair in PAIRS]
        )
        await asyncio.sleep(AFTER_RECOVERY_S)

    unconfirmed = await _unconfirmed_writes(clustered, "GW3") - unconfirmed_before
    refused = [a for a in load.unavailable if a.ended > killed_at and a.started < rejoined_at]
    acknowledged_unreplicated = [
        a for a in load.successes if a.pair == PAIRS[0] and a.started > killed_at and a.ended < rejoin_from
    ]
    Figures(
        f"SIGKILL of the {CLUSTER_REGION} Redis Cluster master holding GW3's {{slave:{PAIRS[0][0]}}} store",
        load,
        faults=1,
        recovery_s=recovery_s,
        extra=(
            f"replica promoted {promoted_at - killed_at:.2f} s after the kill, killed node rejoined as its "
            f"replica {rejoined_at - promoted_at:.2f} s later; {len(refused)} requests answered 503 meanwhile, "
            f"GW3 counted {unconfirmed:.0f} writes no replica confirmed"
        ),
    ).print()

    assert load.unexpected() == [], load.messages()  # no 500, no broken answer: 503 or success only
    assert refused, f"the failover went unnoticed: {load.messages()}"
    assert acknowledged_unreplicated == [], "a key was acknowledged while its shard had no replica"
    for pair in PAIRS:
        assert load.succeeded_between(rejoined_at + recovery_s, time.monotonic(), pair=pair) > 0, pair
    checked = await check_delivery(clustered.sae, load.keys_by_pair())
    assert checked == len(load.successes)
