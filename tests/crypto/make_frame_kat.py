"""Generate tests/crypto/vectors/frame_kat.json, the committed known-answer vectors of the frame construction.

Run once: ``python -m tests.crypto.make_frame_kat [--force]``. The file is then checked forever by
test_kat.py, so any change to the frame header, the combiner, the pads, the wrap, the signature
transcript, the confirmation, the wire encoding, the announcement or the at-rest blob shows up as a
failing test and must be deliberate.

Seeds, frame_id, nonce, timestamp, IDs, the QKD keys, the items and the keys are fixed (derived from
labels below). ML-KEM encapsulation and ML-DSA signing are randomized in ``cryptography``, so the
ciphertext and signatures differ on every run: that is why the output is committed and never regenerated
casually. The ML-DSA and ML-KEM seeds are test-only keys. The cases cover both suites, qkd+pqc with
qkd_use hkdf and otp, and pqc-only, with one to three keys per frame of sizes from 1 to 1024 bytes, so
pads of one and of several QKD keys (and a pad's unused tail) all occur.
"""

import argparse
import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

from relay.crypto.at_rest import StorageCipher
from relay.crypto.encoding import encode_fields
from relay.crypto.frame import CONFIRMATION_LABEL, FrameEntry, QkdKey, seal_frame
from relay.crypto.header import FRAME_ID_SIZE, NONCE_SIZE, HopMode, QkdUse, pad_keys_needed
from relay.crypto.identity import GatewayIdentity
from relay.crypto.kdf import derive_hop_keys
from relay.crypto.kem import PycaKemProvider
from relay.crypto.keyring import ANNOUNCEMENT_CONTEXT, EncapsulationKey, EncapsulationKeyAnnouncement
from relay.crypto.suites import SUITE_A, SUITE_B, Suite

PATH = Path(__file__).parent / "vectors" / "frame_kat.json"
TIMESTAMP_MS = 1_800_000_000_000
KEM = PycaKemProvider()


def fixed(label: str, size: int) -> bytes:
    """Deterministic test input: SHAKE-256("frame-kat/" || label)."""
    return hashlib.shake_256(f"frame-kat/{label}".encode()).digest(size)


def fixed_uuid(label: str) -> str:
    return str(uuid.UUID(bytes=fixed(label, 16)))


def identity(name: str, suite: Suite, label: str) -> tuple[GatewayIdentity, bytes]:
    seed = fixed(f"{label}/{name}/mldsa-seed", 32)
    return GatewayIdentity(name, suite, suite.signature.private_key_class.from_seed_bytes(seed)), seed


def entry(name: str, index: int, key_size: int) -> FrameEntry:
    """Item ``index`` of a case: each of its own SAE pair, path, hop and options, as a mixed frame has."""
    return FrameEntry(
        transfer_id=fixed(f"{name}/item-{index}/transfer-id", 16),
        hop=1 + index,
        path=("gw-origin", "gw-sender", "gw-receiver", *(f"gw-next-{index}" for _ in range(index % 2))),
        initiator=f"SAE-{index}-A",
        target=f"SAE-{index}-B",
        key_id=fixed_uuid(f"{name}/item-{index}/key-id"),
        key=fixed(f"{name}/item-{index}/K", key_size),
        extension_json='{"note": "item 1"}' if index == 1 else "",
        no_degrade=index == 2,
    )


def case(name: str, suite: Suite, mode: HopMode, qkd_use: QkdUse, key_sizes: tuple[int, ...]) -> dict[str, Any]:
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
    entries = [entry(name, index, size) for index, size in enumerate(key_sizes)]
    qkd = mode is HopMode.QKD_PQC
    qkd_key = QkdKey(fixed_uuid(f"{name}/qkd-key-id"), fixed(f"{name}/qkd-key", 32)) if qkd else None
    padded = qkd and qkd_use is QkdUse.OTP
    pad_count = sum(pad_keys_needed(size) for size in key_sizes) if padded else 0
    pad_keys = [QkdKey(fixed_uuid(f"{name}/pad-{n}/id"), fixed(f"{name}/pad-{n}/key", 32)) for n in range(pad_count)]
    random = {FRAME_ID_SIZE: fixed(f"{name}/frame-id", FRAME_ID_SIZE), NONCE_SIZE: fixed(f"{name}/nonce", NONCE_SIZE)}
    pending = seal_frame(
        entries,
        recipient=ek,
        identity=sender,
        mode=mode,
        qkd_use=qkd_use,
        qkd_key=qkd_key,
        pad_keys=pad_keys,
        kem=KEM,
        clock=lambda: TIMESTAMP_MS,
        randbytes=random.__getitem__,
    )
    message = pending.message
    header = message.header.encode()
    shared_secret = dk.decapsulate(message.ciphertext)
    th = suite.digest(encode_fields(header, message.ciphertext))
    keys = derive_hop_keys(suite, shared_secret, None if qkd_key is None else qkd_key.key, th)
    outcomes = bytes(index % 2 for index in range(len(entries)))  # any bytes the gateway encodes
    signed = th + suite.digest(encode_fields(*message.wrapped_keys))
    confirmation = hmac.new(keys.confirmation_key, CONFIRMATION_LABEL + signed + outcomes, suite.hash.name).digest()
    pending.verify_confirmation(outcomes, confirmation)  # what the sender will accept from the receiver
    return {
        "name": name,
        "suite": suite.id,
        "mode": mode.value,
        "qkd_use": qkd_use.value,
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
            "frame_id": message.header.frame_id.hex(),
            "ek_id": ek.ek_id.hex(),
            "ek_hash": ek.ek_hash.hex(),
            "timestamp_ms": TIMESTAMP_MS,
            "nonce": message.header.nonce.hex(),
            "qkd_key_id": message.header.qkd_key_id,
            "items": [
                {
                    "transfer_id": item.transfer_id.hex(),
                    "hop": item.hop,
                    "path": list(item.path),
                    "initiator": item.initiator,
                    "target": item.target,
                    "key_id": item.key_id,
                    "key_size": item.key_size,
                    "pad_key_ids": list(item.pad_key_ids),
                    "extension_json": item.extension_json,
                    "no_degrade": item.no_degrade,
                }
                for item in message.header.items
            ],
        },
        "qkd_key": None if qkd_key is None else qkd_key.key.hex(),
        "pad_keys": {pad.key_id: pad.key.hex() for pad in pad_keys},
        "keys": [entry.key.hex() for entry in entries],
        "header": header.hex(),
        "ciphertext": message.ciphertext.hex(),
        "shared_secret": shared_secret.hex(),
        "transcript_hash": th.hex(),
        "k_enc": keys.encryption_key.hex(),
        "k_conf": keys.confirmation_key.hex(),
        "wrapped_keys": [wrapped.hex() for wrapped in message.wrapped_keys],
        "signature": message.signature.hex(),
        "outcomes": outcomes.hex(),
        "confirmation": confirmation.hex(),
        "wire": message.to_bytes().hex(),
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
        "description": "relay.crypto hop-frame construction known answers, from tests/crypto/make_frame_kat.py",
        "cases": [
            case("suiteA-qkd+pqc-hkdf", SUITE_A, HopMode.QKD_PQC, QkdUse.HKDF, (32, 1, 33)),
            case("suiteA-qkd+pqc-otp", SUITE_A, HopMode.QKD_PQC, QkdUse.OTP, (32, 33, 1)),
            case("suiteA-pqc-only", SUITE_A, HopMode.PQC_ONLY, QkdUse.HKDF, (1, 1024)),
            case("suiteB-qkd+pqc-otp", SUITE_B, HopMode.QKD_PQC, QkdUse.OTP, (1024, 17)),
            case("suiteB-qkd+pqc-hkdf", SUITE_B, HopMode.QKD_PQC, QkdUse.HKDF, (16,)),
        ],
        "at_rest": at_rest_case(),
    }
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(json.dumps(vectors, indent=1) + "\n")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
