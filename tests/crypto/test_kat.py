"""Committed known answers (vectors/hop_kat.json): a failure here means the wire format changed.

The expected layouts are restated here with struct and pyca primitives, independently of relay.crypto's
encoder, so a change in both places at once still fails.
"""

import hashlib
import json
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relay.crypto.at_rest import StorageCipher
from relay.crypto.header import HopHeader, HopMode
from relay.crypto.hop import SIGNATURE_CONTEXT, SealedHop, open_hop
from relay.crypto.identity import PeerIdentity, TrustStore
from relay.crypto.kdf import derive_hop_keys
from relay.crypto.kem import DecapsulationKey
from relay.crypto.keyring import EncapsulationKeyAnnouncement
from relay.crypto.replay import MemoryReplayGuard
from relay.crypto.suites import SUITES, Suite
from tests.support.crypto_identities import KEM

VECTORS = json.loads((Path(__file__).parent / "vectors" / "hop_kat.json").read_text())
CASES = pytest.mark.parametrize("case", VECTORS["cases"], ids=[case["name"] for case in VECTORS["cases"]])


def framed(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(field)) + field for field in fields)


def h(case: dict[str, Any], name: str) -> bytes:
    return bytes.fromhex(case[name])


def trust(case: dict[str, Any]) -> TrustStore:
    suite = SUITES[case["suite"]]
    return TrustStore(
        {
            party["gateway_id"]: PeerIdentity.from_public_bytes(
                party["gateway_id"], suite, bytes.fromhex(party["mldsa_public_key"])
            )
            for party in (case["sender"], case["receiver"])
        }
    )


class FixedRecipient:
    """The receiver of a vector: its ML-KEM key pair from the committed seed."""

    def __init__(self, case: dict[str, Any]) -> None:
        self.gateway_id: str = case["receiver"]["gateway_id"]
        self.suite: Suite = SUITES[case["suite"]]
        self.dk = KEM.from_seed(self.suite.kem, bytes.fromhex(case["receiver"]["mlkem_seed"]))
        self._ek_id = bytes.fromhex(case["header_fields"]["ek_id"])

    def decapsulation_key(self, ek_id: bytes, ek_hash: bytes) -> DecapsulationKey:
        assert ek_id == self._ek_id
        return self.dk


@CASES
def test_header_encoding(case: dict[str, Any]) -> None:
    fields = case["header_fields"]
    suite, mode = SUITES[case["suite"]], HopMode(case["mode"])
    expected = framed(
        b"QKDRELAY-v1",
        suite.id.encode(),
        mode.value.encode(),
        bytes.fromhex(fields["transfer_id"]),
        struct.pack(">H", fields["hop"]),
        case["sender"]["gateway_id"].encode(),
        case["receiver"]["gateway_id"].encode(),
        fields["qkd_key_id"].encode(),
        bytes.fromhex(fields["ek_id"]),
        bytes.fromhex(fields["ek_hash"]),
        struct.pack(">Q", fields["timestamp_ms"]),
        bytes.fromhex(fields["nonce"]),
        fields["key_id"].encode(),
        struct.pack(">H", fields["key_size"]),
    )
    assert h(case, "header") == expected
    assert HopHeader.decode(expected).encode() == expected
    assert (fields["qkd_key_id"] == "") == (mode is HopMode.PQC_ONLY)
    if fields["qkd_key_id"]:
        uuid.UUID(fields["qkd_key_id"])


@CASES
def test_keys_from_seeds(case: dict[str, Any]) -> None:
    suite = SUITES[case["suite"]]
    for party in (case["sender"], case["receiver"]):
        key = suite.signature.private_key_class.from_seed_bytes(bytes.fromhex(party["mldsa_seed"]))
        assert key.public_key().public_bytes_raw().hex() == party["mldsa_public_key"]
    recipient = FixedRecipient(case)
    ek = recipient.dk.encapsulation_key
    assert len(ek) == suite.kem.encapsulation_key_size
    assert hashlib.sha3_256(ek).hexdigest() == case["header_fields"]["ek_hash"]


@CASES
def test_kem_kdf_and_wrap_layer(case: dict[str, Any]) -> None:
    """Given the committed ct (hence ss), k_q and header: th, k_enc, k_conf and W are fixed."""
    suite = SUITES[case["suite"]]
    assert FixedRecipient(case).dk.decapsulate(h(case, "ciphertext")) == h(case, "shared_secret")
    aad = framed(h(case, "header"), h(case, "ciphertext"))
    assert suite.digest(aad) == h(case, "transcript_hash")
    qkd_key = None if case["qkd_key"] is None else h(case, "qkd_key")
    keys = derive_hop_keys(suite, h(case, "shared_secret"), qkd_key, h(case, "transcript_hash"))
    assert keys.encryption_key.hex() == case["k_enc"] and keys.confirmation_key.hex() == case["k_conf"]
    aead = AESGCM(h(case, "k_enc"))
    assert aead.encrypt(bytes(12), h(case, "key"), aad) == h(case, "wrapped_key")


@CASES
def test_committed_signature_verifies(case: dict[str, Any]) -> None:
    suite = SUITES[case["suite"]]
    signed = h(case, "transcript_hash") + suite.digest(h(case, "wrapped_key"))
    public_key = suite.signature.public_key_class.from_public_bytes(bytes.fromhex(case["sender"]["mldsa_public_key"]))
    public_key.verify(h(case, "signature"), signed, SIGNATURE_CONTEXT)
    assert SIGNATURE_CONTEXT == b"QKDRELAY-v1/hop"


@CASES
def test_committed_announcement_verifies(case: dict[str, Any]) -> None:
    announcement = EncapsulationKeyAnnouncement.from_bytes(bytes.fromhex(case["receiver"]["announcement"]))
    key = announcement.verify(trust(case), case["header_fields"]["timestamp_ms"])
    assert key.ek_hash.hex() == case["header_fields"]["ek_hash"]
    assert key.encapsulation_key == FixedRecipient(case).dk.encapsulation_key


@CASES
async def test_committed_message_opens(case: dict[str, Any]) -> None:
    wire = framed(h(case, "header"), h(case, "ciphertext"), h(case, "wrapped_key"), h(case, "signature"))
    clock = lambda: case["header_fields"]["timestamp_ms"]  # noqa: E731
    qkd_key = None if case["qkd_key"] is None else h(case, "qkd_key")

    async def fetch(key_id: str) -> bytes:
        assert key_id == case["header_fields"]["qkd_key_id"] and qkd_key is not None
        return qkd_key

    opened = await open_hop(
        SealedHop.from_bytes(wire),
        recipient=FixedRecipient(case),
        trust=trust(case),
        mode=HopMode(case["mode"]),
        replay=MemoryReplayGuard(clock),
        clock=clock,
        fetch_qkd_key=fetch,
    )
    assert opened.key == h(case, "key")
    assert opened.confirmation == h(case, "confirmation")


def test_committed_at_rest_blob_opens() -> None:
    vector = VECTORS["at_rest"]
    blob = bytes.fromhex(vector["blob"])
    assert blob[0] == 1 and len(blob) == 1 + 12 + len(bytes.fromhex(vector["plaintext"])) + 16
    cipher = StorageCipher(bytes.fromhex(vector["storage_key"]))
    assert cipher.open(vector["name"], blob).hex() == vector["plaintext"]
    aead = AESGCM(bytes.fromhex(vector["storage_key"]))
    assert aead.decrypt(blob[1:13], blob[13:], b"\x01" + vector["name"].encode()).hex() == vector["plaintext"]
