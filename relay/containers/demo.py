"""``qkd-relay compose demo``: the demo's key exchange through the containers, then a gateway stopped.

The exchange is the process testbed's (:func:`relay.testbed.demo.exchange_keys`) run against the
gateways' ETSI 014 listeners published on the host's loopback, so every key crosses the container
networks. The fault stops the gateway that most shortest routes between the other gateways cross (the
transit gateway); the remaining pairs must still obtain identical keys, which they can only do over the
links that avoid it, and the originating gateway's relay counter shows keys relayed after the stop. The
report waits until the stopped gateway's neighbours see their link to it unreachable, so the status screen
that follows shows the fault as the gateways see it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path
from typing import Any

from relay.compose import gateway_services
from relay.containers.engine import Engine
from relay.containers.testbed import admin_documents, current_state, stop_service
from relay.gateway.routing import shortest_route
from relay.pki.layout import KeyDirectory
from relay.testbed.demo import Exchange, exchange_keys
from relay.testbed.launcher import TestbedState
from relay.testbed.status import render as render_status
from relay.topology import Topology

REROUTE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class FaultReport:
    stopped: str
    exchanges: list[Exchange]
    relayed_after_stop: dict[str, int]  # originating gateway -> keys relayed end-to-end since the stop


def transit_gateway(topology: Topology) -> str:
    """The gateway that lies inside the most shortest routes between two other gateways."""
    crossings: Counter[str] = Counter()
    for a, b in combinations(sorted(g.id for g in topology.gateways), 2):
        crossings.update(shortest_route(topology.links, a, b).gateways[1:-1])
    if not crossings:
        raise ValueError(f"no route of {topology.name} crosses a third gateway: stopping one shows no reroute")
    return crossings.most_common(1)[0][0]


def status_screen(topology: Topology, engine: Engine, state: TestbedState) -> str:
    return render_status(topology, state, admin_documents(topology, engine, state))


def exchange(topology: Topology, state: TestbedState, keys: KeyDirectory) -> list[Exchange]:
    return asyncio.run(exchange_keys(topology, state, keys))


def fault(topology: Topology, engine: Engine, state: TestbedState, keys: KeyDirectory) -> FaultReport:
    """Stop the transit gateway's container, then exchange keys between the SAEs of the others."""
    stopped = transit_gateway(topology)
    before = _keys_relayed(admin_documents(topology, engine, state))
    for service in gateway_services(next(g for g in topology.gateways if g.id == stopped)):  # every replica
        stop_service(engine, service)
    survivors = replace(topology, saes=tuple(s for s in topology.saes if s.gateway != stopped))
    exchanges = exchange(survivors, state, keys)
    homes = {sae.id: sae.gateway for sae in survivors.saes}  # a foreign domain's SAE has none of ours
    originators = sorted({homes[e.master] for e in exchanges if e.master in homes})
    deadline = time.monotonic() + REROUTE_TIMEOUT_S
    while True:  # pre-relay refills the ready pools behind the exchange: over the surviving links only
        documents = admin_documents(topology, engine, state)
        after = _keys_relayed(documents)
        relayed = {g: after.get(g, 0) - before.get(g, 0) for g in originators}
        if all(relayed.values()) and _seen_unreachable(documents, stopped) or time.monotonic() > deadline:
            return FaultReport(stopped, exchanges, relayed)
        time.sleep(1.0)


def refreshed(topology: Topology, engine: Engine, state: TestbedState) -> TestbedState:
    return current_state(topology, engine, Path(state.keys_root), state)


def _seen_unreachable(documents: dict[str, Any], gateway: str) -> bool:
    """Every neighbour of ``gateway`` that answers reports its link to ``gateway`` unreachable (vendor KMS
    documents list QKD links, which name no neighbour)."""
    views = [link for doc in documents.values() for link in doc.get("links", []) if link.get("neighbour") == gateway]
    return all(not link["reachable"] for link in views)


def _keys_relayed(documents: dict[str, Any]) -> dict[str, int]:
    return {name: doc["relay"]["keys_relayed"] for name, doc in documents.items() if "relay" in doc}
