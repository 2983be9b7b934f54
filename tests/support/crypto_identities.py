"""Test helpers: real identities, key rings and QKD keys; only time and the KMS are simulated."""

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay.crypto.header import HopMode
from relay.crypto.hop import HopRoute, OpenedHop, PendingHop, QkdKey, SealedHop, open_hop, seal_hop
from relay.crypto.identity import GatewayIdentity, TrustStore, generate_identity, load_trust_store
from relay.crypto.kem import PycaKemProvider
from relay.crypto.keyring import KeyRing
from relay.crypto.replay import MemoryReplayGuard, ReplayGuard
from relay.crypto.suites import SUITE_A, SUITE_B, Suite

START_MS = 1_800_000_000_000
KEM = PycaKemProvider()


class ManualClock:
    """A clock tests move explicitly."""

    def __init__(self, now_ms: int = START_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


@dataclass
class Link:
    """A sender gateway and a receiver gateway sharing a simulated QKD KMS."""

    sender: GatewayIdentity
    receiver: KeyRing
    trust: TrustStore
    clock: ManualClock
    replay: ReplayGuard
    kms: dict[str, bytes] = field(default_factory=dict)

    def qkd_key(self) -> QkdKey:
        """A fresh QKD key, delivered to both ends as a KMS pair would."""
        key = QkdKey(str(uuid.uuid4()), os.urandom(32))
        self.kms[key.key_id] = key.key
        return key

    def seal(self, key: bytes, mode: HopMode = HopMode.QKD_PQC, **overrides: Any) -> PendingHop:
        arguments: dict[str, Any] = {
            "route": HopRoute(uuid.uuid4().bytes, 1, str(uuid.uuid4())),
            "recipient": self.receiver.current_announcement().verify(self.trust, self.clock()),
            "identity": self.sender,
            "mode": mode,
            "qkd_key": self.qkd_key() if mode is HopMode.QKD_PQC else None,
            "kem": KEM,
            "clock": self.clock,
        }
        return seal_hop(key, **(arguments | overrides))

    async def open(self, message: SealedHop, mode: HopMode = HopMode.QKD_PQC, **overrides: Any) -> OpenedHop:
        async def fetch(key_id: str) -> bytes:
            return self.kms[key_id]

        arguments: dict[str, Any] = {
            "recipient": self.receiver,
            "trust": self.trust,
            "mode": mode,
            "replay": self.replay,
            "clock": self.clock,
            "fetch_qkd_key": fetch,
        }
        return await open_hop(message, **(arguments | overrides))


@dataclass(frozen=True)
class Identities:
    directory: Path
    trust: TrustStore
    by_id: dict[str, GatewayIdentity]

    @classmethod
    def create(cls, directory: Path) -> "Identities":
        """Four gateways (a sender and a receiver per suite) pinned in one identities directory."""
        by_id = {
            f"{suite.id.lower()}-{role}": generate_identity(f"{suite.id.lower()}-{role}", directory, suite)
            for suite in (SUITE_A, SUITE_B)
            for role in ("sender", "receiver")
        }
        return cls(directory, load_trust_store(directory), by_id)

    def link(self, suite: Suite, clock: ManualClock | None = None) -> Link:
        """A fresh link (new key ring, replay guard, KMS) between the two gateways of ``suite``."""
        clock = clock or ManualClock()
        sender, receiver = (self.by_id[f"{suite.id.lower()}-{role}"] for role in ("sender", "receiver"))
        ring = KeyRing(receiver, kem=KEM, clock=clock, lifetime_ms=600_000)
        return Link(sender, ring, self.trust, clock, MemoryReplayGuard(clock))
