"""Shortest paths over the topology's relay links, skipping links that are down.

Cost is the link's configured ``cost`` (1 by default, so the default is hop count). Ties are broken by
fewer hops, then by gateway IDs, so every gateway computes the same path for the same state. Policy is
not a routing input on purpose: a ``require-qkd`` link short of QKD key stalls with 503 instead of being
routed around over a weaker path, which would be a silent downgrade.

:class:`Router` is this gateway's view: routes from here, avoiding what :class:`LinkHealth` reports down.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from relay.gateway.config import GatewayPlan
from relay.gateway.errors import RelayFailed, TransferRefused
from relay.gateway.link_health import LinkHealth
from relay.topology import Link


class NoRoute(Exception):
    """No path of working links joins the two gateways."""


@dataclass(frozen=True)
class Route:
    gateways: tuple[str, ...]
    links: tuple[Link, ...]
    cost: float

    @property
    def hops(self) -> int:
        return len(self.links)


def shortest_route(links: Iterable[Link], source: str, target: str, *, down: frozenset[Link] = frozenset()) -> Route:
    if source == target:
        return Route((source,), (), 0.0)
    adjacency: dict[str, list[tuple[str, Link]]] = {}
    for link in links:
        if link in down:
            continue
        a, b = link.gateways
        adjacency.setdefault(a, []).append((b, link))
        adjacency.setdefault(b, []).append((a, link))
    # Entries: (cost, hops, path of gateway IDs, push counter, links taken); tuples compare in that order,
    # and the counter keeps parallel links between the same gateways from ever comparing Link objects.
    frontier: list[tuple[float, int, tuple[str, ...], int, tuple[Link, ...]]] = [(0.0, 0, (source,), 0, ())]
    pushes = 0
    settled: set[str] = set()
    while frontier:
        cost, hops, path, _, taken = heapq.heappop(frontier)
        node = path[-1]
        if node in settled:
            continue
        if node == target:
            return Route(path, taken, cost)
        settled.add(node)
        for neighbour, link in adjacency.get(node, ()):
            if neighbour not in settled:
                pushes += 1
                heapq.heappush(frontier, (cost + link.cost, hops + 1, (*path, neighbour), pushes, (*taken, link)))
    raise NoRoute(f"no working path from {source} to {target}")


class Router:
    def __init__(self, plan: GatewayPlan, health: LinkHealth) -> None:
        self._plan = plan
        self._health = health

    def home_of(self, sae_id: str) -> str:
        """The gateway serving ``sae_id``, or bordering its foreign KMS domain (a destination like any
        other: keys for it are relayed there and handed over); an SAE outside the topology is refused."""
        home = self._plan.gateway_of(sae_id)
        if home is None:
            raise TransferRefused(f"SAE {sae_id!r} is not in the topology")
        return home

    def route_to(self, target_gateway: str) -> Route:
        """The shortest route over links not known to be down; a final :class:`RelayFailed` if none."""
        links, own, down = self._plan.topology.links, self._plan.id, self._health.down_links()
        try:
            return shortest_route(links, own, target_gateway, down=down)
        except NoRoute as exc:
            why = _why_no_route(links, down, target_gateway)
            raise RelayFailed(f"no working route from {own} to {target_gateway}: {why}", retryable=False) from exc


def _why_no_route(links: Iterable[Link], down: frozenset[Link], target: str) -> str:
    """The cause a 503 names: the target gateway cut off (every link of it down), or which links are down."""
    names = ", ".join(sorted("-".join(link.gateways) for link in down))
    if all(link in down for link in links if target in link.gateways):
        return f"gateway {target} is unreachable (links down: {names})"
    return f"links down: {names}"
