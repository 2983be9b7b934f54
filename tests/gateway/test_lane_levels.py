"""The lane board: what a gateway believes of QKD lane levels along its routes, and the wire form of it."""

from __future__ import annotations

import asyncio

from relay import topology
from relay.gateway.lane_levels import LaneBoard, LaneLookout, LaneReport, decode, encode

LINKS = topology.load_default().links


class Clock:
    """Seconds that move only when the test says so (the board's monotonic clock)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_reports_cross_the_wire_and_malformed_entries_are_skipped() -> None:
    reports = [LaneReport("GW2", "GW3", 0, 120), LaneReport("GW2", "GW1", 55, 3)]
    assert decode(encode(reports)) == reports
    assert decode("GW2>GW3=x@1;junk;GW2>GW1=4@-1;>GW3=1@1;GW3>GW2=7@9") == [LaneReport("GW3", "GW2", 7, 9)]


def test_a_report_counts_while_fresh_and_only_a_newer_measurement_replaces_it() -> None:
    clock = Clock()
    board = LaneBoard("GW1", LINKS, fresh_s=1.0, clock=clock)
    board.learn([LaneReport("GW2", "GW3", 0, 200)])
    assert board.level("GW2", "GW3") == 0 and board.dry() == {("GW2", "GW3")}
    board.learn([LaneReport("GW2", "GW3", 9, 500)])  # measured before the one we hold
    assert board.level("GW2", "GW3") == 0
    board.learn([LaneReport("GW2", "GW3", 9, 100)])
    assert board.level("GW2", "GW3") == 9
    clock.now += 1.0
    assert board.level("GW2", "GW3") is None and board.dry() == frozenset() and board.reports() == []


def test_neither_our_own_lanes_nor_lanes_outside_the_topology_are_taken_from_a_neighbour() -> None:
    board = LaneBoard("GW1", LINKS, fresh_s=1.0, clock=Clock())
    board.measured("GW2", 40)
    board.learn([LaneReport("GW1", "GW2", 0, 0), LaneReport("GW1", "GW3", 0, 0), LaneReport("GWX", "GW2", 0, 0)])
    assert board.reports() == [LaneReport("GW1", "GW2", 40, 0)]
    board.measured("GW2", None)  # its receiver is down: not reported at all
    assert board.reports() == []


async def test_concurrent_looks_share_one_call_per_source() -> None:
    """Twenty refusals at once cost one LaneLevels call to the next gateway and one measurement of ours."""
    calls: list[str] = []
    release = asyncio.Event()

    async def measure_own() -> None:
        calls.append("own")
        await release.wait()

    async def ask(neighbour_id: str) -> None:
        calls.append(neighbour_id)
        await release.wait()

    lookout = LaneLookout("GW1", measure_own, ask)
    looks = [asyncio.create_task(lookout.look([("GW1", "GW2"), ("GW2", "GW3")], "GW2")) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*looks)
    assert sorted(calls) == ["GW2", "own"]
    await lookout.look([("GW2", "GW3")], "GW2")  # the next look is a new call, to the neighbour only
    assert sorted(calls) == ["GW2", "GW2", "own"]


def test_a_zero_between_refills_is_not_dry_until_the_lane_is_found_short() -> None:
    """A busy lane is often at 0 between refills while frames wait for its next key: routing must not
    refuse transfers for it. Only a lane found short (a key refused, or degraded, for want of QKD key) is
    dry, for the freshness window."""
    clock = Clock()
    board = LaneBoard("GW1", LINKS, fresh_s=1.0, clock=clock)
    board.measured("GW2", 0)
    assert board.level("GW1", "GW2") == 1 and board.dry() == frozenset()
    board.found_short("GW2")
    assert board.dry() == {("GW1", "GW2")}
    board.measured("GW2", 0)
    assert board.dry() == {("GW1", "GW2")} and board.reports()[0].level == 0
    clock.now += 1.5  # the shortage is older than the window: a zero is a busy lane again
    board.measured("GW2", 0)
    assert board.dry() == frozenset()
