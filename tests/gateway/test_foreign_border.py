"""The border to a foreign KMS domain in one event loop: the synchronous 020 mode, and who may speak for a
foreign SAE. (Both directions with real processes and every failure: ``tests/e2e/test_foreign_domain.py``.)"""

from __future__ import annotations

import os
import ssl
import uuid
from collections.abc import AsyncIterator

import pytest

from relay.etsi014.client import KmeError
from relay.etsi014.models import KeyRequest
from relay.etsi020.client import Etsi020Client, PeerProblem
from relay.etsi020.models import ExtKey, ExtKeyContainer
from relay.gateway.config import GatewaySettings
from relay.kms_sim.foreign import Behaviour
from relay.pki.layout import KeyDirectory
from tests.support.admin_http import admin_url, scrape
from tests.support.local_testbed import LocalTestbed, running_testbed
from tests.support.redis_servers import RedisServer

TLS13 = ssl.TLSVersion.TLSv1_3
OUTCOMES = ("relayed", "acked_not_relayed", "no_ack_in_time")


@pytest.fixture
async def testbed(topology_keys: KeyDirectory, private_redis: RedisServer) -> AsyncIterator[LocalTestbed]:
    settings = GatewaySettings(prerelay=False, foreign_synchronous=True, foreign_ack_deadline_s=2.0)
    async with running_testbed(topology_keys, private_redis.url, settings) as running:
        yield running


async def test_the_synchronous_mode_hands_over_where_versions_allow_it(testbed: LocalTestbed) -> None:
    foreign = testbed.kms["KMS-X"].foreign
    assert foreign is not None
    async with testbed.sae("SAE-R1-A") as master, testbed.sae("SAE-X-A") as slave:
        issued = (await master.get_key("SAE-X-A", KeyRequest(number=1))).keys
        assert (await slave.get_key_with_ids("SAE-R1-A", [issued[0].key_id])).keys == issued
        assert foreign.controls.counts["acks_sent"] == 0  # the answer carried the ack: no callback used
        foreign.controls.behaviour = Behaviour.FAIL
        with pytest.raises(KmeError) as refused:
            await master.get_key("SAE-X-A", KeyRequest(number=1))
        assert refused.value.status == 503
        foreign.controls.behaviour = Behaviour.SLOW
        foreign.controls.delay_s = 3.0  # past the 2 s deadline: voided there before it is stored
        stored = foreign.controls.counts["stored"]
        with pytest.raises(KmeError) as late:
            await master.get_key("SAE-X-A", KeyRequest(number=1))
        assert late.value.status == 503
    assert foreign.controls.counts["stored"] == stored
    scraped = await scrape(admin_url(testbed.gateways["GW3"].sites["admin"]))
    outcomes = {o: scraped.value("qkdr_foreign_handovers_total", domain="KMS-X", outcome=o) for o in OUTCOMES}
    # acked failed twice: the origin retried with a fresh key within the deadline; the slow one used it up
    assert outcomes == {"relayed": 1, "acked_not_relayed": 2, "no_ack_in_time": 1}


async def test_only_the_foreign_domain_speaks_for_its_saes(testbed: LocalTestbed) -> None:
    """A foreign SAE of the topology is pinned to its KMS's identity: no other KME hands keys over for it."""
    gw3 = testbed.gateways["GW3"].sites["etsi020"].url
    request = ExtKeyContainer((ExtKey(str(uuid.uuid4()), os.urandom(32)),), "SAE-X-A", ("SAE-R1-A",))
    async with Etsi020Client(gw3, testbed.keys.client_context("KME-R1-A", minimum=TLS13)) as impostor:
        with pytest.raises(PeerProblem) as refused:
            await impostor.ext_keys(request)
    assert refused.value.status == 401
    async with Etsi020Client(gw3, testbed.keys.client_context("KME-X", minimum=TLS13)) as genuine:
        acks = await genuine.ext_keys(request)
    assert acks is not None and [str(a.ack_status) for a in acks] == ["relayed"]


async def test_keys_its_sae_never_got_are_voided_in_our_network(testbed: LocalTestbed) -> None:
    """What the stand-in's 014 front end does when its SAE left before the answer: ext_keys/void at GW3,
    which withdraws the key at SAE-R1-A's gateway, so SAE-R1-A cannot fetch a key no master holds."""
    foreign = testbed.kms["KMS-X"].foreign
    assert foreign is not None
    async with testbed.sae("SAE-X-A") as master, testbed.sae("SAE-R1-A") as slave:
        issued = await master.get_key("SAE-R1-A", KeyRequest(number=1))
        await foreign.enc_keys_abandoned("SAE-X-A", "SAE-R1-A", issued)
        with pytest.raises(KmeError) as voided:
            await slave.get_key_with_ids("SAE-X-A", [issued.keys[0].key_id])
    assert voided.value.status == 400
