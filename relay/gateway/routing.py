"""Routes over the topology's relay links: shortest, skipping links that are down, and aware of QKD key.

Cost is the link's configured ``cost`` (1 by default, so the default is hop count). Ties are broken by
fewer hops, then by gateway IDs, so every gateway computes the same path for the same state.

:func:`choose_route` adds the lane levels (passed in, so it stays pure): the *allowed* routes are those
over working links none weaker than the weakest link of the shortest route (``pqc-only`` < ``qkd+pqc`` <
``require-qkd``), so a dry lane never moves a key onto a weaker path than the topology's choice, which
would be a silent downgrade; a link that is down does, as before, since the shortest route is computed
over working links. Among the allowed routes it never takes a lane known dry where the hop could not be
sealed (``require-qkd``, or any QKD lane for a transfer that must not degrade), and prefers fewer dry
``qkd+pqc`` lanes (hops that would degrade to pqc-only) before cost. No allowed route left:
:class:`LaneDry`, naming the dry lanes, before any QKD key is spent.

:class:`Router` is this gateway's view: routes from here, avoiding what :class:`LinkHealth` reports down
and the lanes its :class:`LaneBoard` knows dry.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from relay.gateway.config import GatewayPlan
from relay.gateway.errors import RelayFailed, RouteDry, TransferRefused
from relay.gateway.lane_levels import Lane, LaneBoard, LaneLookout
from relay.gateway.link_health import LinkHealth
from relay.topology import Link

_STRENGTH = {"pqc-only": 0, "qkd+pqc": 1, "require-qkd": 2}

Weight = Callable[[Link, str, str], "tuple[int, float] | None"]
"""(dry qkd+pqc hops, cost) of crossing ``link`` from the first gateway to the second; None: not usable."""


class NoRoute(Exception):
    """No path of working links joins the two gateways."""


class LaneDry(NoRoute):
    """Every allowed route crosses a lane known dry where its hop could not be sealed."""

    def __init__(self, message: str, lanes: tuple[Lane, ...], via: str) -> None:
        super().__init__(message)
        self.lanes = lanes
        self.via = via  # the first hop of the shortest route, which knows the lanes behind it


@dataclass(frozen=True)
class Route:
    gateways: tuple[str, ...]
    links: tuple[Link, ...]
    cost: float

    @property
    def hops(self) -> int:
        return len(self.links)

    @property
    def lanes(self) -> tuple[Lane, ...]:
        """The QKD lanes the route's hops seal with, in order."""
        return tuple(
            (a, b) for a, b, link in zip(self.gateways, self.gateways[1:], self.links, strict=False) if link.qkd_link
        )


def shortest_route(links: Iterable[Link], source: str, target: str, *, down: frozenset[Link] = frozenset()) -> Route:
    return _search(links, source, target, lambda link, a, b: None if link in down else (0, link.cost))


def choose_route(
    links: Iterable[Link],
    source: str,
    target: str,
    *,
    down: frozenset[Link] = frozenset(),
    dry: frozenset[Lane] = frozenset(),
    no_degrade: bool = False,
) -> Route:
    """The best allowed route (see the module docstring); :class:`NoRoute` or :class:`LaneDry` if none."""
    links = tuple(links)
    primary = shortest_route(links, source, target, down=down)
    floor = min((_STRENGTH[link.policy] for link in primary.links), default=0)

    def blocked(link: Link, a: str, b: str) -> bool:
        return (a, b) in dry and (link.policy == "require-qkd" or (no_degrade and link.qkd_link is not None))

    def weight(link: Link, a: str, b: str) -> tuple[int, float] | None:
        if link in down or _STRENGTH[link.policy] < floor or blocked(link, a, b):
            return None
        return (int((a, b) in dry and link.qkd_link is not None), link.cost)

    try:
        return _search(links, source, target, weight)
    except NoRoute:
        crossings = zip(primary.lanes, (link for link in primary.links if link.qkd_link), strict=True)
        refused = [(lane, link) for lane, link in crossings if blocked(link, *lane)]
        names = ", ".join(f"{link.qkd_link} ({a}-{b})" for (a, b), link in refused)
        lanes = tuple(lane for lane, _ in refused)
        raise LaneDry(f"QKD key on link {names} is exhausted", lanes, primary.gateways[1]) from None


def _search(links: Iterable[Link], source: str, target: str, weight: Weight) -> Route:
    if source == target:
        return Route((source,), (), 0.0)
    adjacency: dict[str, list[tuple[str, Link]]] = {}
    for link in links:
        a, b = link.gateways
        adjacency.setdefault(a, []).append((b, link))
        adjacency.setdefault(b, []).append((a, link))
    # Entries: (dry hops, cost, hops, path of gateway IDs, push counter, links taken); tuples compare in that
    # order, and the counter keeps parallel links between the same gateways from ever comparing Link objects.
    frontier: list[tuple[int, float, int, tuple[str, ...], int, tuple[Link, ...]]] = [(0, 0.0, 0, (source,), 0, ())]
    pushes = 0
    settled: set[str] = set()
    while frontier:
        degraded, cost, hops, path, _, taken = heapq.heappop(frontier)
        node = path[-1]
        if node in settled:
            continue
        if node == target:
            return Route(path, taken, cost)
        settled.add(node)
        for neighbour, link in adjacency.get(node, ()):
            crossing = weight(link, node, neighbour)
            if neighbour not in settled and crossing is not None:
                pushes += 1
                entry = (
                    degraded + crossing[0],
                    cost + crossing[1],
                    hops + 1,
                    (*path, neighbour),
                    pushes,
                    (*taken, link),
                )
                heapq.heappush(frontier, entry)
    raise NoRoute(f"no working path from {source} to {target}")


class Router:
    def __init__(self, plan: GatewayPlan, health: LinkHealth, lanes: LaneBoard, lookout: LaneLookout) -> None:
        self._plan = plan
        self._health = health
        self._lanes = lanes
        self._lookout = lookout

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

    async def route_for_key(self, target_gateway: str, *, no_degrade: bool) -> Route:
        """The route a new transfer takes (:func:`choose_route`); :class:`RouteDry` if every allowed route
        crosses a lane known dry (nothing spent).

        Before refusing, it looks again: a dry lane of our own may be dry because its neighbour is gone
        (probed, so the answer names the real cause and the route avoids its link), and any dry lane may
        have refilled since it was reported (:class:`LaneLookout`)."""
        try:
            route = self._choose(target_gateway, no_degrade)
        except LaneDry as exc:
            ours = [receiver for sender, receiver in exc.lanes if sender == self._plan.id]
            await asyncio.gather(
                self._lookout.look(exc.lanes, exc.via), *(self._health.liveness.alive(r) for r in ours)
            )
            try:
                route = self._choose(target_gateway, no_degrade)
            except LaneDry as again:
                raise self._exhausted(again, no_degrade) from again
        return route

    def route_now(self, target_gateway: str) -> Route | None:
        """The route a key to ``target_gateway`` would take now, for what a request is charged along and
        admitted onto; None when no route would be started now (nothing looked up again, nothing spent)."""
        try:
            return self._choose(target_gateway, no_degrade=False)
        except (LaneDry, RelayFailed):
            return None

    @staticmethod
    def _exhausted(exc: LaneDry, no_degrade: bool) -> RouteDry:
        why = "its policy is require-qkd" if not no_degrade else "pre-relay waits"
        return RouteDry(f"{exc} and {why} (as reported along the route): not started")

    def _choose(self, target_gateway: str, no_degrade: bool) -> Route:
        links, own, down = self._plan.topology.links, self._plan.id, self._health.down_links()
        try:
            return choose_route(links, own, target_gateway, down=down, dry=self._lanes.dry(), no_degrade=no_degrade)
        except LaneDry:
            raise
        except NoRoute as exc:
            why = _why_no_route(links, down, target_gateway)
            raise RelayFailed(f"no working route from {own} to {target_gateway}: {why}", retryable=False) from exc


def _why_no_route(links: Iterable[Link], down: frozenset[Link], target: str) -> str:
    """The cause a 503 names: the target gateway cut off (every link of it down), or which links are down."""
    names = ", ".join(sorted("-".join(link.gateways) for link in down))
    if all(link in down for link in links if target in link.gateways):
        return f"gateway {target} is unreachable (links down: {names})"
    return f"links down: {names}"
