"""A frozen transit gateway is routed around (issue 15, section 1), with real processes and real signals.

GW2, on the cheapest route from region 1 to region 3, is frozen with SIGSTOP for 8 s: its TCP connections
stay open and its gRPC channels READY, which the old rule took for alive, so on-demand requests waited for
it. Now GW1's hops to it outlive ``suspect_after_s``, its liveness probe fails, the waiting hops are
abandoned and every transfer retries with a new key over the pqc-only GW1-GW3 link. Keys abandoned at GW2
were never handed to a master (each attempt has its own key_ID), so nothing is lost or delivered twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time

from tests.support.process_testbed import ProcessTestbed, round_trip
from tests.support.sae_load import Figures, SaeLoad, check_delivery

PAIR = ("SAE-R1-A", "SAE-R3-A")
FROZEN_S = 8.0
ANSWER_WITHIN_S = 2.0
TARGET_SHARE = 0.9  # of on-demand requests during the freeze answered 200 within ANSWER_WITHIN_S


async def test_a_frozen_transit_gateway_is_routed_around(on_demand_testbed: ProcessTestbed) -> None:
    testbed = on_demand_testbed
    await round_trip(testbed, *PAIR)
    gw2 = testbed.processes["GW2"].process
    assert gw2 is not None
    async with SaeLoad(testbed.sae, [PAIR], concurrency=4, on_demand_share=1.0) as load:
        await load.wait_success(time.monotonic(), on_demand=True, timeout_s=20)
        await asyncio.sleep(1.0)
        os.kill(gw2.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            await asyncio.sleep(FROZEN_S)
        finally:
            os.kill(gw2.pid, signal.SIGCONT)
        thawed_at = time.monotonic()
        recovery_s = await load.wait_success(thawed_at, on_demand=True, timeout_s=20)
        await asyncio.sleep(1.0)

    during = [a for a in load.attempts if a.ended > frozen_at and a.started < thawed_at]
    in_time = [a for a in during if a.status == 200 and a.ended - a.started <= ANSWER_WITHIN_S]
    share = len(in_time) / len(during)
    Figures(
        "SIGSTOP of GW2 (transit) for 8 s, on-demand 512-bit keys SAE-R1-A -> SAE-R3-A",
        load,
        faults=1,
        recovery_s=recovery_s,
        extra=f"{len(in_time)} of {len(during)} requests during the freeze ({share:.0%}) answered 200 within "
        f"{ANSWER_WITHIN_S:.0f} s; slowest {max(a.ended - a.started for a in during):.2f} s; median before "
        f"{statistics.median(a.ended - a.started for a in load.attempts if a.ended < frozen_at):.3f} s",
    ).print()
    assert load.unexpected() == []
    assert share >= TARGET_SHARE, load.messages()
    await check_delivery(testbed.sae, load.keys_by_pair())
