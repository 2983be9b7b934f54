"""The hop transport over unary gRPC: both ends of the KeyRelay contract in one place.

Sending (:class:`GrpcHopTransport`, a :class:`relay.gateway.hops.HopTransport`): carries a sealed frame
in a RelayFrameRequest (or a VoidKeysRequest built from the engine's values), retries transport failures
with the very same bytes, and decodes every failure of a whole frame into a domain exception. Receiving
(:class:`KeyRelayService`): hands each frame's bytes (or a :class:`VoidRequest`) to the engine, and
encodes its answer or failure. Each key's own outcome travels inside the answer
(:mod:`relay.gateway.hops`); a down link an outcome names is reported to :class:`LinkHealth` here, as
one named in the trailing metadata of a failed frame is.

Unary calls, one frame each, rather than a stream per neighbour: a frame carries up to ``frame_keys``
keys, so the per-call cost is spread over them, and a unary call keeps its own deadline, its retry with
the same bytes and its liveness watch. The status codes of a whole frame, both ways:

- UNAVAILABLE, DEADLINE_EXCEEDED: the peer did not answer (or asks to be asked again: a transfer in
  progress, its storage down); resent with the same message, and the peer is probed
  (:mod:`relay.gateway.liveness`): only a failed probe marks its link down. A call still waiting when
  the peer fails its probe is abandoned as a retryable failure.
- RESOURCE_EXHAUSTED: gRPC refused the frame (too large for the peer): final. (A ``require-qkd`` stall
  is a key's outcome now, not a status of the frame.)
- FAILED_PRECONDITION: the receiver does not know our copy of its encapsulation key; fetch a fresh one.
- ABORTED: the transfer failed further on; void and start over. Trailing metadata ``qkdr-down-link``
  names a link found cut there, so the originator routes around it.
- INVALID_ARGUMENT, PERMISSION_DENIED: a refused frame; final.

Every RelayFrame answer, success or failure, carries the receiver's QKD lane levels as trailing metadata
``qkdr-lanes`` (:mod:`relay.gateway.lane_levels`); the sender learns them into its :class:`LaneBoard`.

Details carry a short reason and never key material.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import grpc

from relay.crypto import EncapsulationKey
from relay.crypto.errors import HopError, TrustError, UnknownEncapsulationKey
from relay.gateway.errors import RelayFailed, TransferInProgress, TransferRefused
from relay.gateway.grpc_tls import ServicerContext, calling_gateway
from relay.gateway.hops import FrameAnswer, FrameHandler, VoidHandler, VoidRequest, decode_outcomes
from relay.gateway.lane_levels import LANES_METADATA, LaneBoard, decode, encode
from relay.gateway.link_health import LinkHealth
from relay.gateway.liveness import NeighbourDown
from relay.gateway.peers import Peer
from relay.gateway.relay_events import RelayObserver
from relay.pool import PoolError
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc

log = logging.getLogger(__name__)

T = TypeVar("T")

DOWN_LINK_METADATA = "qkdr-down-link"  # trailing metadata naming a link a downstream gateway found cut
TRANSPORT_FAILURES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
"""Codes that say nothing about the request itself: the peer did not answer (in time)."""
RETRY_PAUSE_S = 0.1  # times the attempt number
MIN_CALL_TIMEOUT_S = 0.05
LANES_TIMEOUT_S = 0.5  # a LaneLevels call; unanswered, the refusal stands on what was reported


# ----- messages ------------------------------------------------------------------------------------


def void_request_to_proto(request: VoidRequest) -> pb.VoidKeysRequest:
    return pb.VoidKeysRequest(
        key_ids=list(request.key_ids),
        initiator_sae_id=request.initiator_sae_id,
        target_sae_ids=list(request.target_sae_ids),
        path=list(request.path),
        hop=request.hop,
        nonce=request.nonce,
        issued_at_ms=request.issued_at_ms,
        signature=request.signature,
    )


def void_request_from_proto(message: pb.VoidKeysRequest) -> VoidRequest:
    return VoidRequest(
        key_ids=tuple(message.key_ids),
        initiator_sae_id=message.initiator_sae_id,
        target_sae_ids=tuple(message.target_sae_ids),
        path=tuple(message.path),
        hop=message.hop,
        nonce=message.nonce,
        issued_at_ms=message.issued_at_ms,
        signature=message.signature,
    )


# ----- sending ---------------------------------------------------------------------------------------


class GrpcHopTransport:
    """Hops and voids to the neighbours' gRPC servers; tells ``health`` which links answer."""

    def __init__(
        self,
        own_id: str,
        peers: Mapping[str, Peer],
        health: LinkHealth,
        observer: RelayObserver,
        board: LaneBoard,
        *,
        hop_attempts: int,
    ) -> None:
        self._own_id = own_id
        self._peers = peers
        self._health = health
        self._board = board
        self._observer = observer
        self._hop_attempts = hop_attempts

    async def encapsulation_key(self, neighbour_id: str) -> EncapsulationKey:
        peer = self._peers[neighbour_id]
        try:
            return await self._health.liveness.watch(neighbour_id, peer.encapsulation_key)
        except grpc.aio.AioRpcError as exc:
            raise await self._failure(peer, exc) from None
        except NeighbourDown as exc:
            raise self._abandoned(exc) from None
        except TrustError as exc:
            raise RelayFailed(f"{peer.id} sent an encapsulation key we cannot trust: {exc}", retryable=False) from exc

    async def reachable(self, neighbour_id: str) -> bool:
        return await self._health.liveness.alive(neighbour_id)

    async def send_frame(self, neighbour_id: str, sealed_frame: bytes, keys: int, *, timeout_s: float) -> FrameAnswer:
        peer = self._peers[neighbour_id]
        message = pb.RelayFrameRequest(sealed_frame=sealed_frame)
        deadline = time.monotonic() + timeout_s
        for attempt in range(1, self._hop_attempts + 1):
            calls: list[grpc.aio.UnaryUnaryCall[pb.RelayFrameRequest, pb.RelayFrameResponse]] = []

            def start() -> grpc.aio.UnaryUnaryCall[pb.RelayFrameRequest, pb.RelayFrameResponse]:
                calls.append(
                    peer.relay.RelayFrame(message, timeout=max(MIN_CALL_TIMEOUT_S, deadline - time.monotonic()))
                )
                return calls[-1]

            try:
                answer = await self._health.liveness.watch(neighbour_id, start)
            except NeighbourDown as exc:
                raise self._abandoned(exc) from None
            except grpc.aio.AioRpcError as exc:
                transport = exc.code() in TRANSPORT_FAILURES
                if transport and attempt < self._hop_attempts and time.monotonic() < deadline:
                    self._observer.counts.hop_retries += 1
                    await asyncio.sleep(RETRY_PAUSE_S * attempt)
                    continue  # the very same sealed frame: the receiver answers it at most once
                raise await self._failure(peer, exc) from None
            self._learn(await calls[-1].trailing_metadata())
            self._learn_down_links(answer.outcomes, keys)
            return FrameAnswer(answer.outcomes, answer.key_confirmation)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def send_void(self, neighbour_id: str, request: VoidRequest, *, timeout_s: float) -> list[str]:
        peer = self._peers[neighbour_id]
        try:
            message = void_request_to_proto(request)
            answer = await self._health.liveness.watch(
                neighbour_id, lambda: peer.relay.VoidKeys(message, timeout=timeout_s)
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("void of %d keys via %s failed: %s", len(request.key_ids), peer.id, exc.details())
            return []
        except NeighbourDown as exc:
            log.warning("void of %d keys via %s abandoned: %s", len(request.key_ids), peer.id, exc)
            return []
        return list(answer.voided_key_ids)

    async def ask_lanes(self, neighbour_id: str) -> None:
        """Ask the neighbour for the lane levels it knows now (its own measured now); a failure is no answer."""
        try:
            answer = await self._peers[neighbour_id].relay.LaneLevels(pb.LaneLevelsRequest(), timeout=LANES_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            log.debug("lane levels of %s not had: %s", neighbour_id, exc.code().name)
            return
        self._board.learn(decode(answer.lanes))

    def _learn(self, metadata: object) -> None:
        """Take the lane levels a neighbour's answer carries (none from an older gateway)."""
        lanes = dict(metadata or ()).get(LANES_METADATA)  # type: ignore[call-overload]
        if isinstance(lanes, str):
            self._board.learn(decode(lanes))

    def _learn_down_links(self, outcomes: bytes, keys: int) -> None:
        """Links the keys' outcomes found cut further on, for routing to avoid (the forwarder checks the
        confirmation of these bytes; an unreadable answer is refused there)."""
        try:
            decoded = decode_outcomes(outcomes, keys)
        except HopError:
            return
        for link in {item.down_link for item in decoded if item.down_link is not None}:
            self._health.remote_link_down(*link)

    def _abandoned(self, exc: NeighbourDown) -> RelayFailed:
        """A call abandoned because its neighbour failed its probe: retryable on another route."""
        a, b = sorted((self._own_id, exc.neighbour_id))
        return RelayFailed(str(exc), retryable=True, down_link=(a, b))

    async def _failure(self, peer: Peer, exc: grpc.aio.AioRpcError) -> RelayFailed:
        """The domain failure a status code stands for, acting on what it says about the links and keys."""
        code, details = exc.code(), exc.details() or ""
        if code in TRANSPORT_FAILURES:
            await self._health.neighbour_failed(peer.id)
            a, b = sorted((self._own_id, peer.id))
            return RelayFailed(f"gateway {peer.id} did not answer ({code.name})", retryable=True, down_link=(a, b))
        self._learn(exc.trailing_metadata())
        remote_down = dict(exc.trailing_metadata() or ()).get(DOWN_LINK_METADATA)
        if isinstance(remote_down, str) and remote_down.count(",") == 1:
            self._health.remote_link_down(*remote_down.split(","))
        if code is grpc.StatusCode.FAILED_PRECONDITION:
            peer.forget_encapsulation_key()  # it restarted with a new keyring: fetch its current key
        final = (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        retryable = code not in final
        return RelayFailed(f"{peer.id}: {details}", retryable=retryable)


# ----- receiving -------------------------------------------------------------------------------------


Metadata = tuple[tuple[str, str], ...]


async def answer_with_status(
    context: ServicerContext, work: Callable[[], Awaitable[T]], trailing: Callable[[], Metadata] = tuple
) -> T:
    """Run a handler body and turn each domain failure into the status code its sender acts on; the
    answer, success or failure, carries ``trailing()`` as trailing metadata (read once the work is done)."""
    try:
        result = await work()
    except Exception as exc:
        failure = _status_of(exc)
        if failure is None:
            raise
        code, details, metadata = failure
        context.set_trailing_metadata(trailing() + metadata)
        await context.abort(code, details)
        raise AssertionError("unreachable: abort() raises") from None
    context.set_trailing_metadata(trailing())
    return result


def _status_of(exc: Exception) -> tuple[grpc.StatusCode, str, Metadata] | None:
    """The status code, details and trailing metadata a domain failure is answered with; None: not ours."""
    if isinstance(exc, RelayFailed):
        down: Metadata = () if exc.down_link is None else ((DOWN_LINK_METADATA, ",".join(exc.down_link)),)
        return grpc.StatusCode.ABORTED, exc.message, down
    if isinstance(exc, TransferInProgress):
        return grpc.StatusCode.UNAVAILABLE, str(exc), ()
    if isinstance(exc, TransferRefused):
        return grpc.StatusCode.PERMISSION_DENIED, str(exc), ()
    if isinstance(exc, UnknownEncapsulationKey):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc), ()
    if isinstance(exc, HopError):
        return grpc.StatusCode.INVALID_ARGUMENT, f"{type(exc).__name__}: {exc}", ()
    if isinstance(exc, PoolError):
        log.warning("hop failed on key storage: %s", exc)
        return grpc.StatusCode.UNAVAILABLE, exc.public_message, ()
    return None


class KeyRelayService(rpc.KeyRelayServicer):
    """The receiving end: authenticates the calling gateway from its certificate, never from a field."""

    def __init__(
        self, frames: FrameHandler, voids: VoidHandler, board: LaneBoard, measure: Callable[[], Awaitable[None]]
    ) -> None:
        """``measure``: our own lane levels into ``board`` now."""
        self._frames = frames
        self._voids = voids
        self._board = board
        self._measure = measure

    def _lanes(self) -> Metadata:
        return ((LANES_METADATA, encode(self._board.reports())),)

    async def RelayFrame(self, request: pb.RelayFrameRequest, context: ServicerContext) -> pb.RelayFrameResponse:
        sender = await calling_gateway(context)
        answer = await answer_with_status(
            context,
            lambda: self._frames.receive_frame(request.sealed_frame, sender, context.time_remaining()),
            self._lanes,
        )
        return pb.RelayFrameResponse(outcomes=answer.outcomes, key_confirmation=answer.confirmation)

    async def LaneLevels(self, request: pb.LaneLevelsRequest, context: ServicerContext) -> pb.LaneLevelsResponse:
        await calling_gateway(context)
        await self._measure()
        return pb.LaneLevelsResponse(lanes=encode(self._board.reports()))

    async def VoidKeys(self, request: pb.VoidKeysRequest, context: ServicerContext) -> pb.VoidKeysResponse:
        sender = await calling_gateway(context)
        void = void_request_from_proto(request)
        voided = await answer_with_status(context, lambda: self._voids.receive_void(void, sender))
        not_voided = sorted(set(request.key_ids) - set(voided))
        return pb.VoidKeysResponse(voided_key_ids=voided, failed_to_void_key_ids=not_voided)
