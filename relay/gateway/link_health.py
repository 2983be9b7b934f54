"""Which relay links routing should avoid for now: ours whose neighbour did not answer, and links further
on that a downstream gateway reported cut.

One object holds both, so routing asks one question (:meth:`LinkHealth.down_links`). A link is avoided
for ``link_down_s`` after the failure; a local link comes back early as soon as its neighbour's channel
has reconnected, because then requests need not wait out the same timeout again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from relay.topology import Link


class LinkHealth:
    def __init__(
        self,
        links: Iterable[Link],
        neighbour_links: Mapping[str, Link],
        connected: Mapping[str, Callable[[], bool]],
        *,
        link_down_s: float,
    ) -> None:
        """``neighbour_links``: our link to each neighbour ID; ``connected``: whether its channel is up now."""
        self._links = tuple(links)
        self._neighbour_links = dict(neighbour_links)
        self._connected = connected
        self._link_down_s = link_down_s
        self._neighbour_down_until: dict[str, float] = {}
        self._remote_down_until: dict[frozenset[str], float] = {}  # by the pair of gateway IDs

    def neighbour_failed(self, neighbour_id: str) -> None:
        """The neighbour did not answer (in time)."""
        self._neighbour_down_until[neighbour_id] = time.monotonic() + self._link_down_s

    def neighbour_answered(self, neighbour_id: str) -> None:
        self._neighbour_down_until.pop(neighbour_id, None)

    def remote_link_down(self, a: str, b: str) -> None:
        """A downstream gateway found the link between gateways ``a`` and ``b`` cut."""
        self._remote_down_until[frozenset((a, b))] = time.monotonic() + self._link_down_s

    def reachable(self, neighbour_id: str) -> bool:
        """False for ``link_down_s`` after a failure, unless the channel has reconnected since."""
        if time.monotonic() >= self._neighbour_down_until.get(neighbour_id, 0.0):
            return True
        if self._connected[neighbour_id]():
            self.neighbour_answered(neighbour_id)
            return True
        return False

    def down_links(self) -> frozenset[Link]:
        down = {link for neighbour_id, link in self._neighbour_links.items() if not self.reachable(neighbour_id)}
        now = time.monotonic()
        down.update(link for link in self._links if self._remote_down_until.get(frozenset(link.gateways), 0.0) > now)
        return frozenset(down)
