"""Which relay links routing should avoid for now: ours whose neighbour failed its liveness probe, and
links further on that a downstream gateway reported cut.

One object holds both, so routing asks one question (:meth:`LinkHealth.down_links`). A neighbour's link
is down exactly while :class:`relay.gateway.liveness.NeighbourLiveness` holds the neighbour down (until a
probe succeeds); a remote link, which we cannot probe, is avoided for ``link_down_s`` after the report.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from relay.gateway.liveness import NeighbourLiveness
from relay.topology import Link


class LinkHealth:
    def __init__(
        self,
        links: Iterable[Link],
        neighbour_links: Mapping[str, Link],
        liveness: NeighbourLiveness,
        *,
        link_down_s: float,
    ) -> None:
        """``neighbour_links``: our link to each neighbour ID."""
        self._links = tuple(links)
        self._neighbour_links = dict(neighbour_links)
        self.liveness = liveness
        self._link_down_s = link_down_s
        self._remote_down_until: dict[frozenset[str], float] = {}  # by the pair of gateway IDs

    async def neighbour_failed(self, neighbour_id: str) -> None:
        """A call to the neighbour failed at the transport: probe it (the failure may lie behind it) and
        wait for the verdict, so the caller's retry routes by it."""
        await self.liveness.alive(neighbour_id)

    def remote_link_down(self, a: str, b: str) -> None:
        """A downstream gateway found the link between gateways ``a`` and ``b`` cut."""
        self._remote_down_until[frozenset((a, b))] = time.monotonic() + self._link_down_s

    def reachable(self, neighbour_id: str) -> bool:
        """False from a failed liveness probe until a probe succeeds."""
        return not self.liveness.is_down(neighbour_id)

    def down_links(self) -> frozenset[Link]:
        down = {link for neighbour_id, link in self._neighbour_links.items() if not self.reachable(neighbour_id)}
        now = time.monotonic()
        down.update(link for link in self._links if self._remote_down_until.get(frozenset(link.gateways), 0.0) > now)
        return frozenset(down)
