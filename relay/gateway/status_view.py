"""One read-only view of a running gateway, for both its admin status document and its Prometheus exporter.

Both report the same things (links and their QKD lanes, ready pools, relay, filler and pre-relay
counters), so both read them here, from the objects that own them, and pool levels are walked in one
place (:meth:`GatewayView.read_levels`). Nothing here carries key material.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from relay.gateway.config import GatewayPlan, Neighbour
from relay.gateway.demand import pinned_pairs
from relay.gateway.hop_protection import QkdLanes
from relay.gateway.link_health import LinkHealth
from relay.gateway.prerelay import Prerelay
from relay.gateway.qkd_filler import QkdFiller
from relay.gateway.relay_events import RelayMetrics
from relay.pool import PoolStatus, QkdPool, RedisBackend, RelayedKeyStore, pool_status


@dataclass(frozen=True)
class LinkLevels:
    neighbour: Neighbour
    lanes: list[tuple[QkdPool, PoolStatus]]  # none for a pqc-only link


@dataclass(frozen=True)
class GatewayLevels:
    links: list[LinkLevels]
    ready: list[tuple[str, str, PoolStatus]]  # master SAE, slave SAE, its ready pool


@dataclass(frozen=True)
class GatewayView:
    plan: GatewayPlan
    lanes: QkdLanes
    health: LinkHealth
    store: RelayedKeyStore
    relay: RelayMetrics
    fillers: Sequence[QkdFiller]
    prerelay: Prerelay | None
    backend: RedisBackend
    qkd_key_bits: int

    @property
    def sae_pairs(self) -> list[tuple[str, str]]:
        """The (local master, remote slave) pairs whose ready pools pre-relay keeps or recently kept (without
        pre-relay, the pairs the topology pins, all empty); an idle pair's pool holds nothing and is not walked."""
        if self.prerelay is None:
            return sorted(pinned_pairs(self.plan.topology.saes, self.plan.id))
        return self.prerelay.demand.kept_pairs()

    def reachable(self, neighbour_id: str) -> bool:
        return self.health.reachable(neighbour_id)

    async def read_levels(self) -> GatewayLevels:
        """Every QKD lane's and ready pool's level; raises PoolUnavailable when Redis cannot answer."""
        neighbours = list(self.plan.neighbours.values())
        lanes = [self.lanes.of(neighbour.id) for neighbour in neighbours]
        statuses = iter(await pool_status(pool for link_lanes in lanes for pool in link_lanes))
        links = [
            LinkLevels(neighbour, [(pool, next(statuses)) for pool in link_lanes])
            for neighbour, link_lanes in zip(neighbours, lanes, strict=True)
        ]
        pairs = self.sae_pairs
        ready = await pool_status(self.store.ready_gauge(m, s) for m, s in pairs)
        return GatewayLevels(links, [(m, s, status) for (m, s), status in zip(pairs, ready, strict=True)])
