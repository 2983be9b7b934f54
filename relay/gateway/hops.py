"""What a hop frame answers, as the relay engine sees it, and the transport contract frames travel over.

A frame carries many keys to one neighbour (:mod:`relay.crypto.frame`); its answer comes once every key
in it has its final outcome: stored at its last gateway, or failed. One :class:`ItemOutcome` per key, in
the frame's item order, encoded canonically (:func:`encode_outcomes`) because the receiver's key
confirmation authenticates exactly those bytes; so one bad key fails alone, and no neighbour can change
another key's outcome without breaking the confirmation.

:mod:`relay.gateway.hop_transport` carries the sealed bytes and the :class:`FrameAnswer`; the engine
imports no transport code. A transport keeps one invariant the engine relies on: a frame it retries is
the very same sealed message (the receiver answers it at most once), and every failure of the whole frame
reaches the engine as a domain exception of :mod:`relay.gateway.errors`.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Protocol

from relay.crypto import EncapsulationKey, VoidOrder
from relay.crypto.encoding import decode_fields, encode_fields, encode_uint, parse_text, parse_uint
from relay.crypto.errors import HopError, MalformedMessage
from relay.gateway.errors import QkdExhausted, RelayFailed, TransferRefused
from relay.pool import PoolError

log = logging.getLogger(__name__)

MAX_REASON_SIZE = 200


class Outcome(enum.IntEnum):
    """How one key of a frame ended, as its sender must act on it."""

    STORED = 0  # held for the target SAE at ``detail`` (the last gateway's ID)
    QKD_EXHAUSTED = 1  # a QKD lane further on was dry under require-qkd or no-degrade: 503, nothing stored
    RETRYABLE = 2  # failed here or further on; a fresh key on a fresh route may succeed (void this one)
    FINAL = 3  # refused as a bad request (path, SAE, key_ID): no retry


@dataclass(frozen=True)
class ItemOutcome:
    outcome: Outcome
    detail: str  # stored: the gateway holding the key; else a short reason, never key material
    down_link: tuple[str, str] | None = None  # a link found cut on the way, for the originator to avoid

    @classmethod
    def stored(cls, gateway_id: str) -> ItemOutcome:
        return cls(Outcome.STORED, gateway_id)

    @classmethod
    def of_failure(cls, exc: BaseException) -> ItemOutcome:
        """The outcome a key's failure is reported upstream as; an unforeseen error is final (and logged)."""
        if isinstance(exc, QkdExhausted):
            return cls(Outcome.QKD_EXHAUSTED, exc.message[:MAX_REASON_SIZE])
        if isinstance(exc, RelayFailed):  # failed further on: the origin starts over with a fresh key
            return cls(Outcome.RETRYABLE, exc.message[:MAX_REASON_SIZE], exc.down_link)
        if isinstance(exc, PoolError):
            return cls(Outcome.RETRYABLE, exc.public_message[:MAX_REASON_SIZE])
        if isinstance(exc, TransferRefused | HopError):
            return cls(Outcome.FINAL, f"{type(exc).__name__}: {exc}"[:MAX_REASON_SIZE])
        log.error("a relayed key failed on an unexpected error", exc_info=exc)
        return cls(Outcome.FINAL, "internal error")

    def failure(self, neighbour_id: str) -> RelayFailed:
        """The domain exception a failed outcome stands for at the sender."""
        if self.outcome is Outcome.QKD_EXHAUSTED:
            return QkdExhausted(self.detail)
        if self.outcome is Outcome.STORED:
            raise ValueError("a stored key has no failure")
        message = f"{neighbour_id}: {self.detail}"
        return RelayFailed(message, retryable=self.outcome is Outcome.RETRYABLE, down_link=self.down_link)


def encode_outcomes(outcomes: tuple[ItemOutcome, ...]) -> bytes:
    """One canonical encoding of every key's outcome, in item order: what the confirmation covers."""
    return encode_fields(
        *(
            encode_fields(
                encode_uint(item.outcome, 1),
                item.detail.encode(),
                b"" if item.down_link is None else ",".join(item.down_link).encode(),
            )
            for item in outcomes
        )
    )


def decode_outcomes(data: bytes, count: int) -> tuple[ItemOutcome, ...]:
    """Inverse of :func:`encode_outcomes` for a frame of ``count`` keys; raises :class:`MalformedMessage`."""
    outcomes = []
    for encoded in decode_fields(data, count):
        kind, detail, down = decode_fields(encoded, 3)
        try:
            outcome = Outcome(parse_uint(kind, 1, "outcome"))
        except ValueError:
            raise MalformedMessage("unknown outcome") from None
        link = parse_text(down, "down link").split(",") if down else None
        if link is not None and len(link) != 2:
            raise MalformedMessage("a down link names two gateways")
        outcomes.append(
            ItemOutcome(outcome, parse_text(detail, "detail"), None if link is None else (link[0], link[1]))
        )
    return tuple(outcomes)


@dataclass(frozen=True)
class FrameAnswer:
    """The next gateway's answer to a frame: every key's outcome and its confirmation of those bytes."""

    outcomes: bytes
    confirmation: bytes = field(repr=False)


@dataclass(frozen=True)
class VoidRequest:
    """Withdraw ``key_ids`` held for the target SAE at the last gateway of ``path``; ``hop`` as in a hop.

    ``nonce``, ``issued_at_ms`` and ``signature`` are ``path[0]``'s signature over the rest
    (:mod:`relay.crypto.void`); the hop index is not signed, since each gateway sets it as it passes on.
    """

    key_ids: tuple[str, ...]
    initiator_sae_id: str
    target_sae_ids: tuple[str, ...]
    path: tuple[str, ...]
    hop: int
    nonce: bytes
    issued_at_ms: int
    signature: bytes = field(repr=False)

    def order(self) -> VoidOrder:
        """The signed part; the caller has checked there is exactly one target SAE."""
        (target,) = self.target_sae_ids
        return VoidOrder(self.key_ids, self.initiator_sae_id, target, self.path, self.nonce, self.issued_at_ms)


class HopTransport(Protocol):
    """The sending side of the gateway-to-gateway transport (unary gRPC frames)."""

    async def encapsulation_key(self, neighbour_id: str) -> EncapsulationKey:
        """The neighbour's current, verified ML-KEM key; raises :class:`RelayFailed` when it cannot be had."""
        ...

    async def reachable(self, neighbour_id: str) -> bool:
        """Whether the neighbour's process answers (probed now unless it answered a moment ago)."""
        ...

    async def send_frame(self, neighbour_id: str, sealed_frame: bytes, keys: int, *, timeout_s: float) -> FrameAnswer:
        """Deliver one frame of ``keys`` keys, retrying transport failures with the same bytes; a failure of
        the whole frame raises :class:`RelayFailed`."""
        ...

    async def send_void(self, neighbour_id: str, request: VoidRequest, *, timeout_s: float) -> list[str]:
        """The key_IDs voided behind the neighbour; ``[]`` when it cannot be reached (voiding is best effort)."""
        ...


class FrameHandler(Protocol):
    """The receiving side: what a transport server hands each authenticated frame to."""

    async def receive_frame(self, sealed_frame: bytes, sender: str, time_left_s: float | None) -> FrameAnswer: ...


class VoidHandler(Protocol):
    async def receive_void(self, request: VoidRequest, sender: str) -> list[str]: ...
