"""Routing over the default topology and over small graphs: links that are down, QKD lanes known dry."""

from __future__ import annotations

import pytest

from relay import topology
from relay.gateway.routing import LaneDry, NoRoute, choose_route, shortest_route
from relay.topology import Link

DEFAULT = topology.load_default()


def link(a: str, b: str, cost: float = 1.0) -> Link:
    return Link((a, b), "pqc-only", None, cost)


def test_cheapest_path_wins_over_fewer_hops() -> None:
    route = shortest_route(DEFAULT.links, "GW1", "GW3")
    assert route.gateways == ("GW1", "GW2", "GW3") and route.cost == 2.0  # the direct pqc-only link costs 3


def test_a_cut_link_makes_routing_take_another_path() -> None:
    cut = next(link for link in DEFAULT.links if link.gateways == ("GW2", "GW3"))
    route = shortest_route(DEFAULT.links, "GW1", "GW3", down=frozenset({cut}))
    assert route.gateways == ("GW1", "GW3") and route.links[0].policy == "pqc-only"


def test_no_working_path_is_an_error() -> None:
    with pytest.raises(NoRoute, match="GW1 to GW3"):
        shortest_route(DEFAULT.links, "GW1", "GW3", down=frozenset(DEFAULT.links))


def test_equal_costs_prefer_fewer_hops_then_ids() -> None:
    links = [link("A", "B"), link("B", "D"), link("A", "C"), link("C", "D"), link("A", "D", 2.0)]
    assert shortest_route(links, "A", "D").gateways == ("A", "D")
    links = [link("A", "C"), link("C", "D"), link("A", "B"), link("B", "D")]
    assert shortest_route(links, "A", "D").gateways == ("A", "B", "D")


def test_route_to_self_is_empty() -> None:
    assert shortest_route(DEFAULT.links, "GW2", "GW2").hops == 0


def test_parallel_links_between_the_same_gateways_pick_the_cheaper() -> None:
    assert shortest_route([link("A", "B", 2.0), link("A", "B", 1.5)], "A", "B").cost == 1.5


# ----- QKD-aware choice (choose_route): lane levels passed in -----------------------------------------


def qkd(a: str, b: str, policy: str = "qkd+pqc", cost: float = 1.0) -> Link:
    return Link((a, b), policy, f"Q-{a}-{b}", cost)


def test_a_dry_require_qkd_lane_with_no_allowed_alternative_is_refused_naming_it() -> None:
    """GW1-GW3 is pqc-only, weaker than the GW1-GW2-GW3 route: a dry lane never moves keys onto it."""
    with pytest.raises(LaneDry, match=r"QKD-GW2-GW3 \(GW2-GW3\) is exhausted") as refused:
        choose_route(DEFAULT.links, "GW1", "GW3", dry=frozenset({("GW2", "GW3")}))
    assert refused.value.lanes == (("GW2", "GW3"),)
    assert choose_route(DEFAULT.links, "GW1", "GW3", dry=frozenset({("GW3", "GW2")})).gateways == ("GW1", "GW2", "GW3")


def test_a_down_link_still_routes_onto_a_weaker_path() -> None:
    cut = next(link for link in DEFAULT.links if link.gateways == ("GW2", "GW3"))
    route = choose_route(DEFAULT.links, "GW1", "GW3", down=frozenset({cut}), dry=frozenset({("GW2", "GW3")}))
    assert route.gateways == ("GW1", "GW3")


def test_another_allowed_route_is_taken_around_a_dry_require_qkd_lane() -> None:
    links = [qkd("A", "B"), qkd("B", "D", "require-qkd"), qkd("A", "C", cost=2), qkd("C", "D", "require-qkd", 2)]
    assert choose_route(links, "A", "D").gateways == ("A", "B", "D")
    route = choose_route(links, "A", "D", dry=frozenset({("B", "D")}))
    assert route.gateways == ("A", "C", "D") and route.lanes == (("A", "C"), ("C", "D"))


def test_routes_whose_lanes_hold_key_are_preferred_over_cheaper_ones_that_would_degrade() -> None:
    links = [qkd("A", "B"), qkd("B", "D"), qkd("A", "C", cost=5), qkd("C", "D", cost=5)]
    assert choose_route(links, "A", "D", dry=frozenset({("B", "D")})).gateways == ("A", "C", "D")
    both_dry = frozenset({("B", "D"), ("C", "D")})
    assert choose_route(links, "A", "D", dry=both_dry).gateways == ("A", "B", "D")  # degrades, cheapest


def test_a_transfer_that_must_not_degrade_treats_dry_qkd_pqc_lanes_as_closed() -> None:
    with pytest.raises(LaneDry, match=r"QKD-GW1-GW2 \(GW1-GW2\)"):
        choose_route(DEFAULT.links, "GW1", "GW2", dry=frozenset({("GW1", "GW2")}), no_degrade=True)
    assert choose_route(DEFAULT.links, "GW1", "GW2", dry=frozenset({("GW1", "GW2")})).gateways == ("GW1", "GW2")
