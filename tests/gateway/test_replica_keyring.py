"""Two real replicas of GW2 (two gateway engines on GW2's Redis, own gRPC ports): a frame GW1 seals to the
encapsulation key replica 1 announced opens at replica 2, and so does one sealed to a key another replica
published after replica 2 loaded the ring. Real gRPC, mutual TLS, ML-KEM and Redis."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import grpc
import pytest

from relay.crypto import (
    EncapsulationKey,
    HopMode,
    load_identity,
    load_kem_provider,
    load_trust_store,
    seal_frame,
    system_clock_ms,
)
from relay.crypto.at_rest import StorageCipher, load_or_create_storage_key
from relay.domain import gateway_key_prefix
from relay.gateway.config import GatewaySettings
from relay.gateway.hops import Outcome
from relay.gateway.peers import Peer
from relay.gateway.service import RunningGateway, start_gateway
from relay.gateway.shared_keyring import SharedKeyRing
from relay.pki.layout import KeyDirectory
from relay.pool import RedisBackend, RedisConfig
from relay.pool.ek_store import EncapsulationKeyStore
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from tests.support.hand_sealed_hops import TIMEOUT_S, Answer, HandSealed, entry, seal_in
from tests.support.local_testbed import LocalTestbed, running_testbed
from tests.support.ports import free_port
from tests.support.redis_servers import RedisServer

ON_DEMAND = GatewaySettings(prerelay=False)


@pytest.fixture
async def testbed(topology_keys: KeyDirectory, private_redis: RedisServer) -> AsyncIterator[LocalTestbed]:
    async with running_testbed(topology_keys, private_redis.url, ON_DEMAND) as running:
        yield running


@pytest.fixture
async def replica2(testbed: LocalTestbed) -> AsyncIterator[RunningGateway]:
    """GW2 again, on ports of its own: same identity, certificates, storage key and Redis."""
    first = testbed.gateways["GW2"].plan
    ports = {"grpc_port": free_port(), "etsi014_port": free_port(), "etsi020_port": free_port(), "admin_port": None}
    plan = dataclasses.replace(first, gateway=dataclasses.replace(first.gateway, **ports))
    running = await start_gateway(plan, dataclasses.replace(ON_DEMAND, redis_url=first.redis_url), testbed.keys)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def gw1_to_replica2(testbed: LocalTestbed, replica2: RunningGateway) -> AsyncIterator[Peer]:
    """GW1's channel to replica 2 (GW1's certificate, GW2's pinned identity)."""
    neighbour = testbed.gateways["GW1"].plan.neighbours["GW2"]
    neighbour = dataclasses.replace(
        neighbour, gateway=dataclasses.replace(neighbour.gateway, grpc_port=replica2.grpc_port)
    )
    peer = Peer(neighbour, testbed.keys, "GW1", load_trust_store(testbed.keys.identities), system_clock_ms)
    try:
        yield peer
    finally:
        await peer.close()


async def relay_to(peer: Peer, sealed: bytes) -> Answer:
    try:
        answer = await peer.relay.RelayFrame(pb.RelayFrameRequest(sealed_frame=sealed), timeout=TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        return Answer(exc.code(), exc.details() or "")
    return Answer(grpc.StatusCode.OK, "", answer.outcomes, answer.key_confirmation)


async def test_a_frame_sealed_to_replica_1s_key_opens_at_replica_2(
    testbed: LocalTestbed, gw1_to_replica2: Peer
) -> None:
    from_replica_1 = await testbed.gateways["GW1"].peers["GW2"].encapsulation_key()
    assert await gw1_to_replica2.encapsulation_key() == from_replica_1  # one ring, whichever replica answers
    frame = await seal_in(testbed)  # sealed to the key GW1 fetched from replica 1
    assert frame.message.header.ek_id == from_replica_1.ek_id
    [outcome] = frame.outcomes(await relay_to(gw1_to_replica2, frame.message.to_bytes()))
    assert (outcome.outcome, outcome.detail) == (Outcome.STORED, "GW2")


async def test_a_key_published_after_replica_2_loaded_the_ring_opens_there(
    testbed: LocalTestbed, private_redis: RedisServer, gw1_to_replica2: Peer
) -> None:
    """Another replica rotates; replica 2 reloads the ring for the first frame that names the new key."""
    keys = testbed.keys
    cipher = StorageCipher(load_or_create_storage_key(keys.root / "storage" / "GW2.key"))
    async with RedisBackend.connect(RedisConfig(private_redis.admin_url)) as backend:
        another_replica = SharedKeyRing(
            load_identity("GW2", keys.identities),
            EncapsulationKeyStore(backend, cipher, gateway_key_prefix("GW2")),
            kem=load_kem_provider(),
            clock=system_clock_ms,
        )
        announcement = await another_replica.rotate()
    rotated = announcement.verify(load_trust_store(keys.identities), system_clock_ms())
    frame = sealed_by_gw1(testbed, rotated)
    [outcome] = frame.outcomes(await relay_to(gw1_to_replica2, frame.message.to_bytes()))
    assert (outcome.outcome, outcome.detail) == (Outcome.STORED, "GW2")


def sealed_by_gw1(testbed: LocalTestbed, recipient: EncapsulationKey) -> HandSealed:
    """One pqc-only frame of one key from GW1, sealed to ``recipient`` (as GW1 would once it fetched it)."""
    entries = (entry(),)
    pending = seal_frame(
        entries,
        recipient=recipient,
        identity=load_identity("GW1", testbed.keys.identities),
        mode=HopMode.PQC_ONLY,
        qkd_use=testbed.gateways["GW1"].plan.neighbours["GW2"].qkd_use,
        qkd_key=None,
        pad_keys=[],
        kem=load_kem_provider(),
        clock=system_clock_ms,
    )
    return HandSealed(pending, entries)
