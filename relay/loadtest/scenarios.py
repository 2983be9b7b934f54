"""The named load-test scenarios: which SAE pairs exchange keys, on which topology, pool-served or not.

``qkd-*`` run on the embedded three-region topology: ``qkd-1hop`` is SAE-R1-A -> SAE-R2-A (GW1-GW2,
qkd+pqc), ``qkd-2hop`` SAE-R1-A -> SAE-R3-A via GW2 (GW2-GW3 is require-qkd), and ``qkd-mesh`` has
the first SAE of every region ask for keys shared with the first SAE of every other region, so every
gateway originates requests at once. QKD is scarce there (2 to 3 kbit/s, about 10 keys of 256 bits per
second and link): an on-demand load beyond that answers 503 on the require-qkd link and seals qkd+pqc
hops pqc-only; both are reported, not hidden. ``pqc-*`` run on pqc-only chains (see
:mod:`relay.loadtest.topologies`), to measure 1, 2 and 3 hops without QKD scarcity.

Every scenario comes in two variants: ``-ondemand`` (gateways started with ``--no-prerelay``: every
``enc_keys`` relays fresh keys) and ``-pool`` (pre-relay on: the pairs' ready pools are filled first
and the run is sized to what they hold, so every request is answered from the pool).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from itertools import permutations

from relay.gateway.routing import shortest_route
from relay.loadtest.sae import SaePair
from relay.loadtest.topologies import CHAIN, POOL, THREE_REGION
from relay.topology import Topology, TopologyError


class RelayMode(StrEnum):
    ON_DEMAND = "ondemand"
    POOL = "pool"


@dataclass(frozen=True)
class Traffic:
    name: str
    topology: str
    pairs: tuple[tuple[str, str], ...]  # (master SAE, slave SAE), taken by workers in turn


@dataclass(frozen=True)
class Scenario:
    traffic: Traffic
    relay: RelayMode

    @property
    def name(self) -> str:
        return f"{self.traffic.name}-{self.relay.value}"

    @property
    def topology(self) -> str:
        return self.traffic.topology

    def pairs(self, topology: Topology) -> list[SaePair]:
        """The SAE pairs with their gateways and the hop count of the cheapest route."""
        homes = {sae.id: sae.gateway for sae in topology.saes}
        pairs = []
        for master, slave in self.traffic.pairs:
            if master not in homes or slave not in homes:
                raise TopologyError(f"scenario {self.name}: {master} or {slave} is not in topology {topology.name}")
            route = shortest_route(topology.links, homes[master], homes[slave])
            pairs.append(SaePair(master, slave, homes[master], homes[slave], route.hops))
        return pairs


_FIRST_SAES = ("SAE-R1-A", "SAE-R2-A", "SAE-R3-A")
TRAFFIC = (
    Traffic("qkd-1hop", THREE_REGION, (("SAE-R1-A", "SAE-R2-A"),)),
    Traffic("qkd-2hop", THREE_REGION, (("SAE-R1-A", "SAE-R3-A"),)),
    Traffic("qkd-mesh", THREE_REGION, tuple(permutations(_FIRST_SAES, 2))),
    Traffic("pqc-1hop", CHAIN, (("SAE-C1-A", "SAE-C2-A"),)),
    Traffic("pqc-2hop", CHAIN, (("SAE-C1-A", "SAE-C3-A"),)),
    Traffic("pqc-3hop", CHAIN, (("SAE-C1-A", "SAE-C4-A"),)),
)
# Pool-served latency does not depend on the hop count, so pqc has one pool scenario, on the two-gateway
# chain with eight source SAEs, whose ready pools fill eight times faster than one pair's.
_POOL_PQC = Traffic("pqc-1hop", POOL, tuple((f"SAE-C1-{c}", "SAE-C2-A") for c in "ABCDEFGH"))
SCENARIOS = {
    item.name: item
    for item in (
        *(Scenario(traffic, RelayMode.ON_DEMAND) for traffic in TRAFFIC),
        *(Scenario(traffic, RelayMode.POOL) for traffic in TRAFFIC if traffic.topology == THREE_REGION),
        Scenario(_POOL_PQC, RelayMode.POOL),
    )
}
DEFAULT_SCENARIOS = ("qkd-1hop-ondemand", "qkd-2hop-ondemand", "qkd-1hop-pool")


def scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}") from None
