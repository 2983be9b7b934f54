"""Downstream scarcity with real processes: the scenario of ``test_downstream_scarcity.py`` on the
three-region testbed run as processes, observed only from outside (014 clients, the vendor's CLI, the
gateways' admin ``/metrics``), as an operator would.

The vendor halts QKD-GW2-GW3 (QBER alarm) and SAE-R2-A drains what is left of GW2's require-qkd lane;
then region 1 asks for region-3 keys in a closed loop while SAE-R1-B asks region 2 at 5 keys/s. GW1 must
refuse the region-3 requests itself, before spending GW1-GW2 QKD key, and region 1 -> region 2 must keep
its QKD protection (no hop sealed pqc-only).
"""

from __future__ import annotations

from relay.etsi014.client import KmeError
from relay.etsi014.models import KeyRequest
from tests.support.admin_http import Scrape, scrape
from tests.support.process_testbed import ProcessTestbed, round_trip
from tests.support.scarcity import REGION2, ScarcityOutcome, run_scarce_load

DRAIN_REQUESTS = 256  # each a frame of its own, spending one QKD key; the lane holds at most 128 (its high watermark)


def _admin(testbed: ProcessTestbed, gateway_id: str) -> str:
    gateway = next(g for g in testbed.topology.gateways if g.id == gateway_id)
    return f"http://127.0.0.1:{gateway.admin_port}"


def _outbound_lane(metrics: Scrape, link: str) -> float:
    return metrics.total("qkdr_qkd_pool_keys", link=link, direction="outbound")


async def _drain_gw2_gw3(testbed: ProcessTestbed) -> None:
    """SAE-R2-A takes what GW2's require-qkd lane to GW3 still holds, until the 503 that says it is dry."""
    async with testbed.sae("SAE-R2-A") as master:
        for _ in range(DRAIN_REQUESTS):
            try:
                await master.get_key("SAE-R3-A", KeyRequest(number=1))
            except KmeError as exc:
                if exc.status == 503 and exc.error is not None and "require-qkd" in exc.error.message:
                    return
                raise
    raise AssertionError("GW2's require-qkd lane to GW3 never ran dry")


async def test_region3_load_on_a_dry_lane_spares_gw1_gw2_key_across_processes(
    on_demand_testbed: ProcessTestbed,
) -> None:
    testbed = on_demand_testbed
    await round_trip(testbed, *REGION2)
    halted = testbed.cli("kms-sim", "set-qber", "--kms", "KMS-R2", "QKD-GW2-GW3", "0.3")
    assert halted.returncode == 0 and "HALTED" in halted.stdout, halted.stderr
    await _drain_gw2_gw3(testbed)

    gw1, gw2 = _admin(testbed, "GW1"), _admin(testbed, "GW2")
    before1, before2 = await scrape(gw1), await scrape(gw2)

    async def upstream_level() -> float:
        return _outbound_lane(await scrape(gw1), "QKD-GW1-GW2")

    run = await run_scarce_load(testbed.sae, upstream_level)
    after1, after2 = await scrape(gw1), await scrape(gw2)

    def grew(after: Scrape, before: Scrape, name: str, **labels: str) -> float:
        return after.total(name, **labels) - before.total(name, **labels)

    outcome = ScarcityOutcome(
        "Downstream scarcity, processes (require-qkd GW2-GW3 halted and drained, region 1 -> 3 closed loop)",
        run,
        wasted=grew(after2, before2, "qkdr_relay_qkd_exhausted_total", origin="sae"),
        not_started=grew(after1, before1, "qkdr_relay_not_started_total", origin="sae"),
        fallbacks=grew(after1, before1, "qkdr_relay_qkd_fallbacks_total"),
    )
    outcome.print()
    await outcome.check(testbed.sae)
