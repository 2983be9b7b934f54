"""Hybrid hop cryptography: ML-KEM + QKD key combiner, ML-DSA identities, replay guards, keys at rest.

Modules: ``suites`` (algorithm suites A/B), ``kem`` (ML-KEM providers), ``kdf`` (HKDF combiner),
``header`` (hop-frame header encoding), ``frame`` (seal/open a frame of keys), ``identity`` (ML-DSA
identities, trust store), ``keyring`` (signed, rotated encapsulation keys), ``replay`` (replay guards),
``void`` (signed voids), ``at_rest`` (storage AEAD), ``errors`` (exception hierarchy). The names below are the
gateway-facing API.
"""

from relay.crypto.at_rest import StorageCipher, load_or_create_storage_key
from relay.crypto.clock import Clock, system_clock_ms
from relay.crypto.frame import (
    DEFAULT_WINDOW_MS,
    FrameEntry,
    OpenedFrame,
    PendingFrame,
    QkdKey,
    QkdKeyFetcher,
    SealedFrame,
    open_frame,
    seal_frame,
)
from relay.crypto.header import FrameHeader, HopMode, ItemHeader, QkdUse, pad_keys_needed
from relay.crypto.identity import (
    GatewayIdentity,
    PeerIdentity,
    TrustStore,
    generate_identity,
    load_identity,
    load_trust_store,
)
from relay.crypto.kem import KemProvider, ProviderStatus, available_providers, load_kem_provider
from relay.crypto.keyring import EncapsulationKey, EncapsulationKeyAnnouncement, KeyRing, RingEntry
from relay.crypto.replay import MemoryReplayGuard, RedisReplayGuard, ReplayGuard
from relay.crypto.suites import SUITE_A, SUITE_B, SUITES, Suite
from relay.crypto.void import VoidOrder, check_void, new_void_order, sign_void, verify_void

__all__ = [
    "DEFAULT_WINDOW_MS",
    "SUITES",
    "SUITE_A",
    "SUITE_B",
    "Clock",
    "EncapsulationKey",
    "EncapsulationKeyAnnouncement",
    "GatewayIdentity",
    "FrameEntry",
    "FrameHeader",
    "HopMode",
    "ItemHeader",
    "KemProvider",
    "KeyRing",
    "MemoryReplayGuard",
    "OpenedFrame",
    "PeerIdentity",
    "PendingFrame",
    "RingEntry",
    "ProviderStatus",
    "QkdKey",
    "QkdKeyFetcher",
    "QkdUse",
    "RedisReplayGuard",
    "ReplayGuard",
    "SealedFrame",
    "StorageCipher",
    "Suite",
    "TrustStore",
    "VoidOrder",
    "available_providers",
    "check_void",
    "generate_identity",
    "load_identity",
    "load_kem_provider",
    "load_or_create_storage_key",
    "load_trust_store",
    "new_void_order",
    "open_frame",
    "pad_keys_needed",
    "seal_frame",
    "sign_void",
    "system_clock_ms",
    "verify_void",
]
