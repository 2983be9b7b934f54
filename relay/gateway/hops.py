"""What one hop carries, as the relay engine sees it, and the transport contract it travels over.

The engine builds and answers these plain values; :mod:`relay.gateway.hop_transport` turns them into
gRPC messages and back, so the engine imports no transport code. A transport keeps one invariant the
engine relies on: a hop it retries is the very same sealed message (the receiver answers it at most
once), and every failure reaches the engine as a domain exception of :mod:`relay.gateway.errors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from relay.crypto import EncapsulationKey, VoidOrder


@dataclass(frozen=True)
class HopRequest:
    """Hop ``hop`` of a transfer along ``path``: ``path[hop]`` sends the sealed key to ``path[hop + 1]``."""

    transfer_id: bytes
    path: tuple[str, ...]
    hop: int
    initiator_sae_id: str
    target_sae_ids: tuple[str, ...]
    sealed_hop: bytes
    extension_json: str = ""
    no_degrade: bool = False  # see the proto: forbids sealing qkd+pqc hops pqc-only further on


@dataclass(frozen=True)
class HopResult:
    """The next gateway's answer: its key confirmation, sent once the key is stored at ``stored_at``."""

    key_confirmation: bytes
    stored_at: str


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
    """The sending side of the gateway-to-gateway transport (unary gRPC today)."""

    async def encapsulation_key(self, neighbour_id: str) -> EncapsulationKey:
        """The neighbour's current, verified ML-KEM key; raises :class:`RelayFailed` when it cannot be had."""
        ...

    async def reachable(self, neighbour_id: str) -> bool:
        """Whether the neighbour's process answers (probed now unless it answered a moment ago)."""
        ...

    async def send_hop(self, neighbour_id: str, request: HopRequest, *, timeout_s: float) -> HopResult:
        """Deliver one hop, retrying transport failures with the same message; raises :class:`RelayFailed`."""
        ...

    async def send_void(self, neighbour_id: str, request: VoidRequest, *, timeout_s: float) -> list[str]:
        """The key_IDs voided behind the neighbour; ``[]`` when it cannot be reached (voiding is best effort)."""
        ...


class HopHandler(Protocol):
    """The receiving side: what a transport server hands each authenticated request to."""

    async def receive(self, request: HopRequest, sender: str, time_left_s: float | None) -> HopResult: ...


class VoidHandler(Protocol):
    async def receive_void(self, request: VoidRequest, sender: str) -> list[str]: ...
