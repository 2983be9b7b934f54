"""Hop frames between real gateways (three gateways in one loop, real gRPC, TLS, Redis, KMS simulators).

A frame carries keys of any transfers for one neighbour; the receiver answers each key's own outcome under
one confirmation, so one bad key fails alone, a key_ID is delivered once whatever frame it comes in, and
a retried frame is answered from the transfer log without opening it again. On an otp link short of QKD
key no frame carries a partial pad; keys for one neighbour coalesce into frames of at most ``frame_keys``.

Frames sealed by hand are GW1's (its ML-DSA identity, GW2's ek as GW1's peer fetched it, QKD key from
GW1's own outbound lane) and sent over GW1's own channel.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relay.crypto import FrameEntry
from relay.crypto.errors import ConfirmationFailed
from relay.etsi014.client import KmeError
from relay.etsi014.models import KeyRequest
from relay.gateway.config import GatewaySettings
from relay.gateway.hops import ItemOutcome, Outcome, encode_outcomes
from relay.pki.layout import KeyDirectory
from tests.support.hand_sealed_hops import entry, seal_in, send_in
from tests.support.local_testbed import LocalTestbed, default_document, running_testbed
from tests.support.redis_servers import RedisServer

ON_DEMAND = GatewaySettings(prerelay=False)
QKD_KEY_BITS = 256
TO_GW3 = ("GW1", "GW2", "GW3")


@pytest.fixture
async def testbed(topology_keys: KeyDirectory, private_redis: RedisServer) -> AsyncIterator[LocalTestbed]:
    async with running_testbed(topology_keys, private_redis.url, ON_DEMAND) as running:
        yield running


def with_link(document: dict[str, Any], gateways: tuple[str, str], **settings: object) -> dict[str, Any]:
    """The topology with ``settings`` (``qkd_use``, ``frame_keys``) on the link between ``gateways``."""
    for link in document["links"]:
        if sorted(link["gateways"]) == sorted(gateways):
            link.update(settings)
    return document


async def held_for(testbed: LocalTestbed, sent: FrameEntry) -> bytes | int:
    """What the key's target SAE gets for its key_ID at its home gateway: the key, or the error status."""
    async with testbed.sae(sent.target) as slave:
        try:
            return (await slave.get_key_with_ids(sent.initiator, [sent.key_id])).keys[0].key
        except KmeError as exc:
            return exc.status


def summary(outcomes: tuple[ItemOutcome, ...]) -> list[tuple[Outcome, str]]:
    return [(item.outcome, item.detail) for item in outcomes]


def frames_to(caplog: pytest.LogCaptureFixture, neighbour: str) -> list[tuple[str, int]]:
    """(signed mode, keys) of every frame a gateway sent ``neighbour`` and got answered, as the forwarder
    logs it from the sealed header."""
    return [
        (record.mode, record.args[1])  # type: ignore[attr-defined,index]
        for record in caplog.records
        if record.name == "relay.gateway.forwarding" and getattr(record, "neighbour", None) == neighbour
    ]


async def test_a_frame_mixing_sae_pairs_and_paths_stores_each_key_where_it_belongs(testbed: LocalTestbed) -> None:
    gw2 = testbed.gateways["GW2"]
    entries = [
        entry(),
        entry(TO_GW3, "SAE-R3-A"),
        entry(initiator="SAE-R1-B"),
        entry(TO_GW3, "SAE-R3-B", initiator="SAE-R1-B"),
    ]
    frames, keys = gw2.metrics.frames["GW3"], gw2.metrics.frame_keys["GW3"]
    frame = await seal_in(testbed, entries, qkd=True)
    outcomes = frame.outcomes(await send_in(testbed, frame.message.to_bytes()))
    assert summary(outcomes) == [(Outcome.STORED, "GW2"), (Outcome.STORED, "GW3")] * 2
    for sent in entries:
        assert await held_for(testbed, sent) == sent.key
    # the keys going on to GW3 left GW2 together, in one frame of GW2's own
    assert (gw2.metrics.frames["GW3"] - frames, gw2.metrics.frame_keys["GW3"] - keys) == (1, 2)
    # and no key is held anywhere else: SAE-R2-A cannot have the key relayed for SAE-R3-A
    misplaced = dataclasses.replace(entries[1], target="SAE-R2-A")
    assert await held_for(testbed, misplaced) == 400


async def test_one_bad_key_does_not_fail_its_neighbours(testbed: LocalTestbed) -> None:
    used = entry()
    earlier = await seal_in(testbed, [used])
    assert summary(earlier.outcomes(await send_in(testbed, earlier.message.to_bytes()))) == [(Outcome.STORED, "GW2")]
    entries = [
        entry(),
        entry(key_id=used.key_id),  # a key_ID already stored for this SAE pair
        entry(target="SAE-R3-A"),  # ends at GW2, which does not serve SAE-R3-A
        entry(TO_GW3, "SAE-R3-A"),
    ]
    frame = await seal_in(testbed, entries, qkd=True)
    answer = await send_in(testbed, frame.message.to_bytes())
    outcomes = frame.outcomes(answer)  # the confirmation verifies over all four outcomes
    assert [item.outcome for item in outcomes] == [Outcome.STORED, Outcome.RETRYABLE, Outcome.FINAL, Outcome.STORED]
    assert "already used" in outcomes[1].detail and "not served by GW2" in outcomes[2].detail
    assert await held_for(testbed, entries[0]) == entries[0].key
    assert await held_for(testbed, entries[3]) == entries[3].key
    assert await held_for(testbed, used) == used.key  # the earlier key, not the one that reused its key_ID
    assert await held_for(testbed, dataclasses.replace(entries[2], target="SAE-R2-A")) == 400
    # and no outcome can be changed without breaking the confirmation
    all_stored = encode_outcomes((ItemOutcome.stored("GW2"),) * 4)
    with pytest.raises(ConfirmationFailed):
        frame.pending.verify_confirmation(all_stored, answer.confirmation)


async def test_a_delivered_key_id_resent_in_a_new_frame_is_refused_and_not_stored_again(
    testbed: LocalTestbed,
) -> None:
    delivered = entry()
    first = await seal_in(testbed, [delivered])
    assert summary(first.outcomes(await send_in(testbed, first.message.to_bytes()))) == [(Outcome.STORED, "GW2")]
    assert await held_for(testbed, delivered) == delivered.key  # its slave took it
    resent = dataclasses.replace(delivered, transfer_id=uuid.uuid4().bytes)  # the same key, a new transfer
    another = entry(key_id=delivered.key_id)  # the same key_ID with another key
    fresh = entry()
    frame = await seal_in(testbed, [resent, another, fresh])  # a new frame, validly signed by GW1
    outcomes = frame.outcomes(await send_in(testbed, frame.message.to_bytes()))
    assert [item.outcome for item in outcomes] == [Outcome.RETRYABLE, Outcome.RETRYABLE, Outcome.STORED]
    assert all("already used" in item.detail for item in outcomes[:2])
    assert await held_for(testbed, delivered) == 400  # not stored again
    assert await held_for(testbed, fresh) == fresh.key


async def test_a_retried_frame_is_answered_from_the_log_and_spends_no_more_qkd_key(testbed: LocalTestbed) -> None:
    gw2 = testbed.gateways["GW2"]
    inbound, onwards = gw2.qkd_lanes.inbound("GW1"), gw2.qkd_lanes.outbound("GW3")
    entries = [entry(), entry(TO_GW3, "SAE-R3-A")]
    frame = await seal_in(testbed, entries, qkd=True)
    taken = (inbound.metrics.taken, onwards.metrics.taken)
    first = await send_in(testbed, frame.message.to_bytes())
    assert summary(frame.outcomes(first)) == [(Outcome.STORED, "GW2"), (Outcome.STORED, "GW3")]
    assert (inbound.metrics.taken, onwards.metrics.taken) == (taken[0] + 1, taken[1] + 1)  # hkdf: one per frame
    spent = (inbound.metrics.taken, onwards.metrics.taken, inbound.metrics.empty)
    counts = (gw2.metrics.counts.frames_received, gw2.metrics.counts.frames_sent)

    again = await send_in(testbed, frame.message.to_bytes())  # the sender got no answer: the same bytes
    assert (again.code, again.outcomes, again.confirmation) == (first.code, first.outcomes, first.confirmation)
    assert (inbound.metrics.taken, onwards.metrics.taken, inbound.metrics.empty) == spent  # no QKD key, none asked
    assert (gw2.metrics.counts.frames_received, gw2.metrics.counts.frames_sent) == counts  # not opened, not sent on
    for sent in entries:
        assert await held_for(testbed, sent) == sent.key
        assert await held_for(testbed, sent) == 400  # stored once


async def test_an_otp_require_qkd_link_short_of_key_refuses_what_it_cannot_pad(
    topology_keys: KeyDirectory, private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Two 64-byte keys over GW2-GW3 (require-qkd, otp) with four QKD keys left: the frame key and one
    two-key pad cover the first; the key left over is no pad for the second, which is refused (503)."""
    document = with_link(default_document(), ("GW2", "GW3"), qkd_use="otp")
    async with running_testbed(topology_keys, private_redis.url, ON_DEMAND, document=document) as testbed:
        gw2 = testbed.gateways["GW2"]
        testbed.kms["KMS-R2"].kms.set_qber("QKD-GW2-GW3", 0.3)  # the vendor halts the link: no refill
        lane = gw2.qkd_lanes.outbound("GW3")
        while await lane.level() > 4:
            await lane.take(1)
        caplog.set_level(logging.DEBUG, logger="relay.gateway.forwarding")
        bits, fallbacks = gw2.metrics.frame_qkd_bits["GW3"], gw2.metrics.counts.qkd_fallbacks
        entries = [entry(TO_GW3, "SAE-R3-A", size=64) for _ in range(2)]
        frame = await seal_in(testbed, entries)  # pqc-only from GW1, which GW1-GW2 (qkd+pqc) accepts
        outcomes = frame.outcomes(await send_in(testbed, frame.message.to_bytes()))
        assert [item.outcome for item in outcomes] == [Outcome.STORED, Outcome.QKD_EXHAUSTED]
        assert await lane.level() == 1  # the leftover QKD key was not spent as a partial pad
        assert gw2.metrics.frame_qkd_bits["GW3"] - bits == 3 * QKD_KEY_BITS
        assert gw2.metrics.counts.qkd_fallbacks == fallbacks  # require-qkd never degrades
        assert frames_to(caplog, "GW3") == [("qkd+pqc", 1)]
        assert await held_for(testbed, entries[0]) == entries[0].key
        assert await held_for(testbed, entries[1]) == 400


async def test_an_otp_qkd_pqc_link_short_of_key_seals_the_rest_pqc_only(
    topology_keys: KeyDirectory, private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Three 64-byte keys over GW1-GW2 (qkd+pqc, otp) with four QKD keys left: one is padded, the other
    two go pqc-only, counted as fallbacks and signed as such; the key left over is no partial pad."""
    document = with_link(default_document(), ("GW1", "GW2"), qkd_use="otp")
    async with running_testbed(topology_keys, private_redis.url, ON_DEMAND, document=document) as testbed:
        gw1 = testbed.gateways["GW1"]
        testbed.kms["KMS-R1"].kms.set_qber("QKD-GW1-GW2", 0.3)
        lane = gw1.qkd_lanes.outbound("GW2")
        while await lane.level() > 4:
            await lane.take(1)
        caplog.set_level(logging.DEBUG, logger="relay.gateway.forwarding")
        bits, fallbacks = gw1.metrics.frame_qkd_bits["GW2"], gw1.metrics.counts.qkd_fallbacks
        async with testbed.sae("SAE-R1-A") as master, testbed.sae("SAE-R2-A") as slave:
            issued = (await master.get_key("SAE-R2-A", KeyRequest(number=3, size=512))).keys
            fetched = await slave.get_key_with_ids("SAE-R1-A", [key.key_id for key in issued])
        assert [key.key for key in fetched.keys] == [key.key for key in issued]
        assert gw1.metrics.counts.qkd_fallbacks - fallbacks == 2
        assert gw1.metrics.frame_qkd_bits["GW2"] - bits == 3 * QKD_KEY_BITS
        assert await lane.level() == 1
        keys_by_mode: Counter[str] = Counter()
        for mode, keys in frames_to(caplog, "GW2"):
            keys_by_mode[mode] += keys
        assert keys_by_mode == {"qkd+pqc": 1, "pqc-only": 2}


async def test_keys_for_one_neighbour_coalesce_into_frames_of_at_most_frame_keys(
    topology_keys: KeyDirectory, private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    document = with_link(default_document(), ("GW1", "GW2"), frame_keys=4)
    async with running_testbed(topology_keys, private_redis.url, ON_DEMAND, document=document) as testbed:
        gw1, gw2 = testbed.gateways["GW1"], testbed.gateways["GW2"]
        caplog.set_level(logging.DEBUG, logger="relay.gateway.forwarding")
        frames, keys = gw1.metrics.frames["GW2"], gw1.metrics.frame_keys["GW2"]
        received = gw2.metrics.counts.frames_received
        async with testbed.sae("SAE-R1-A") as master:
            issued = (await master.get_key("SAE-R2-A", KeyRequest(number=10))).keys
        assert len(issued) == 10
        sent = gw1.metrics.frames["GW2"] - frames
        assert gw1.metrics.frame_keys["GW2"] - keys == 10
        assert 3 <= sent < 10 and gw2.metrics.counts.frames_received - received == sent
        sizes = [size for _, size in frames_to(caplog, "GW2")]
        assert len(sizes) == sent and sum(sizes) == 10 and max(sizes) <= 4
