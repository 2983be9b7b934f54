"""The hop transport as a round trip over real gRPC with mutual TLS: what a receiving engine answers or
raises reaches the sending engine as the domain result or failure the contract promises.

GW2's side is a real ``grpc.aio`` server running :class:`KeyRelayService` over a scripted handler; GW1's
side is the real :class:`GrpcHopTransport` over a real :class:`Peer` channel, with GW1's certificate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

import grpc
import pytest

from relay import topology as topology_module
from relay.crypto import system_clock_ms
from relay.crypto.errors import BadSignature, UnknownEncapsulationKey
from relay.crypto.identity import load_trust_store
from relay.gateway.config import plan_gateway
from relay.gateway.errors import QkdExhausted, RelayFailed, TransferInProgress, TransferRefused
from relay.gateway.grpc_tls import server_credentials
from relay.gateway.hop_transport import GrpcHopTransport, KeyRelayService
from relay.gateway.hops import HopRequest, HopResult, VoidRequest
from relay.gateway.link_health import LinkHealth
from relay.gateway.peers import Peer
from relay.gateway.relay_events import RelayObserver
from relay.pki.layout import KeyDirectory
from relay.pool import PoolUnavailable
from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc

HOP_ATTEMPTS = 3
REQUEST = HopRequest(
    transfer_id=bytes(range(16)),
    path=("GW1", "GW2", "GW3"),
    hop=0,
    initiator_sae_id="SAE-R1-A",
    target_sae_ids=("SAE-R3-A",),
    sealed_hop=b"\x01sealed",
    extension_json='{"x": 1}',
    no_degrade=True,
)
VOID = VoidRequest(
    ("k1", "k2"), "SAE-R1-A", ("SAE-R3-A",), ("GW1", "GW2", "GW3"), 0, bytes(range(32)), 1_700_000_000_123, b"\x02sig"
)


@dataclass
class ScriptedReceiver:
    """GW2's engine and voiding: records what arrived, then answers or raises what the test says."""

    answer: Callable[[], HopResult] = lambda: HopResult(b"confirmation", "GW3")
    voided: Callable[[], list[str]] = lambda: ["k1"]
    delay_s: float = 0.0
    hops: list[tuple[HopRequest, str, float | None]] = field(default_factory=list)
    voids: list[tuple[VoidRequest, str]] = field(default_factory=list)

    async def receive(self, request: HopRequest, sender: str, time_left_s: float | None) -> HopResult:
        self.hops.append((request, sender, time_left_s))
        await asyncio.sleep(self.delay_s)
        return self.answer()

    async def receive_void(self, request: VoidRequest, sender: str) -> list[str]:
        self.voids.append((request, sender))
        return self.voided()


def raising(exc: Exception) -> Callable[[], HopResult]:
    def answer() -> HopResult:
        raise exc

    return answer


@dataclass
class Wire:
    receiver: ScriptedReceiver
    transport: GrpcHopTransport
    health: LinkHealth
    observer: RelayObserver
    peer: Peer


@pytest.fixture
async def wire(topology_keys: KeyDirectory) -> AsyncIterator[Wire]:
    receiver = ScriptedReceiver()
    server = grpc.aio.server()
    rpc.add_KeyRelayServicer_to_server(KeyRelayService(receiver, receiver), server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(topology_keys, "GW2"))
    await server.start()
    plan = plan_gateway(topology_module.load_default(), "GW1")
    gw2 = plan.neighbours["GW2"]
    neighbour = replace(gw2, gateway=replace(gw2.gateway, host="127.0.0.1", grpc_port=port))
    peer = Peer(neighbour, topology_keys, "GW1", load_trust_store(topology_keys.identities), system_clock_ms)
    assert await peer.wait_ready(10)
    health = LinkHealth(
        plan.topology.links, {"GW2": neighbour.link}, {"GW2": lambda: False}, link_down_s=30
    )  # a channel that never reconnects by itself: what the transport marks down stays down
    observer = RelayObserver()
    transport = GrpcHopTransport("GW1", {"GW2": peer}, health, observer, hop_attempts=HOP_ATTEMPTS)
    try:
        yield Wire(receiver, transport, health, observer, peer)
    finally:
        await peer.close()
        await server.stop(None)


async def test_a_hop_and_its_answer_cross_unchanged(wire: Wire) -> None:
    result = await wire.transport.send_hop("GW2", REQUEST, timeout_s=5)
    assert result == HopResult(b"confirmation", "GW3")
    [(received, sender, time_left_s)] = wire.receiver.hops
    assert received == REQUEST and sender == "GW1"  # the sender is GW1's certificate, not a field
    assert time_left_s is not None and 0 < time_left_s < 6  # the deadline travelled, give or take clock skew
    assert wire.observer.counts.hop_retries == 0 and not wire.health.down_links()


async def test_a_void_and_its_answer_cross_unchanged(wire: Wire) -> None:
    assert await wire.transport.send_void("GW2", VOID, timeout_s=5) == ["k1"]
    assert wire.receiver.voids == [(VOID, "GW1")]  # nonce, issue time and signature included


async def test_a_failed_void_is_reported_as_nothing_voided(wire: Wire) -> None:
    def refused() -> list[str]:
        raise TransferRefused("not on the path")

    wire.receiver.voided = refused
    assert await wire.transport.send_void("GW2", VOID, timeout_s=5) == []


@pytest.mark.parametrize(
    ("raised", "expected_type", "message", "retryable"),
    [
        (QkdExhausted("QKD key on link Q12 is exhausted"), QkdExhausted, "QKD key on link Q12 is exhausted", False),
        (RelayFailed("GW3 is gone", retryable=False), RelayFailed, "GW2: GW3 is gone", True),
        (TransferRefused("hop 0 is not from GW1"), RelayFailed, "GW2: hop 0 is not from GW1", False),
        (UnknownEncapsulationKey("ek 0a unknown"), RelayFailed, "GW2: ek 0a unknown", True),
        (BadSignature("forged"), RelayFailed, "GW2: BadSignature: forged", False),
    ],
)
async def test_each_refusal_maps_to_its_domain_failure_at_the_sender(
    wire: Wire, raised: Exception, expected_type: type[RelayFailed], message: str, retryable: bool
) -> None:
    """Answered refusals are final for this message: sent once, never retried, the link stays up."""
    wire.receiver.answer = raising(raised)
    with pytest.raises(RelayFailed) as failure:
        await wire.transport.send_hop("GW2", REQUEST, timeout_s=5)
    assert type(failure.value) is expected_type
    assert (failure.value.message, failure.value.retryable, failure.value.down_link) == (message, retryable, None)
    assert len(wire.receiver.hops) == 1 and wire.observer.counts.hop_retries == 0
    assert not wire.health.down_links()


async def test_a_downstream_cut_is_routed_around_at_the_sender(wire: Wire) -> None:
    """ABORTED with the down-link metadata: retryable, and the reported link is down for routing."""
    wire.receiver.answer = raising(RelayFailed("GW3 did not answer", retryable=True, down_link=("GW2", "GW3")))
    with pytest.raises(RelayFailed) as failure:
        await wire.transport.send_hop("GW2", REQUEST, timeout_s=5)
    assert (failure.value.message, failure.value.retryable) == ("GW2: GW3 did not answer", True)
    assert {link.gateways for link in wire.health.down_links()} == {("GW2", "GW3")}


@pytest.mark.parametrize(
    "raised", [TransferInProgress("transfer is being processed"), PoolUnavailable("Redis is down")]
)
async def test_ask_again_answers_resend_the_same_message_then_mark_the_link_down(wire: Wire, raised: Exception) -> None:
    wire.receiver.answer = raising(raised)
    with pytest.raises(RelayFailed) as failure:
        await wire.transport.send_hop("GW2", REQUEST, timeout_s=5)
    assert failure.value.message == "gateway GW2 did not answer (UNAVAILABLE)"
    assert failure.value.retryable and failure.value.down_link == ("GW1", "GW2")
    assert [hop for hop, _, _ in wire.receiver.hops] == [REQUEST] * HOP_ATTEMPTS
    assert wire.observer.counts.hop_retries == HOP_ATTEMPTS - 1
    assert not wire.health.reachable("GW2")
    assert {link.gateways for link in wire.health.down_links()} == {("GW1", "GW2")}


async def test_an_answer_too_late_is_a_transport_failure(wire: Wire) -> None:
    wire.receiver.delay_s = 1.0
    with pytest.raises(RelayFailed) as failure:
        await wire.transport.send_hop("GW2", REQUEST, timeout_s=0.3)
    assert failure.value.message == "gateway GW2 did not answer (DEADLINE_EXCEEDED)"
    assert failure.value.retryable and failure.value.down_link == ("GW1", "GW2")
    assert not wire.health.reachable("GW2")


async def test_an_answer_marks_the_neighbour_reachable_again(wire: Wire) -> None:
    wire.health.neighbour_failed("GW2")
    assert not wire.health.reachable("GW2")
    await wire.transport.send_hop("GW2", REQUEST, timeout_s=5)
    assert wire.health.reachable("GW2")
