"""Which SAE pairs pre-relay keeps a ready pool for, and how large: it follows demand.

A gateway with hundreds of SAEs has tens of thousands of (local master, remote slave) pairs, almost all
idle; topping each one up every round cost CPU and Redis calls in proportion to the pairs, not to the
work asked. So pre-relay keeps pools only for *active* pairs: those that asked for keys of the default
size within ``window_s`` (counted by :class:`DemandTracker.asked` on the 014 enc_keys path, shared
through Redis by :class:`relay.pool.demand.DemandLog`), and those the topology pins (``prerelay_to`` on
the master SAE). An idle pair is in no structure pre-relay walks: its cost is nothing.

Sizing: a pair's target is its recent rate (keys asked in the window / ``window_s``) times
``horizon_s``, between ``floor`` and ``high`` (the ready pool's watermarks); a pinned pair's is
``high``. Then two budgets bound the keys held ready: ``gateway_budget_keys`` over all pairs, and
``link_budget_keys`` per relay link, charged to every link of the pair's cheapest route (each such key
spent QKD key on each of them). Pairs over a budget are scaled down in proportion, rounding down, so the
sums never exceed a budget. A pair that went idle is no longer topped up; its keys stay until taken or
expired, as before.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from relay.pool import PoolError, Watermarks
from relay.pool.demand import DemandLog, Pair
from relay.topology import Sae

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemandSettings:
    window_s: float = 60.0  # a pair that asked within this is active (the log keeps it in 6 buckets)
    refresh_s: float = 1.0  # how often counts go to Redis and targets are recomputed
    horizon_s: float = 10.0  # a pool holds this many seconds of its pair's recent rate
    gateway_budget_keys: int = 1024  # ready keys over every pair of the gateway
    link_budget_keys: int = 256  # ready keys whose cheapest route crosses one relay link

    def __post_init__(self) -> None:
        if min(self.window_s, self.refresh_s, self.horizon_s) <= 0:
            raise ValueError("demand window, refresh and horizon must be positive")
        if min(self.gateway_budget_keys, self.link_budget_keys) < 1:
            raise ValueError("pre-relay budgets must be at least one key")


BUCKETS = 6


def pinned_pairs(saes: Iterable[Sae], gateway_id: str) -> frozenset[Pair]:
    """The pairs the topology pins at this gateway: a local master and each slave in its ``prerelay_to``."""
    return frozenset((sae.id, slave) for sae in saes if sae.gateway == gateway_id for slave in sae.prerelay_to)


def size_pools(
    rates: Mapping[Pair, float],
    pinned: Iterable[Pair],
    links_of: Callable[[Pair], Iterable[str]],
    watermarks: Watermarks,
    settings: DemandSettings,
) -> dict[Pair, int]:
    """Each active pair's target level: its rate (keys/s) times the horizon within the watermarks (pinned:
    ``high``), scaled down within the gateway's and each link's budget. Pairs left with 0 are omitted."""
    wanted = {
        pair: min(watermarks.high, max(watermarks.low, math.ceil(rate * settings.horizon_s)))
        for pair, rate in rates.items()
    }
    wanted.update({pair: watermarks.high for pair in pinned})
    budgets: list[tuple[int, list[Pair]]] = [(settings.gateway_budget_keys, list(wanted))]
    by_link: dict[str, list[Pair]] = {}
    for pair in wanted:
        for link in links_of(pair):
            by_link.setdefault(link, []).append(pair)
    budgets += [(settings.link_budget_keys, pairs) for pairs in by_link.values()]
    share = dict.fromkeys(wanted, 1.0)
    for budget, pairs in budgets:
        total = sum(wanted[pair] for pair in pairs)
        if total > budget:
            for pair in pairs:
                share[pair] = min(share[pair], budget / total)
    sized = {pair: math.floor(wanted[pair] * share[pair]) for pair in wanted}
    return {pair: target for pair, target in sized.items() if target > 0}


class DemandTracker:
    """Counts the keys each pair asks for and turns the window's counts into pool targets."""

    def __init__(
        self,
        gateway_id: str,
        homes: Mapping[str, str],
        pinned: frozenset[Pair],
        links_to: Callable[[str], Iterable[str]],
        log_: DemandLog,
        watermarks: Watermarks,
        settings: DemandSettings,
        *,
        kept_for_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """``homes`` maps every SAE of our domains to its gateway; ``links_to`` names the links of the
        cheapest route to a gateway; ``kept_for_s`` is how long a pool may still hold keys after its pair
        went idle (their lifetime)."""
        self._gateway_id = gateway_id
        self._homes = homes
        self._links_of_gateway = links_to
        self._log = log_
        self._watermarks = watermarks
        self._settings = settings
        self._kept_for_s = kept_for_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._pinned = pinned
        self._pending: Counter[Pair] = Counter()
        self._targets: dict[Pair, int] = {pair: watermarks.high for pair in self._pinned}
        self._last_active: dict[Pair, float] = {}
        self._refresh_at = 0.0
        self._links: dict[str, tuple[str, ...]] = {}

    def asked(self, master: str, slave: str, number: int) -> None:
        """An SAE asked for ``number`` keys of the default size: counted in memory, sent at the next refresh.

        A request for a pair whose pool is not kept yet makes the next refresh come at once, so a newly
        active pair gets its pool within one pre-relay round. A pair with no ready pool (a foreign slave)
        is not counted."""
        pair = (master, slave)
        if not self._pre_relayable(pair):
            return
        self._pending[pair] += number
        if pair not in self._targets:
            self._refresh_at = 0.0

    async def targets(self) -> dict[Pair, int]:
        """The target level of every pool kept now (refreshed at most every ``refresh_s``)."""
        now = self._clock()
        if now < self._refresh_at:
            return self._targets
        self._refresh_at = now + self._settings.refresh_s
        pending, self._pending = self._pending, Counter()
        try:
            totals = await self._log.exchange(pending, self._wall_clock())
        except PoolError as exc:
            self._pending.update(pending)  # counted next time; pools keep their last targets meanwhile
            log.warning("pre-relay demand not refreshed: %s", exc)
            return self._targets
        # pairs counted under an older topology may name SAEs since removed or moved
        rates = {pair: n / self._log.window_s for pair, n in totals.items() if self._pre_relayable(pair)}
        self._targets = size_pools(rates, self._pinned, self._links_to, self._watermarks, self._settings)
        for pair in self._targets:
            self._last_active[pair] = now
        self._last_active = {p: t for p, t in self._last_active.items() if now - t <= self._kept_for_s}
        return self._targets

    def kept_pairs(self) -> list[Pair]:
        """Pairs whose pools pre-relay keeps or kept recently enough that they may still hold keys."""
        return sorted(set(self._last_active) | set(self._targets))

    def _pre_relayable(self, pair: Pair) -> bool:
        """A local master and a slave homed at another of our gateways (a foreign SAE has no ready pool)."""
        master, slave = pair
        return self._homes.get(master) == self._gateway_id and self._homes.get(slave) not in (None, self._gateway_id)

    def _links_to(self, pair: Pair) -> tuple[str, ...]:
        home = self._homes[pair[1]]
        if home not in self._links:
            self._links[home] = tuple(self._links_of_gateway(home))
        return self._links[home]
