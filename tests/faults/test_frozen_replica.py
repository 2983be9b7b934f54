"""One replica of a replicated transit gateway frozen (SIGSTOP) under load: the boundary keeps serving.

Unlike a killed replica, a frozen one keeps its TCP connections open: GW1's round-robin channel to GW2 still
sends it hops, and its C core answers no HTTP/2 ping, so keepalive closes its subchannel only after
``time_s + timeout_s`` (under load sooner: grpc's BDP ping, sent as answers arrive, is timed by the same
``timeout_s``; measured about 4 s). Meanwhile a hop that meets it is abandoned by the liveness watch, and
its transfer retries with a fresh key; a probe that meets it (probes share the round-robin channel) marks
the whole of GW2 down for a reprobe interval, so some transfers take the pqc-only GW1-GW3 link meanwhile.
The test prints those figures. What an operator expects:

* only clean 503s, no key lost or delivered twice (``check_delivery``), also after SIGCONT, when the thawed
  replica finishes attempts another replica already failed (the transfer log's compare-and-set refuses
  their ``done``);
* the frozen replica's lease (the QKD filler of QKD-GW2-GW3) is taken over by the other replica;
* within a bounded time (:data:`DETECTED_WITHIN_S`) requests stop meeting the frozen replica: every request
  started later succeeds, without waiting;
* the thawed replica serves hops again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.gateway.keepalive import KeepaliveSettings
from relay.gateway.liveness import LivenessSettings
from tests.support.admin_http import scrape
from tests.support.process_testbed import ProcessTestbed, round_trip
from tests.support.replica_testbed import admin_url, lease_holder, qkd_lanes_filled, replicated_testbed
from tests.support.sae_load import Attempt, Figures, SaeLoad, check_delivery

pytestmark = pytest.mark.slow

PAIRS = [("SAE-R1-A", "SAE-R3-A"), ("SAE-R1-B", "SAE-R3-B"), ("SAE-R1-A", "SAE-R2-A")]  # through GW2, and to it
CONCURRENCY = 6
FILLER_LEASE = "qkd-filler QKD-GW2-GW3"
FROZEN_S = 18.0
AFTER_THAW_S = 5.0
_keepalive, _liveness = KeepaliveSettings(), LivenessSettings()
DETECTED_WITHIN_S = _keepalive.time_s + _keepalive.timeout_s + 1.0
"""After this long, a new request meets only the live replica: keepalive closed the frozen one's connection."""
MET_AFTER_S = _liveness.suspect_after_s
"""A request this slow waited on a hop the frozen replica did not answer (or on a probe of it)."""


@pytest.fixture
def transit_replicas(tmp_path: Path, keys_root: Path) -> Iterator[ProcessTestbed]:
    """GW2 as two replicas (``tests.support.replica_testbed``, as the kill tests)."""
    yield from replicated_testbed(tmp_path / "testbed", keys_root, ("GW2",))


def _met_frozen(attempts: list[Attempt], frozen_at: float, thawed_at: float) -> list[Attempt]:
    return [
        a
        for a in attempts
        if frozen_at <= a.started < thawed_at and (a.status != 200 or a.ended - a.started >= MET_AFTER_S)
    ]


async def test_a_frozen_transit_replica_is_left_for_the_other(transit_replicas: ProcessTestbed) -> None:
    testbed = transit_replicas
    for pair in PAIRS:
        await round_trip(testbed, *pair)
    await qkd_lanes_filled(testbed, "GW2", "GW3")
    replicas = testbed.replicas("GW2")
    frozen, survivor = lease_holder(testbed, "GW2", FILLER_LEASE)
    taken_before = survivor.stderr_text().count(f"took lease {FILLER_LEASE}")
    gw1, frozen_admin = admin_url(testbed, "GW1", 1), admin_url(testbed, "GW2", replicas.index(frozen) + 1)
    assert frozen.process is not None
    async with SaeLoad(testbed.sae, PAIRS, concurrency=CONCURRENCY) as load:
        await asyncio.sleep(2.0)
        before = await scrape(gw1)
        os.kill(frozen.process.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            await asyncio.sleep(FROZEN_S)
        finally:
            os.kill(frozen.process.pid, signal.SIGCONT)
        thawed_at = time.monotonic()
        after = await scrape(gw1)
        await asyncio.sleep(1.0)  # it answers what waited in its sockets
        received_at_thaw = (await scrape(frozen_admin)).total("qkdr_relay_frames_received_total")
        recovery_s = await load.wait_success(thawed_at, timeout_s=AFTER_THAW_S)
        await asyncio.sleep(AFTER_THAW_S - 1.0)
    received_after = (await scrape(frozen_admin)).total("qkdr_relay_frames_received_total")

    met = _met_frozen(load.attempts, frozen_at, thawed_at)
    detection_s = max((a.started for a in met), default=frozen_at) - frozen_at
    during = [a for a in load.attempts if frozen_at <= a.started < thawed_at]
    direct = after.total("qkdr_relay_frames_total", neighbour="GW3") - before.total(
        "qkdr_relay_frames_total", neighbour="GW3"
    )
    via_gw2 = after.total("qkdr_relay_frames_total", neighbour="GW2") - before.total(
        "qkdr_relay_frames_total", neighbour="GW2"
    )
    marked_down = after.total("qkdr_neighbour_marked_down_total", neighbour="GW2") - before.total(
        "qkdr_neighbour_marked_down_total", neighbour="GW2"
    )
    Figures(
        f"SIGSTOP of {frozen.name} (of 2 replicas of GW2, holding lease {FILLER_LEASE!r}) for {FROZEN_S:.0f} s",
        load,
        faults=1,
        recovery_s=recovery_s,
        extra=f"{len(met)} of {len(during)} requests during the freeze met it (failed or >= {MET_AFTER_S} s), "
        f"the last started {detection_s:.2f} s into it; max latency during it "
        f"{max(a.ended - a.started for a in during):.2f} s; GW1 sealed {via_gw2:.0f} frames for GW2 and "
        f"{direct:.0f} for GW3 (pqc-only, around GW2), marked GW2 down {marked_down:.0f} times; "
        f"{frozen.name} received {received_after - received_at_thaw:.0f} frames from 1 s after SIGCONT; "
        f"{len([a for a in during if a.pair == PAIRS[2] and a.status != 200])} requests to GW2's own SAE failed",
    ).print()

    assert load.unexpected() == [], load.messages()
    assert detection_s <= DETECTED_WITHIN_S, load.messages()
    assert load.succeeded_between(frozen_at + DETECTED_WITHIN_S, thawed_at) > 0
    assert load.succeeded_between(thawed_at, time.monotonic()) > 0
    assert received_after > received_at_thaw, f"{frozen.name} received no frame after SIGCONT"
    assert survivor.stderr_text().count(f"took lease {FILLER_LEASE}") > taken_before, (
        f"{survivor.name} did not take lease {FILLER_LEASE!r} over"
    )
    await check_delivery(testbed.sae, load.keys_by_pair())
