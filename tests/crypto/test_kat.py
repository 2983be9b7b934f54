"""Committed known answers (vectors/frame_kat.json): a failure here means the wire format changed.

The expected layouts (frame header and items, combiner, pads, wrap, signature transcript, confirmation,
wire blob) are restated here with struct, hashlib and pyca primitives, independently of relay.crypto's
encoder and key schedule, so a change in both places at once still fails.
"""

import hashlib
import hmac
import json
import struct
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from relay.crypto.at_rest import StorageCipher
from relay.crypto.frame import CONFIRMATION_LABEL, SIGNATURE_CONTEXT, SealedFrame, open_frame
from relay.crypto.header import FrameHeader, HopMode, QkdUse
from relay.crypto.identity import PeerIdentity, TrustStore
from relay.crypto.kdf import derive_hop_keys
from relay.crypto.kem import DecapsulationKey
from relay.crypto.keyring import EncapsulationKeyAnnouncement
from relay.crypto.replay import MemoryReplayGuard
from relay.crypto.suites import SUITES, Suite
from tests.support.crypto_identities import KEM

VECTORS = json.loads((Path(__file__).parent / "vectors" / "frame_kat.json").read_text())
CASES = pytest.mark.parametrize("case", VECTORS["cases"], ids=[case["name"] for case in VECTORS["cases"]])
LABEL = b"QKDRELAY-v2/frame"
HASHES = {"A": (hashlib.sha256, hashes.SHA256()), "B": (hashlib.sha384, hashes.SHA384())}


def framed(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(field)) + field for field in fields)


def texts(values: list[str]) -> bytes:
    """A list of texts inside one field: u8 count, then each framed."""
    return struct.pack(">B", len(values)) + framed(*(value.encode() for value in values))


def h(case: dict[str, Any], name: str) -> bytes:
    return bytes.fromhex(case[name])


def digest(case: dict[str, Any], data: bytes) -> bytes:
    return HASHES[case["suite"]][0](data).digest()


def pads(case: dict[str, Any]) -> list[bytes | None]:
    """Each item's pad: the first |K| bytes of its QKD keys, in the order the item names them."""
    return [
        b"".join(bytes.fromhex(case["pad_keys"][key_id]) for key_id in item["pad_key_ids"])[: item["key_size"]]
        if item["pad_key_ids"]
        else None
        for item in case["header_fields"]["items"]
    ]


def plaintexts(case: dict[str, Any]) -> list[bytes]:
    """What AES-GCM encrypts for each item: K_i, or K_i xor P_i on an otp frame."""
    keys = [bytes.fromhex(key) for key in case["keys"]]
    return [
        key if pad is None else bytes(k ^ p for k, p in zip(key, pad, strict=True))
        for key, pad in zip(keys, pads(case), strict=True)
    ]


def signed(case: dict[str, Any]) -> bytes:
    """th || H(enc(W_0, ..)): what the signature and the confirmation cover."""
    return h(case, "transcript_hash") + digest(case, framed(*(bytes.fromhex(w) for w in case["wrapped_keys"])))


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


def test_the_vectors_cover_every_mode_both_suites_and_several_items() -> None:
    cases = VECTORS["cases"]
    assert {(case["mode"], case["qkd_use"]) for case in cases} >= {
        ("qkd+pqc", "hkdf"),
        ("qkd+pqc", "otp"),
        ("pqc-only", "hkdf"),
    }
    assert {case["suite"] for case in cases} == {"A", "B"}
    assert max(len(case["keys"]) for case in cases) >= 3
    assert any(len(item["pad_key_ids"]) > 1 for case in cases for item in case["header_fields"]["items"])


@CASES
def test_header_encoding(case: dict[str, Any]) -> None:
    fields = case["header_fields"]
    items = [
        framed(
            bytes.fromhex(item["transfer_id"]),
            struct.pack(">H", item["hop"]),
            texts(item["path"]),
            item["initiator"].encode(),
            item["target"].encode(),
            item["key_id"].encode(),
            struct.pack(">H", item["key_size"]),
            texts(item["pad_key_ids"]),
            item["extension_json"].encode(),
            struct.pack(">B", item["no_degrade"]),
        )
        for item in fields["items"]
    ]
    expected = framed(
        LABEL,
        case["suite"].encode(),
        case["mode"].encode(),
        case["qkd_use"].encode(),
        bytes.fromhex(fields["frame_id"]),
        case["sender"]["gateway_id"].encode(),
        case["receiver"]["gateway_id"].encode(),
        bytes.fromhex(fields["ek_id"]),
        bytes.fromhex(fields["ek_hash"]),
        struct.pack(">Q", fields["timestamp_ms"]),
        bytes.fromhex(fields["nonce"]),
        fields["qkd_key_id"].encode(),
        struct.pack(">H", len(items)),
        framed(*items),
    )
    assert h(case, "header") == expected
    assert FrameHeader.decode(expected).encode() == expected
    assert (fields["qkd_key_id"] == "") == (case["mode"] == HopMode.PQC_ONLY.value)
    padded = case["mode"] == HopMode.QKD_PQC.value and case["qkd_use"] == QkdUse.OTP.value
    for item in fields["items"]:
        assert len(item["pad_key_ids"]) == (-(-item["key_size"] // 32) if padded else 0)
    named = [key_id for item in fields["items"] for key_id in item["pad_key_ids"]]
    assert sorted(named) == sorted(case["pad_keys"]) and len(set(named)) == len(named)
    for key_id in filter(None, [fields["qkd_key_id"], *named]):  # every QKD key_ID is a KMS UUID
        uuid.UUID(key_id)


@CASES
def test_keys_from_seeds(case: dict[str, Any]) -> None:
    suite = SUITES[case["suite"]]
    for party in (case["sender"], case["receiver"]):
        key = suite.signature.private_key_class.from_seed_bytes(bytes.fromhex(party["mldsa_seed"]))
        assert key.public_key().public_bytes_raw().hex() == party["mldsa_public_key"]
    ek = FixedRecipient(case).dk.encapsulation_key
    assert len(ek) == suite.kem.encapsulation_key_size
    assert hashlib.sha3_256(ek).hexdigest() == case["header_fields"]["ek_hash"]


@CASES
def test_kem_and_combiner(case: dict[str, Any]) -> None:
    """Given the committed ct (hence ss), k_q and header: th, k_enc and k_conf are fixed (HKDF restated)."""
    suite = SUITES[case["suite"]]
    assert FixedRecipient(case).dk.decapsulate(h(case, "ciphertext")) == h(case, "shared_secret")
    th = digest(case, framed(h(case, "header"), h(case, "ciphertext")))
    assert th == h(case, "transcript_hash")
    qkd_key = b"" if case["qkd_key"] is None else h(case, "qkd_key")
    okm = HKDF(
        HASHES[case["suite"]][1], 64, salt=framed(LABEL, case["suite"].encode()), info=LABEL + b" keys" + th
    ).derive(h(case, "shared_secret") + qkd_key)
    assert okm.hex() == case["k_enc"] + case["k_conf"]
    keys = derive_hop_keys(suite, h(case, "shared_secret"), qkd_key or None, th)
    assert keys.encryption_key.hex() == case["k_enc"] and keys.confirmation_key.hex() == case["k_conf"]


@CASES
def test_pads_and_wrap_layer(case: dict[str, Any]) -> None:
    """W_i = AES-256-GCM(k_enc, nonce u96be(i), K_i xor P_i, aad th); no pad on hkdf and pqc-only frames."""
    aead = AESGCM(h(case, "k_enc"))
    wrapped = [bytes.fromhex(w) for w in case["wrapped_keys"]]
    assert len(wrapped) == len(case["keys"]) == len(case["header_fields"]["items"])
    for index, plaintext in enumerate(plaintexts(case)):
        nonce = struct.pack(">4xQ", index)
        assert aead.encrypt(nonce, plaintext, h(case, "transcript_hash")) == wrapped[index]
    padded = case["qkd_use"] == "otp" and case["mode"] == "qkd+pqc"
    assert all((pad is not None) == padded for pad in pads(case))


@CASES
def test_committed_signature_verifies(case: dict[str, Any]) -> None:
    suite = SUITES[case["suite"]]
    public_key = suite.signature.public_key_class.from_public_bytes(bytes.fromhex(case["sender"]["mldsa_public_key"]))
    public_key.verify(h(case, "signature"), signed(case), LABEL)
    assert SIGNATURE_CONTEXT == LABEL


@CASES
def test_committed_confirmation(case: dict[str, Any]) -> None:
    """HMAC(k_conf, label " confirm" || th || H(W) || outcomes) with the suite hash."""
    expected = hmac.new(
        h(case, "k_conf"), LABEL + b" confirm" + signed(case) + h(case, "outcomes"), HASHES[case["suite"]][0]
    ).digest()
    assert expected == h(case, "confirmation")
    assert CONFIRMATION_LABEL == LABEL + b" confirm"


@CASES
def test_committed_announcement_verifies(case: dict[str, Any]) -> None:
    announcement = EncapsulationKeyAnnouncement.from_bytes(bytes.fromhex(case["receiver"]["announcement"]))
    key = announcement.verify(trust(case), case["header_fields"]["timestamp_ms"])
    assert key.ek_hash.hex() == case["header_fields"]["ek_hash"]
    assert key.encapsulation_key == FixedRecipient(case).dk.encapsulation_key


@CASES
async def test_committed_frame_opens(case: dict[str, Any]) -> None:
    wrapped = [bytes.fromhex(w) for w in case["wrapped_keys"]]
    wire = framed(h(case, "header"), h(case, "ciphertext"), framed(*wrapped), h(case, "signature"))
    assert wire == h(case, "wire")
    message = SealedFrame.from_bytes(wire)
    assert message.to_bytes() == wire
    clock = lambda: case["header_fields"]["timestamp_ms"]  # noqa: E731
    combiner = [] if case["qkd_key"] is None else [(case["header_fields"]["qkd_key_id"], h(case, "qkd_key"))]
    named = combiner + [
        (key_id, bytes.fromhex(case["pad_keys"][key_id]))
        for item in case["header_fields"]["items"]
        for key_id in item["pad_key_ids"]
    ]

    async def fetch(key_ids: Sequence[str]) -> list[bytes]:
        assert list(key_ids) == [key_id for key_id, _ in named]  # the combiner's first, then pads in item order
        return [key for _, key in named]

    opened = await open_frame(
        message,
        recipient=FixedRecipient(case),
        trust=trust(case),
        mode=HopMode(case["mode"]),
        qkd_use=QkdUse(case["qkd_use"]),
        replay=MemoryReplayGuard(clock),
        clock=clock,
        fetch_qkd_keys=fetch,
    )
    assert [key.hex() for key in opened.keys] == case["keys"]
    assert opened.confirm(h(case, "outcomes")) == h(case, "confirmation")


def test_committed_at_rest_blob_opens() -> None:
    vector = VECTORS["at_rest"]
    blob = bytes.fromhex(vector["blob"])
    assert blob[0] == 1 and len(blob) == 1 + 12 + len(bytes.fromhex(vector["plaintext"])) + 16
    cipher = StorageCipher(bytes.fromhex(vector["storage_key"]))
    assert cipher.open(vector["name"], blob).hex() == vector["plaintext"]
    aead = AESGCM(bytes.fromhex(vector["storage_key"]))
    assert aead.decrypt(blob[1:13], blob[13:], b"\x01" + vector["name"].encode()).hex() == vector["plaintext"]
