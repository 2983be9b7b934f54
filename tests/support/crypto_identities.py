"""Test helpers: real identities, key rings and QKD keys; only time and the KMS are simulated."""

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay.crypto.frame import FrameEntry, OpenedFrame, PendingFrame, QkdKey, SealedFrame, open_frame, seal_frame
from relay.crypto.header import HopMode, QkdUse, pad_keys_needed
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

    def entries(self, *keys: bytes, path: tuple[str, ...] = ("GW0", "GW1", "GW2")) -> list[FrameEntry]:
        """One frame entry per key, each its own transfer, hop 1 of ``path`` towards SAE-B."""
        return [FrameEntry(uuid.uuid4().bytes, 1, path, "SAE-A", "SAE-B", str(uuid.uuid4()), key) for key in keys]

    def seal(
        self,
        *keys: bytes,
        mode: HopMode = HopMode.QKD_PQC,
        qkd_use: QkdUse = QkdUse.HKDF,
        entries: list[FrameEntry] | None = None,
        **overrides: Any,
    ) -> PendingFrame:
        """A frame of ``keys`` (or of ``entries``), with fresh QKD keys as its mode and qkd_use need."""
        entries = self.entries(*keys) if entries is None else entries
        padded = mode is HopMode.QKD_PQC and qkd_use is QkdUse.OTP
        pads = sum(pad_keys_needed(len(entry.key)) for entry in entries) if padded else 0
        arguments: dict[str, Any] = {
            "recipient": self.receiver.current_announcement().verify(self.trust, self.clock()),
            "identity": self.sender,
            "mode": mode,
            "qkd_use": qkd_use,
            "qkd_key": self.qkd_key() if mode is HopMode.QKD_PQC else None,
            "pad_keys": [self.qkd_key() for _ in range(pads)],
            "kem": KEM,
            "clock": self.clock,
        }
        return seal_frame(entries, **(arguments | overrides))

    async def open(
        self, message: SealedFrame, mode: HopMode = HopMode.QKD_PQC, qkd_use: QkdUse = QkdUse.HKDF, **overrides: Any
    ) -> OpenedFrame:
        async def fetch(key_ids: Sequence[str]) -> list[bytes]:
            return [self.kms[key_id] for key_id in key_ids]

        arguments: dict[str, Any] = {
            "recipient": self.receiver,
            "trust": self.trust,
            "mode": mode,
            "qkd_use": qkd_use,
            "replay": self.replay,
            "clock": self.clock,
            "fetch_qkd_keys": fetch,
        }
        return await open_frame(message, **(arguments | overrides))


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
