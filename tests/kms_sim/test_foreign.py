"""The foreign KMS domain's 020 face on real TLS 1.3 sockets, called the way its bordering gateway calls it.

Keys it accepts reach its own SAE once over 014; voids withdraw what is not delivered and never let a key
be stored after its void; only the bordering gateway may hand keys over; the misbehaviours tests rely on
(503, failed, late) are what the wire shows.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from relay import topology as topology_module
from relay.domain import Key, new_key_id
from relay.etsi014.client import Etsi014Client, KmeError
from relay.etsi020.client import Etsi020Client, PeerProblem
from relay.etsi020.models import AckStatus, ExtKey, ExtKeyContainer, VoidContainer
from relay.kms_sim.foreign import Behaviour
from relay.kms_sim.service import RunningKms, start_foreign_kms
from relay.loadtest.topologies import three_region_document, with_free_ports
from relay.pki.layout import KeyDirectory
from relay.topology import ForeignKms, Topology

TLS13 = ssl.TLSVersion.TLSv1_3


@dataclass
class Foreign:
    running: RunningKms
    domain: ForeignKms
    keys: KeyDirectory

    def as_gateway(self, gateway_id: str = "GW3") -> Etsi020Client:
        return Etsi020Client(self.domain.etsi020_url, self.keys.client_context(gateway_id, minimum=TLS13))

    def sae(self, sae_id: str) -> Etsi014Client:
        return Etsi014Client(self.running.kme_url(self.domain.identity), self.keys.client_context(sae_id))

    async def behave(self, behaviour: Behaviour, delay_s: float = 0.0) -> None:
        async with aiohttp.ClientSession() as session:
            body = {"behaviour": str(behaviour), "delay_s": delay_s}
            async with session.put(f"{self.running.admin_url}/admin/handover", json=body) as response:
                assert response.status == 200, await response.text()


@pytest.fixture
async def foreign(topology_keys: KeyDirectory) -> AsyncIterator[Foreign]:
    topology: Topology = topology_module.parse(with_free_ports(three_region_document()))
    running = await start_foreign_kms(topology, "KMS-X", topology_keys)
    try:
        yield Foreign(running, topology.foreign_domain("KMS-X"), topology_keys)
    finally:
        await running.stop()


def handed(*keys: Key, target: str = "SAE-X-A") -> ExtKeyContainer:
    return ExtKeyContainer(tuple(ExtKey(k.key_id, k.key) for k in keys), "SAE-R1-A", (target,))


def fresh() -> Key:
    return Key(new_key_id(), os.urandom(32))


async def test_a_key_handed_over_reaches_its_sae_once_and_a_void_then_fails(foreign: Foreign) -> None:
    key = fresh()
    async with foreign.as_gateway() as gw3, foreign.sae("SAE-X-A") as sae:
        acks = await gw3.ext_keys(handed(key))
        assert acks is not None and [(a.ack_status, a.key_ids) for a in acks] == [(AckStatus.RELAYED, (key.key_id,))]
        assert (await sae.get_key_with_ids("SAE-R1-A", [key.key_id])).keys == (key,)
        with pytest.raises(KmeError) as again:
            await sae.get_key_with_ids("SAE-R1-A", [key.key_id])
        assert again.value.status == 400
        voided = await gw3.void(VoidContainer((key.key_id,), "SAE-R1-A", ("SAE-X-A",)))
        assert voided is not None and [a.ack_status for a in voided] == [AckStatus.FAILED_TO_VOID]


async def test_a_voided_key_is_not_delivered_and_never_stored_later(foreign: Foreign) -> None:
    stored, early = fresh(), fresh()
    async with foreign.as_gateway() as gw3, foreign.sae("SAE-X-A") as sae:
        await gw3.ext_keys(handed(stored))
        acks = await gw3.void(VoidContainer((stored.key_id, early.key_id), "SAE-R1-A", ("SAE-X-A",)))
        assert acks is not None
        assert {a.ack_status: a.key_ids for a in acks} == {
            AckStatus.VOIDED: (stored.key_id,),
            AckStatus.KEY_NOT_PRESENT: (early.key_id,),
        }
        with pytest.raises(KmeError) as gone:
            await sae.get_key_with_ids("SAE-R1-A", [stored.key_id])
        assert gone.value.status == 400
        with pytest.raises(PeerProblem) as refused:  # the void came first: the key_ID stays spent
            await gw3.ext_keys(handed(early))
        assert refused.value.status == 400


async def test_only_the_bordering_gateway_hands_keys_over(foreign: Foreign) -> None:
    async with foreign.as_gateway("GW1") as gw1:
        with pytest.raises(PeerProblem) as refused:
            await gw1.ext_keys(handed(fresh()))
    assert refused.value.status == 401


async def test_an_unknown_target_is_a_routing_error(foreign: Foreign) -> None:
    async with foreign.as_gateway() as gw3:
        with pytest.raises(PeerProblem) as refused:
            await gw3.ext_keys(handed(fresh(), target="SAE-R3-A"))
    assert refused.value.status == 400
    assert refused.value.problem is not None and refused.value.problem["type"].endswith("key-routing-error")


async def test_misbehaviours_are_what_the_wire_shows(foreign: Foreign) -> None:
    async with foreign.as_gateway() as gw3, foreign.sae("SAE-X-A") as sae:
        await foreign.behave(Behaviour.UNAVAILABLE)
        with pytest.raises(PeerProblem) as unavailable:
            await gw3.ext_keys(handed(fresh()))
        assert unavailable.value.status == 503
        await foreign.behave(Behaviour.FAIL)
        key = fresh()
        acks = await gw3.ext_keys(handed(key))
        assert acks is not None and [a.ack_status for a in acks] == [AckStatus.FAILED]
        with pytest.raises(KmeError):
            await sae.get_key_with_ids("SAE-R1-A", [key.key_id])
        await foreign.behave(Behaviour.SLOW, delay_s=0.5)
        slow = fresh()
        answer = asyncio.create_task(gw3.ext_keys(handed(slow)))
        await asyncio.sleep(0.1)
        assert not answer.done()
        acks = await answer
        assert acks is not None and [a.ack_status for a in acks] == [AckStatus.RELAYED]


async def test_its_sae_cannot_fetch_another_sae_s_key(foreign: Foreign) -> None:
    key = fresh()
    async with foreign.as_gateway() as gw3, foreign.sae("SAE-X-B") as other:
        await gw3.ext_keys(handed(key))
        with pytest.raises(KmeError) as refused:
            await other.get_key_with_ids("SAE-R1-A", [key.key_id])
    assert refused.value.status == 401
