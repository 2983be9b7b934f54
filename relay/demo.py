"""``qkd-relay demo``: bring up every vendor KMS of a topology and show each QKD link delivering one key.

It is the southbound half of the testbed: each gateway, acting as an SAE, draws a key from its KME and its
peer gateway fetches the same key from the KME at the other end of the link.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.etsi014.client import Etsi014Client
from relay.kms_sim.config import from_topology
from relay.kms_sim.service import RunningKms, start_kms
from relay.pki.layout import KeyDirectory
from relay.topology import Topology


@dataclass(frozen=True)
class LinkCheck:
    qkd_link: str
    master: str
    slave: str
    key_id: str
    identical: bool


async def run_demo(topology: Topology, keys: KeyDirectory) -> list[LinkCheck]:
    running: list[RunningKms] = []
    try:
        for kms in topology.kms:
            running.append(await start_kms(from_topology(topology, kms.id), keys))
        return [await _check_link(topology, link_id, keys) for link_id in (q.id for q in topology.qkd_links)]
    finally:
        for instance in running:
            await instance.stop()


async def _check_link(topology: Topology, link_id: str, keys: KeyDirectory) -> LinkCheck:
    link = next(q for q in topology.qkd_links if q.id == link_id)
    kmes = {kme.id: kme for kms in topology.kms for kme in kms.kmes}
    master, slave = link.endpoints
    master_kme, slave_kme = kmes[master.kme], kmes[slave.kme]
    async with (
        Etsi014Client(f"https://{master_kme.host}:{master_kme.port}", keys.client_context(master.sae)) as a,
        Etsi014Client(f"https://{slave_kme.host}:{slave_kme.port}", keys.client_context(slave.sae)) as b,
    ):
        issued = (await a.get_key(slave.sae)).keys[0]
        received = (await b.get_key_with_ids(master.sae, [issued.key_id])).keys[0]
    return LinkCheck(link.id, master.sae, slave.sae, issued.key_id, received.key == issued.key)
