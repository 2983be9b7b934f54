"""Generate tests/crypto/vectors/hop_kat.json, the committed known-answer vectors of our construction.

Run once: ``python -m tests.crypto.make_hop_kat [--force]``. The file is then checked forever by
test_kat.py, so any change to the header, the combiner, the wrap, the signature transcript, the wire
encoding, the announcement or the at-rest blob shows up as a failing test and must be deliberate.

Seeds, nonce, timestamp, IDs, the QKD key and K are fixed (derived from labels below). ML-KEM
encapsulation and ML-DSA signing are randomized in ``cryptography``, so the ciphertext and signatures
differ on every run: that is why the output is committed and never regenerated casually. The ML-DSA and
ML-KEM seeds are test-only keys.
"""

import argparse
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

from relay.crypto.at_rest import StorageCipher
from relay.crypto.encoding import encode_fields
from relay.crypto.header import HopMode
from relay.crypto.hop import HopRoute, QkdKey, seal_hop
from relay.crypto.identity import GatewayIdentity
from relay.crypto.kdf import derive_hop_keys
from relay.crypto.kem import PycaKemProvider
from relay.crypto.keyring import ANNOUNCEMENT_CONTEXT, EncapsulationKey, EncapsulationKeyAnnouncement
from relay.crypto.suites import SUITE_A, SUITE_B, Suite

PATH = Path(__file__).parent / "vectors" / "hop_kat.json"
TIMESTAMP_MS = 1_800_000_000_000
KEM = PycaKemProvider()


def fixed(label: str, size: int) -> bytes:
    """Deterministic test input: SHAKE-256("hop-kat/" || label)."""
    return hashlib.shake_256(f"hop-kat/{label}".encode()).digest(size)


def identity(name: str, suite: Suite, label: str) -> tuple[GatewayIdentity, bytes]:
    seed = fixed(f"{label}/{name}/mldsa-seed", 32)
    return GatewayIdentity(name, suite, suite.signature.private_key_class.from_seed_bytes(seed)), seed


def case(name: str, suite: Suite, mode: HopMode, key_size: int) -> dict[str, Any]:
    sender, sender_seed = identity("gw-sender", suite, name)
    receiver, receiver_seed = identity("gw-receiver", suite, name)
    kem_seed = fixed(f"{name}/mlkem-seed", 64)
    dk = KEM.from_seed(suite.kem, kem_seed)
    ek = EncapsulationKey(
        receiver.gateway_id, suite, fixed(f"{name}/ek-id", 16), dk.encapsulation_key, TIMESTAMP_MS + 3_600_000
    )
    announcement = EncapsulationKeyAnnouncement(
        ek, receiver.sign(EncapsulationKeyAnnouncement.signed_bytes(ek), ANNOUNCEMENT_CONTEXT)
    )
    qkd_key = QkdKey(str(uuid.UUID(bytes=fixed(f"{name}/qkd-key-id", 16))), fixed(f"{name}/qkd-key", 32))
    key = fixed(f"{name}/K", key_size)
    nonce = fixed(f"{name}/nonce", 32)
    route = HopRoute(fixed(f"{name}/transfer-id", 16), 2, str(uuid.UUID(bytes=fixed(f"{name}/key-id", 16))))
    pending = seal_hop(
        key,
        route=route,
        recipient=ek,
        identity=sender,
        mode=mode,
        qkd_key=qkd_key if mode is HopMode.QKD_PQC else None,
        kem=KEM,
        clock=lambda: TIMESTAMP_MS,
        randbytes=lambda size: nonce[:size],
    )
    message = pending.message
    header = message.header.encode()
    shared_secret = dk.decapsulate(message.ciphertext)
    th = suite.digest(encode_fields(header, message.ciphertext))
    keys = derive_hop_keys(suite, shared_secret, qkd_key.key if mode is HopMode.QKD_PQC else None, th)
    return {
        "name": name,
        "suite": suite.id,
        "mode": mode.value,
        "sender": {
            "gateway_id": sender.gateway_id,
            "mldsa_seed": sender_seed.hex(),
            "mldsa_public_key": sender.peer.public_bytes().hex(),
        },
        "receiver": {
            "gateway_id": receiver.gateway_id,
            "mldsa_seed": receiver_seed.hex(),
            "mldsa_public_key": receiver.peer.public_bytes().hex(),
            "mlkem_seed": kem_seed.hex(),
            "announcement": announcement.to_bytes().hex(),
        },
        "header_fields": {
            "transfer_id": route.transfer_id.hex(),
            "hop": route.hop,
            "qkd_key_id": message.header.qkd_key_id,
            "ek_id": ek.ek_id.hex(),
            "ek_hash": ek.ek_hash.hex(),
            "timestamp_ms": TIMESTAMP_MS,
            "nonce": nonce.hex(),
            "key_id": route.key_id,
            "key_size": key_size,
        },
        "qkd_key": qkd_key.key.hex() if mode is HopMode.QKD_PQC else None,
        "key": key.hex(),
        "header": header.hex(),
        "ciphertext": message.ciphertext.hex(),
        "shared_secret": shared_secret.hex(),
        "transcript_hash": th.hex(),
        "k_enc": keys.encryption_key.hex(),
        "k_conf": keys.confirmation_key.hex(),
        "wrapped_key": message.wrapped_key.hex(),
        "signature": message.signature.hex(),
        "confirmation": pending.expected_confirmation.hex(),
    }


def at_rest_case() -> dict[str, str]:
    key, name, plaintext = fixed("at-rest/key", 32), "{pool}:relayed:sae-a:sae-b:kid", fixed("at-rest/pt", 32)
    return {
        "storage_key": key.hex(),
        "name": name,
        "plaintext": plaintext.hex(),
        "blob": StorageCipher(key).seal(name, plaintext).hex(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="overwrite the committed vectors")
    if PATH.exists() and not parser.parse_args().force:
        raise SystemExit(f"{PATH} exists; the committed vectors are the reference (use --force to replace)")
    vectors = {
        "description": "relay.crypto hop construction known answers, from tests/crypto/make_hop_kat.py",
        "cases": [
            case("suiteA-qkd+pqc", SUITE_A, HopMode.QKD_PQC, 32),
            case("suiteA-pqc-only", SUITE_A, HopMode.PQC_ONLY, 1),
            case("suiteB-qkd+pqc", SUITE_B, HopMode.QKD_PQC, 1024),
        ],
        "at_rest": at_rest_case(),
    }
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(json.dumps(vectors, indent=1) + "\n")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
