"""Pool sizing from demand: rate within the watermarks, pins at the high watermark, budgets never exceeded."""

from __future__ import annotations

import pytest

from relay import topology
from relay.gateway.demand import DemandSettings, pinned_pairs, size_pools
from relay.pool import Watermarks

MARKS = Watermarks(low=4, high=32)
LINKS = {"GW2": ("GW1-GW2",), "GW3": ("GW1-GW2", "GW2-GW3")}


def _links(pair: tuple[str, str]) -> tuple[str, ...]:
    return LINKS[pair[1].split("-")[0]]


def test_a_pool_holds_the_horizon_of_its_rate_between_floor_and_high_watermark() -> None:
    rates = {("A", "GW2-a"): 0.01, ("A", "GW2-b"): 1.0, ("A", "GW3-a"): 50.0}
    sized = size_pools(rates, (), _links, MARKS, DemandSettings(horizon_s=10.0))
    assert sized == {("A", "GW2-a"): 4, ("A", "GW2-b"): 10, ("A", "GW3-a"): 32}


def test_a_pinned_pair_is_kept_full_without_any_demand() -> None:
    assert size_pools({}, [("A", "GW3-a")], _links, MARKS, DemandSettings()) == {("A", "GW3-a"): 32}


@pytest.mark.parametrize(("gateway_budget", "link_budget"), [(100, 1000), (1000, 40), (50, 30)])
def test_budgets_scale_pools_down_and_are_never_exceeded(gateway_budget: int, link_budget: int) -> None:
    rates = {(f"M{i}", f"{'GW2' if i % 2 else 'GW3'}-s"): 10.0 for i in range(20)}  # 20 pairs wanting 32 each
    settings = DemandSettings(gateway_budget_keys=gateway_budget, link_budget_keys=link_budget)
    sized = size_pools(rates, (), _links, MARKS, settings)
    assert sum(sized.values()) <= gateway_budget
    for link in ("GW1-GW2", "GW2-GW3"):
        assert sum(n for pair, n in sized.items() if link in _links(pair)) <= link_budget
    assert sum(sized.values()) >= min(gateway_budget, link_budget) - len(rates)  # only rounding is lost


def test_the_default_topology_pins_pairs_of_each_master_gateway() -> None:
    saes = topology.load_default().saes
    assert pinned_pairs(saes, "GW1") == {("SAE-R1-A", "SAE-R3-A"), ("SAE-R1-B", "SAE-R3-B")}
    assert pinned_pairs(saes, "GW3") == frozenset()
