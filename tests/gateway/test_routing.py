"""Routing over the default topology and over a line of links, including links that are down."""

from __future__ import annotations

import pytest

from relay import topology
from relay.gateway.routing import NoRoute, shortest_route
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
