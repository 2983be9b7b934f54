"""``qkd-relay demo``: the testbed up, SAEs in different regions obtaining the same keys, a status screen.

For each pair of regions, the first SAE of one asks its gateway for a key naming the first SAE of the
other (``enc_keys``), which then fetches it by key_ID from its own gateway (``dec_keys``); the demo
compares the bytes. The demo first waits (:func:`wait_until_settled`) until every gateway reaches its
neighbours and its QKD lanes hold key (the fillers pull it from the vendor KMSs after start-up): sooner,
a qkd+pqc hop would be sealed pqc-only, a require-qkd one refused or a neighbour still starting routed
around, and the status screen would show a newcomer failures that are only the start-up. Then the same
between the first SAE of the first region and the first SAE of each foreign KMS domain the testbed runs,
in both directions: one side asks its gateway, the other the foreign KMS, over 020 between.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from itertools import combinations

from relay.etsi014.client import Etsi014Client, KmeError, KmeUnreachable
from relay.etsi014.models import KeyContainer, KeyRequest
from relay.pki.layout import KeyDirectory
from relay.testbed.launcher import TestbedState, gateway_urls
from relay.testbed.status import collect
from relay.topology import Topology

FIRST_KEY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Exchange:
    master: str
    slave: str
    key_id: str
    identical: bool
    latency_ms: float


async def exchange_keys(topology: Topology, state: TestbedState, keys: KeyDirectory) -> list[Exchange]:
    gateways = gateway_urls(topology, state)
    first_sae: dict[str, str] = {}
    for sae in topology.saes:
        first_sae.setdefault(sae.gateway, sae.id)
    exchanges = []
    for master_gw, slave_gw in combinations(sorted(first_sae), 2):
        master, slave = first_sae[master_gw], first_sae[slave_gw]
        exchanges.append(await _exchange(keys, (master, gateways[master_gw]), (slave, gateways[slave_gw])))
    services = {s.name: s for s in state.services}
    ours = topology.saes[0]
    for foreign in topology.foreign_kms:
        if foreign.id not in services:
            continue  # not run here (a real foreign KMS): its SAEs are not ours to drive
        near, far = (ours.id, gateways[ours.gateway]), (foreign.saes[0], services[foreign.id].listens["etsi014"])
        exchanges.append(await _exchange(keys, near, far))
        exchanges.append(await _exchange(keys, far, near))
    return exchanges


async def wait_until_settled(topology: Topology, state: TestbedState, timeout_s: float = FIRST_KEY_TIMEOUT_S) -> bool:
    """Wait until every gateway (each of its replicas) reaches each neighbour and every QKD lane holds key, as
    the gateways' admin status reports; False on timeout (the exchanges then retry their 503s as usual)."""
    deadline = time.monotonic() + timeout_s
    gateways = [name for gateway in topology.gateways for name in gateway.replica_names()]
    while time.monotonic() < deadline:
        admin = await collect(topology, state)
        documents = [admin.get(gateway, {}) for gateway in gateways]
        links = [link for doc in documents for link in doc.get("links", [])]
        lanes = [pool for link in links for pool in link["qkd_pools"]]
        answered = all("links" in doc for doc in documents)
        if answered and all(link["reachable"] for link in links) and all(pool["level"] > 0 for pool in lanes):
            return True
        await asyncio.sleep(0.2)
    return False


async def _exchange(keys: KeyDirectory, master: tuple[str, str], slave: tuple[str, str]) -> Exchange:
    """``master`` asks its KME (SAE ID, 014 URL) for a key with ``slave``, which fetches it by key_ID."""
    (master_id, master_url), (slave_id, slave_url) = master, slave
    async with (
        Etsi014Client(master_url, keys.client_context(master_id)) as master_client,
        Etsi014Client(slave_url, keys.client_context(slave_id)) as slave_client,
    ):
        started = time.perf_counter()
        issued = (await _first_key(master_client, slave_id)).keys[0]
        latency_ms = (time.perf_counter() - started) * 1000
        fetched = (await slave_client.get_key_with_ids(master_id, [issued.key_id])).keys[0]
    return Exchange(master_id, slave_id, issued.key_id, fetched.key == issued.key, latency_ms)


async def _first_key(client: Etsi014Client, slave: str) -> KeyContainer:
    """Right after start-up the QKD pools are still filling: retry 503s for a while."""
    deadline = time.monotonic() + FIRST_KEY_TIMEOUT_S
    while True:
        try:
            return await client.get_key(slave, KeyRequest())
        except (KmeError, KmeUnreachable) as exc:
            if isinstance(exc, KmeError) and exc.status != 503 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
