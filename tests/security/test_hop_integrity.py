"""Replayed and tampered hop messages are refused by a real gateway, and store nothing.

The hops are sealed by hand with GW1's real ML-DSA identity for GW2's current encapsulation key, exactly
as GW1's relay engine would, and sent to GW2's gRPC server with GW1's certificate.
"""

from __future__ import annotations

import dataclasses
import uuid

import grpc

from relay.crypto import SealedHop, system_clock_ms
from relay.crypto.header import HopMode
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from tests.support.hand_sealed_hops import HandSealed, fetch, relay_as, seal_by_hand
from tests.support.threaded_testbed import ThreadedTestbed


def _request(hop: HandSealed, sealed: bytes, transfer_id: bytes | None = None) -> pb.RelayKeyRequest:
    request = pb.RelayKeyRequest()
    request.CopyFrom(hop.request)
    request.sealed_hop = sealed
    request.transfer_id = transfer_id or uuid.uuid4().bytes
    return request


def _answer(bed: ThreadedTestbed, request: pb.RelayKeyRequest) -> tuple[grpc.StatusCode, bytes]:
    from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc

    with bed.grpc_channel("GW2", "GW1") as channel:
        try:
            return grpc.StatusCode.OK, rpc.KeyRelayStub(channel).RelayKey(request, timeout=10).key_confirmation
        except grpc.RpcError as exc:
            return exc.code(), b""


def test_a_replayed_hop_delivers_the_key_once(bed: ThreadedTestbed) -> None:
    hop = seal_by_hand(bed)
    first = _answer(bed, hop.request)
    assert first[0] is grpc.StatusCode.OK and first[1]
    # the very same bytes again (a retry, or an attacker on the wire): the cached confirmation, nothing new
    again = _answer(bed, hop.request)
    assert again[0] is not grpc.StatusCode.OK or again[1] == first[1]
    # the same sealed message under a fresh outer transfer_id: refused, the outer ids must be the signed ones
    code, details = relay_as(bed, "GW1", "GW2", _request(hop, hop.request.sealed_hop))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "MalformedMessage" in details, details
    delivered = fetch(bed, "SAE-R2-A", "SAE-R1-A", hop.key_id)
    assert delivered.status_code == 200 and len(delivered.json()["keys"]) == 1
    assert fetch(bed, "SAE-R2-A", "SAE-R1-A", hop.key_id).status_code == 400  # exactly one key, and it is gone
    # and once delivered, replaying the message still stores nothing
    assert relay_as(bed, "GW1", "GW2", _request(hop, hop.request.sealed_hop))[0] is grpc.StatusCode.INVALID_ARGUMENT
    assert fetch(bed, "SAE-R2-A", "SAE-R1-A", hop.key_id).status_code == 400


def test_a_stale_hop_is_refused(bed: ThreadedTestbed) -> None:
    hop = seal_by_hand(bed, clock=lambda: system_clock_ms() - 10 * 60 * 1000)
    code, details = relay_as(bed, "GW1", "GW2", hop.request)
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "StaleMessage" in details, details
    assert fetch(bed, "SAE-R2-A", "SAE-R1-A", hop.key_id).status_code == 400


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def _tampered(message: SealedHop) -> dict[str, bytes]:
    header = message.header
    variants = {
        "ciphertext first byte": dataclasses.replace(message, ciphertext=_flip(message.ciphertext, 0)),
        "ciphertext last byte": dataclasses.replace(message, ciphertext=_flip(message.ciphertext, -1)),
        "wrapped key": dataclasses.replace(message, wrapped_key=_flip(message.wrapped_key, 3)),
        "GCM tag": dataclasses.replace(message, wrapped_key=_flip(message.wrapped_key, -1)),
        "signature": dataclasses.replace(message, signature=_flip(message.signature, 100)),
    }
    for name, value in {
        "timestamp_ms": header.timestamp_ms - 1,
        "nonce": _flip(header.nonce, 0),
        "key_id": str(uuid.uuid4()),
        "transfer_id": uuid.uuid4().bytes,
        "hop": 1,
        "ek_hash": _flip(header.ek_hash, 0),
    }.items():
        variants[f"header {name}"] = dataclasses.replace(message, header=dataclasses.replace(header, **{name: value}))
    variants["header mode qkd+pqc"] = dataclasses.replace(
        message, header=dataclasses.replace(header, mode=HopMode.QKD_PQC, qkd_key_id=str(uuid.uuid4()))
    )
    variants["header receiver"] = dataclasses.replace(message, header=dataclasses.replace(header, receiver="GW3"))
    encoded = {name: variant.to_bytes() for name, variant in variants.items()}
    raw = message.to_bytes()
    encoded["raw byte in header"] = _flip(raw, 40)
    encoded["truncated"] = raw[:-1]
    encoded["extended"] = raw + b"\x00"
    return encoded


def test_tampered_hops_are_refused_and_store_nothing(bed: ThreadedTestbed) -> None:
    hop = seal_by_hand(bed)
    for name, sealed in _tampered(hop.message).items():
        request = _request(hop, sealed)
        code, details = relay_as(bed, "GW1", "GW2", request)
        # a changed ek_hash names no key GW2 holds: FAILED_PRECONDITION asks the sender for a fresh ek
        allowed = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}
        assert code in allowed, f"{name}: {code.name} {details}"
        assert details and hop.key.hex() not in details, f"{name}: {details}"  # a reason, never key material
    assert fetch(bed, "SAE-R2-A", "SAE-R1-A", hop.key_id).status_code == 400
    # the control: the untampered message is still accepted (forgeries burned neither replay entry nor key)
    assert relay_as(bed, "GW1", "GW2", hop.request)[0] is grpc.StatusCode.OK
    delivered = fetch(bed, "SAE-R2-A", "SAE-R1-A", hop.key_id)
    assert delivered.status_code == 200


def test_the_outer_transfer_id_must_match_the_signed_header(bed: ThreadedTestbed) -> None:
    hop = seal_by_hand(bed)
    code, _ = relay_as(bed, "GW1", "GW2", _request(hop, hop.request.sealed_hop))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
