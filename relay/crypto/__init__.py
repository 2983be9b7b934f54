"""Hybrid hop cryptography: ML-KEM + QKD key combiner, ML-DSA identities, replay guards, keys at rest.

Modules: ``suites`` (algorithm suites A/B), ``kem`` (ML-KEM providers), ``kdf`` (HKDF combiner),
``header`` (hop header encoding), ``hop`` (seal/open), ``identity`` (ML-DSA identities, trust store),
``keyring`` (signed, rotated encapsulation keys), ``replay`` (replay guards), ``void`` (signed voids),
``at_rest`` (storage AEAD), ``errors`` (exception hierarchy). The names below are the gateway-facing API.
"""

from relay.crypto.at_rest import StorageCipher, load_or_create_storage_key
from relay.crypto.clock import Clock, system_clock_ms
from relay.crypto.header import HopHeader, HopMode
from relay.crypto.hop import (
    DEFAULT_WINDOW_MS,
    HopRoute,
    OpenedHop,
    PendingHop,
    QkdKey,
    QkdKeyFetcher,
    SealedHop,
    open_hop,
    seal_hop,
)
from relay.crypto.identity import (
    GatewayIdentity,
    PeerIdentity,
    TrustStore,
    generate_identity,
    load_identity,
    load_trust_store,
)
from relay.crypto.kem import KemProvider, ProviderStatus, available_providers, load_kem_provider
from relay.crypto.keyring import EncapsulationKey, EncapsulationKeyAnnouncement, KeyRing
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
    "HopHeader",
    "HopMode",
    "HopRoute",
    "KemProvider",
    "KeyRing",
    "MemoryReplayGuard",
    "OpenedHop",
    "PeerIdentity",
    "PendingHop",
    "ProviderStatus",
    "QkdKey",
    "QkdKeyFetcher",
    "RedisReplayGuard",
    "ReplayGuard",
    "SealedHop",
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
    "open_hop",
    "seal_hop",
    "sign_void",
    "system_clock_ms",
    "verify_void",
]
