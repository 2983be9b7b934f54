"""Load-test figures of a gateway with replicas: kept per replica (``GW1/1``, ``GW1/2``), added up where the
report gives a gateway's total, levels of the shared Redis read from whichever replica answered.

The documents are shaped as a gateway's admin ``/status`` is (the fields the load test reads); with real
processes the same code path runs in ``tests/loadtest/test_loadtest.py`` for single gateways.
"""

from __future__ import annotations

from typing import Any

from relay.loadtest.admin import Snapshot
from relay.loadtest.results import RunResult, frame_use, key_rates, qkd_consumption, summarize
from relay.loadtest.runner import LoadSpec, LoopMode
from relay.loadtest.sae import SaePair
from relay.loadtest.scenarios import SCENARIOS

REPLICAS = {"GW1": ("GW1/1", "GW1/2"), "GW2": ("GW2",)}
LINK = "QKD-GW1-GW2"


def status(relayed: int, prerelayed: int, ready: int, fetched: int, stored: int, lanes: int) -> dict[str, Any]:
    return {
        "relay": {"keys_relayed": relayed, "relay_failures": 1, "hops_sent": relayed, "qkd_fallbacks": 2},
        "prerelay": {"keys_prerelayed": prerelayed},
        "ready_pools": [{"name": "ready:SAE-A->SAE-B", "level": ready, "high": 32}],
        "qkd_key_bits": 256,
        "qkd_fillers": {LINK: {"keys_fetched": fetched, "keys_stored": stored, "vendor_stock_at_start": 100}},
        "links": [{"qkd_link": LINK, "qkd_pools": [{"level": lanes}, {"level": 0}]}],
    }


def snapshot(at_s: float, gw1_1: dict[str, Any], gw1_2: dict[str, Any]) -> Snapshot:
    gateways = {"GW1/1": gw1_1, "GW1/2": gw1_2, "GW2": {"relay": {"hops_received": 0}}}
    frames = {
        "GW1/1": {"GW2": {"frames": int(at_s), "keys": 4 * int(at_s)}},
        "GW1/2": {"GW2": {"frames": 1, "keys": 1}},
    }
    return Snapshot(at_s, gateways, {}, frames, REPLICAS)


BEFORE = snapshot(0.0, status(10, 4, 8, 20, 20, 5), status(3, 1, 8, 0, 0, 5))
AFTER = snapshot(2.0, status(30, 6, 6, 30, 28, 7), status(13, 1, 6, 4, 4, 7))


def test_a_gateway_is_the_sum_of_its_replicas_and_levels_come_from_either() -> None:
    assert AFTER.relay("GW1")["keys_relayed"] == 43 and AFTER.relay("GW1/2")["keys_relayed"] == 13
    assert AFTER.prerelayed("GW1") == 7
    assert AFTER.ready_level("SAE-A", "SAE-B", "GW1") == 6  # one pool in the shared Redis, not 12
    fillers, bits = AFTER.fillers()[LINK]
    assert (fillers["keys_fetched"], fillers["vendor_stock_at_start"], bits) == (34, 100, 256)

    one_down = Snapshot(2.0, {**AFTER.gateways, "GW1/1": {"error": "ClientConnectorError"}}, {}, {}, REPLICAS)
    assert one_down.relay("GW1")["keys_relayed"] == 13 and one_down.ready_level("SAE-A", "SAE-B", "GW1") == 6


def test_the_summary_keeps_replicas_apart_and_totals_the_gateway() -> None:
    scenario = SCENARIOS["qkd-1hop-ondemand"]
    pair = SaePair("SAE-A", "SAE-B", "GW1", "GW2", 1)
    run = RunResult(
        "three-region/ondemand", scenario, LoadSpec(LoopMode.CLOSED, 2, requests=1), 1, [pair], 0.0, [], BEFORE, AFTER
    )
    summary = summarize(run)
    assert summary["gateways"]["GW1/1"]["keys_relayed"] == 20 and summary["gateways"]["GW1/2"]["keys_relayed"] == 10
    assert summary["gateways"]["GW1/1"]["keys_relayed_per_s"] == 10.0
    assert sorted(summary["gateways"]) == ["GW1/1", "GW1/2", "GW2"]
    assert summary["pool"]["on_demand_by_counters"] == (20 - 2) + (10 - 0)  # both replicas of the master gateway
    assert qkd_consumption(BEFORE, AFTER)[LINK]["bits_pulled"] == 14 * 256  # 10 + 4 fetched, by either replica
    assert set(frame_use(BEFORE, AFTER)) == {"GW1/1->GW2"}  # GW1/2 sealed no frame during the run
    rates = key_rates([BEFORE, AFTER])["stats"]["keys_relayed_per_s"]
    assert rates["GW1/1"]["mean"] == 10.0 and rates["GW1/2"]["mean"] == 5.0
