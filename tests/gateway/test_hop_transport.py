"""The hop transport as a round trip over real gRPC with mutual TLS: what a receiving engine answers or
raises for a frame reaches the sending engine as the domain answer or failure the contract promises.

GW2's side is a real ``grpc.aio`` server running :class:`KeyRelayService` over a scripted handler, and the
standard health service whose status the test sets; GW1's side is the real :class:`GrpcHopTransport` over
a real :class:`Peer` channel, with GW1's certificate, and real liveness probes of GW2.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from relay import topology as topology_module
from relay.crypto import system_clock_ms
from relay.crypto.errors import BadSignature, UnknownEncapsulationKey
from relay.crypto.identity import load_trust_store
from relay.gateway.config import plan_gateway
from relay.gateway.errors import RelayFailed, TransferInProgress, TransferRefused
from relay.gateway.grpc_tls import server_credentials
from relay.gateway.hop_transport import GrpcHopTransport, KeyRelayService
from relay.gateway.hops import FrameAnswer, ItemOutcome, Outcome, VoidRequest, encode_outcomes
from relay.gateway.lane_levels import LaneBoard
from relay.gateway.link_health import LinkHealth
from relay.gateway.liveness import LivenessSettings, NeighbourLiveness
from relay.gateway.peers import Peer
from relay.gateway.relay_events import RelayObserver
from relay.pki.layout import KeyDirectory
from relay.pool import PoolUnavailable
from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc
from tests.support.waiting import wait_until

HOP_ATTEMPTS = 3
LIVENESS = LivenessSettings(suspect_after_s=0.2, probe_timeout_s=0.5, reprobe_interval_s=0.1, quiet_s=0.0)
FRAME = b"\x01sealed frame of two keys"  # opaque to the transport: it carries the bytes, never reads them
KEYS = 2
ANSWER = FrameAnswer(
    encode_outcomes((ItemOutcome.stored("GW3"), ItemOutcome(Outcome.RETRYABLE, "GW3: lane dry"))), b"confirmation"
)
VOID = VoidRequest(
    ("k1", "k2"), "SAE-R1-A", ("SAE-R3-A",), ("GW1", "GW2", "GW3"), 0, bytes(range(32)), 1_700_000_000_123, b"\x02sig"
)


@dataclass
class ScriptedReceiver:
    """GW2's engine and voiding: records what arrived, then answers or raises what the test says."""

    answer: Callable[[], FrameAnswer] = lambda: ANSWER
    voided: Callable[[], list[str]] = lambda: ["k1"]
    delay_s: float = 0.0
    frames: list[tuple[bytes, str, float | None]] = field(default_factory=list)
    voids: list[tuple[VoidRequest, str]] = field(default_factory=list)

    async def receive_frame(self, sealed_frame: bytes, sender: str, time_left_s: float | None) -> FrameAnswer:
        self.frames.append((sealed_frame, sender, time_left_s))
        await asyncio.sleep(self.delay_s)
        return self.answer()

    async def receive_void(self, request: VoidRequest, sender: str) -> list[str]:
        self.voids.append((request, sender))
        return self.voided()


async def measure_nothing() -> None:
    """GW2's lane measurement: the test sets GW2's levels on its board itself."""


def raising(exc: Exception) -> Callable[[], FrameAnswer]:
    def answer() -> FrameAnswer:
        raise exc

    return answer


@dataclass
class Wire:
    receiver: ScriptedReceiver
    transport: GrpcHopTransport
    health: LinkHealth
    observer: RelayObserver
    peer: Peer
    gw2_health: health.aio.HealthServicer
    gw1_board: LaneBoard  # what GW1 learns from GW2's answers
    gw2_board: LaneBoard  # what GW2's answers report

    async def gw2_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.gw2_health.set("", status)


@pytest.fixture
async def wire(topology_keys: KeyDirectory) -> AsyncIterator[Wire]:
    receiver = ScriptedReceiver()
    server = grpc.aio.server()
    links = topology_module.load_default().links
    gw1_board, gw2_board = (LaneBoard(gateway, links, fresh_s=60) for gateway in ("GW1", "GW2"))
    rpc.add_KeyRelayServicer_to_server(KeyRelayService(receiver, receiver, gw2_board, measure_nothing), server)
    gw2_health = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(gw2_health, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(topology_keys, "GW2"))
    await server.start()
    plan = plan_gateway(topology_module.load_default(), "GW1")
    gw2 = plan.neighbours["GW2"]
    neighbour = replace(gw2, gateway=replace(gw2.gateway, host="127.0.0.1", grpc_port=port))
    peer = Peer(neighbour, topology_keys, "GW1", load_trust_store(topology_keys.identities), system_clock_ms)
    assert await peer.wait_ready(10)
    liveness = NeighbourLiveness({"GW2": lambda: peer.probe(LIVENESS.probe_timeout_s)}, LIVENESS)
    health_view = LinkHealth(plan.topology.links, {"GW2": neighbour.link}, liveness, link_down_s=30)
    observer = RelayObserver()
    transport = GrpcHopTransport("GW1", {"GW2": peer}, health_view, observer, gw1_board, hop_attempts=HOP_ATTEMPTS)
    wire = Wire(receiver, transport, health_view, observer, peer, gw2_health, gw1_board, gw2_board)
    await wire.gw2_serving(True)
    try:
        yield wire
    finally:
        await liveness.close()
        await peer.close()
        await server.stop(None)


async def test_a_frame_and_its_answer_cross_unchanged(wire: Wire) -> None:
    result = await wire.transport.send_frame("GW2", FRAME, KEYS, timeout_s=5)
    assert result == ANSWER  # every key's outcome and the confirmation, byte for byte
    [(received, sender, time_left_s)] = wire.receiver.frames
    assert received == FRAME and sender == "GW1"  # the sender is GW1's certificate, not a field
    assert time_left_s is not None and 0 < time_left_s < 6  # the deadline travelled, give or take clock skew
    assert wire.observer.counts.hop_retries == 0 and not wire.health.down_links()


async def test_frame_answers_carry_the_receivers_lane_levels_success_or_failure(wire: Wire) -> None:
    """GW2's outbound levels reach GW1 on an answered frame, and a lane found dry on the very refusal."""
    wire.gw2_board.measured("GW3", 5)
    wire.gw2_board.measured("GW1", 7)
    await wire.transport.send_frame("GW2", FRAME, KEYS, timeout_s=5)
    assert (wire.gw1_board.level("GW2", "GW3"), wire.gw1_board.level("GW2", "GW1")) == (5, 7)
    assert wire.gw1_board.dry() == frozenset()

    wire.gw2_board.found_short("GW3")
    wire.receiver.answer = raising(RelayFailed("storage unavailable", retryable=True))
    with pytest.raises(RelayFailed):
        await wire.transport.send_frame("GW2", FRAME, KEYS, timeout_s=5)
    assert wire.gw1_board.dry() == {("GW2", "GW3")}


async def test_lane_levels_are_asked_of_the_neighbour(wire: Wire) -> None:
    wire.gw2_board.measured("GW3", 3)
    await wire.transport.ask_lanes("GW2")
    assert wire.gw1_board.level("GW2", "GW3") == 3 and wire.receiver.frames == []


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
        await wire.transport.send_frame("GW2", FRAME, KEYS, timeout_s=5)
    assert type(failure.value) is expected_type
    assert (failure.value.message, failure.value.retryable, failure.value.down_link) == (message, retryable, None)
    assert len(wire.receiver.frames) == 1 and wire.observer.counts.hop_retries == 0
    assert not wire.health.down_links()


async def test_a_down_link_named_by_a_keys_outcome_is_routed_around_at_the_sender(wire: Wire) -> None:
    """A frame answered OK whose outcome for one key names a link found cut further on: the answer is
    handed on unchanged (the forwarder checks its confirmation), and routing avoids that link."""
    outcomes = (ItemOutcome.stored("GW2"), ItemOutcome(Outcome.RETRYABLE, "GW3 did not answer", ("GW2", "GW3")))
    wire.receiver.answer = lambda: FrameAnswer(encode_outcomes(outcomes), b"confirmation")
    answer = await wire.transport.send_frame("GW2", FRAME, KEYS, timeout_s=5)
    assert answer == FrameAnswer(encode_outcomes(outcomes), b"confirmation")
    assert {link.gateways for link in wire.health.down_links()} == {("GW2", "GW3")}


async def test_an_unreadable_answer_is_handed_on_and_names_no_down_link(wire: Wire) -> None:
    """Outcomes that do not decode for this many keys: the forwarder refuses them; no link is marked."""
    wire.receiver.answer = lambda: FrameAnswer(b"\xff not outcomes", b"confirmation")
    assert (await wire.transport.send_frame("GW2", FRAME, KEYS, timeout_s=5)).outcomes == b"\xff not outcomes"
    assert not wire.health.down_links()


async def test_a_downstream_cut_is_routed_around_at_the_sender(wire: Wire) -> None:
    """ABORTED with the down-link metadata: retryable, and the reported link is down for routing."""
    wire.receiver.answer = raising(RelayFailed("GW3 did not answer", retryable=True, down_link=("GW2", "GW3")))
    with pytest.raises(RelayFailed) as failure:
        await wire.transport.send_frame("GW2", FRAME, KEYS, timeout_s=5)
    assert (failure.value.message, failure.value.retryable) == ("GW2: GW3 did not answer", True)
    assert {link.gateways for link in wire.health.down_links()} == {("GW2", "GW3")}


@pytest.mark.parametrize(
    "raised", [TransferInProgress("transfer is being processed"), PoolUnavailable("Redis is down")]
)
async def test_ask_again_answers_resend_the_same_message_then_probe_the_neighbour(
    wire: Wire, raised: Exception
) -> None:
    """UNAVAILABLE: resent, then retryable; the neighbour is down only if its probe fails."""
    wire.receiver.answer = raising(raised)
    with pytest.raises(RelayFailed) as failure:
        await wire.transport.send_frame("GW2", FRAME, KEYS, timeout_s=5)
    assert failure.value.message == "gateway GW2 did not answer (UNAVAILABLE)"
    assert failure.value.retryable and failure.value.down_link == ("GW1", "GW2")
    assert [sealed for sealed, _, _ in wire.receiver.frames] == [FRAME] * HOP_ATTEMPTS
    assert wire.observer.counts.hop_retries == HOP_ATTEMPTS - 1
    assert wire.health.liveness.counts["GW2"].answered == 1  # probed before the failure was reported
    assert wire.health.reachable("GW2") and not wire.health.down_links()  # it answered its probe: alive

    await wire.gw2_serving(False)  # now its storage is down too: the next failure's probe fails
    with pytest.raises(RelayFailed):
        await wire.transport.send_frame("GW2", FRAME, KEYS, timeout_s=5)
    assert not wire.health.reachable("GW2")  # the failure is reported after the failed probe
    assert {link.gateways for link in wire.health.down_links()} == {("GW1", "GW2")}


async def test_an_answer_too_late_probes_but_does_not_blame_a_live_neighbour(wire: Wire) -> None:
    """A frame's answer includes the hops behind it: a missed deadline alone never marks the neighbour down."""
    wire.receiver.delay_s = 1.0
    with pytest.raises(RelayFailed) as failure:
        await wire.transport.send_frame("GW2", FRAME, KEYS, timeout_s=0.5)
    assert failure.value.message == "gateway GW2 did not answer (DEADLINE_EXCEEDED)"
    assert failure.value.retryable and failure.value.down_link == ("GW1", "GW2")
    assert wire.health.liveness.counts["GW2"].answered >= 1 and wire.health.reachable("GW2")  # probed: alive


async def test_a_slow_frame_to_a_live_neighbour_is_awaited(wire: Wire) -> None:
    wire.receiver.delay_s = 1.0  # well past suspect_after_s: probed, answers, the frame goes on
    assert await wire.transport.send_frame("GW2", FRAME, KEYS, timeout_s=5) == ANSWER
    assert wire.health.liveness.counts["GW2"].answered > 0 and wire.health.reachable("GW2")


async def test_a_frame_waiting_on_a_neighbour_that_fails_its_probe_is_abandoned(wire: Wire) -> None:
    wire.receiver.delay_s = 30.0
    await wire.gw2_serving(False)
    with pytest.raises(RelayFailed) as failure:
        await wire.transport.send_frame("GW2", FRAME, KEYS, timeout_s=20)
    assert failure.value.message == "gateway GW2 failed its liveness probe"
    assert failure.value.retryable and failure.value.down_link == ("GW1", "GW2")
    assert not wire.health.reachable("GW2") and len(wire.receiver.frames) == 1  # abandoned, not resent

    with pytest.raises(RelayFailed, match="failed its liveness probe"):  # while down: refused at once
        await wire.transport.send_frame("GW2", FRAME, KEYS, timeout_s=20)
    assert len(wire.receiver.frames) == 1
    assert await wire.transport.send_void("GW2", VOID, timeout_s=5) == []


async def test_a_down_neighbour_is_back_once_a_probe_succeeds_not_when_its_channel_is_ready(wire: Wire) -> None:
    await wire.gw2_serving(False)
    await wire.health.neighbour_failed("GW2")
    assert not wire.health.reachable("GW2")
    assert wire.peer.is_connected()  # the channel is READY all along: that alone does not bring it back
    await asyncio.sleep(LIVENESS.reprobe_interval_s * 3)
    assert not wire.health.reachable("GW2")
    await wire.gw2_serving(True)
    await wait_until(lambda: wire.health.reachable("GW2"), timeout_s=10, what="GW2 back after a good probe")
    assert await wire.transport.send_frame("GW2", FRAME, KEYS, timeout_s=5) == ANSWER
