"""Replayed and tampered hop frames are refused by a real gateway, and store nothing.

The frames are sealed by hand with GW1's real ML-DSA identity for GW2's current encapsulation key, exactly
as GW1's relay engine would, and sent to GW2's gRPC server with GW1's certificate. A RelayFrameRequest
carries nothing but the sealed frame, so every fact GW2 acts on (each key's transfer, path, SAEs and
key_ID) is under the signature.
"""

from __future__ import annotations

import dataclasses
import uuid

import grpc

from relay.crypto import ItemHeader, SealedFrame, system_clock_ms
from relay.crypto.header import HopMode, QkdUse
from relay.gateway.hops import Outcome
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from tests.support.hand_sealed_hops import HandSealed, entry, fetch, relay_as, seal_by_hand
from tests.support.threaded_testbed import ThreadedTestbed

REFUSED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}
"""A refused frame; a changed ek_hash names no key GW2 holds: FAILED_PRECONDITION asks for a fresh ek."""


def _sent(bed: ThreadedTestbed, message: SealedFrame | bytes) -> tuple[grpc.StatusCode, str]:
    sealed = message if isinstance(message, bytes) else message.to_bytes()
    answer = relay_as(bed, "GW1", "GW2", pb.RelayFrameRequest(sealed_frame=sealed))
    return answer.code, answer.details


def _assert_stored_once(bed: ThreadedTestbed, frame: HandSealed) -> None:
    for sealed in frame.entries:
        delivered = fetch(bed, sealed.target, sealed.initiator, sealed.key_id)
        assert delivered.status_code == 200 and len(delivered.json()["keys"]) == 1
        assert fetch(bed, sealed.target, sealed.initiator, sealed.key_id).status_code == 400  # it is gone


def _with_header(message: SealedFrame, **changes: object) -> SealedFrame:
    return dataclasses.replace(message, header=dataclasses.replace(message.header, **changes))


def _with_item(message: SealedFrame, index: int, **changes: object) -> SealedFrame:
    items = list(message.header.items)
    items[index] = dataclasses.replace(items[index], **changes)
    return _with_header(message, items=tuple(items))


def test_a_replayed_frame_delivers_its_keys_once(bed: ThreadedTestbed) -> None:
    frame = seal_by_hand(bed)
    first = relay_as(bed, "GW1", "GW2", frame.request)
    [outcome] = frame.outcomes(first)
    assert (outcome.outcome, outcome.detail) == (Outcome.STORED, "GW2")
    # the very same bytes again (a retry, or an attacker on the wire): the recorded answer, nothing new
    again = relay_as(bed, "GW1", "GW2", frame.request)
    assert (again.code, again.outcomes, again.confirmation) == (first.code, first.outcomes, first.confirmation)
    # the same frame under a fresh frame_id, to pass for a new one: refused, the frame_id is signed
    code, details = _sent(bed, _with_header(frame.message, frame_id=uuid.uuid4().bytes))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "BadSignature" in details, details
    _assert_stored_once(bed, frame)
    # and once delivered, replaying the frame still stores nothing
    assert relay_as(bed, "GW1", "GW2", frame.request).outcomes == first.outcomes
    assert _sent(bed, _with_header(frame.message, frame_id=uuid.uuid4().bytes))[0] is grpc.StatusCode.INVALID_ARGUMENT
    assert fetch(bed, "SAE-R2-A", "SAE-R1-A", frame.key_id).status_code == 400


def test_a_stale_frame_is_refused(bed: ThreadedTestbed) -> None:
    frame = seal_by_hand(bed, clock=lambda: system_clock_ms() - 10 * 60 * 1000)
    code, details = _sent(bed, frame.message)
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "StaleMessage" in details, details
    assert fetch(bed, "SAE-R2-A", "SAE-R1-A", frame.key_id).status_code == 400


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def _tampered(message: SealedFrame) -> dict[str, bytes]:
    """Every way to change a two-key frame after sealing: its parts, header fields, items, their order."""
    header, wrapped = message.header, message.wrapped_keys
    first, second = header.items
    variants = {
        "ciphertext first byte": dataclasses.replace(message, ciphertext=_flip(message.ciphertext, 0)),
        "ciphertext last byte": dataclasses.replace(message, ciphertext=_flip(message.ciphertext, -1)),
        "wrapped key": dataclasses.replace(message, wrapped_keys=(_flip(wrapped[0], 3), wrapped[1])),
        "GCM tag": dataclasses.replace(message, wrapped_keys=(wrapped[0], _flip(wrapped[1], -1))),
        "wrapped keys swapped": dataclasses.replace(message, wrapped_keys=(wrapped[1], wrapped[0])),
        "signature": dataclasses.replace(message, signature=_flip(message.signature, 100)),
        "items reordered": dataclasses.replace(
            message, header=dataclasses.replace(header, items=(second, first)), wrapped_keys=(wrapped[1], wrapped[0])
        ),
        "an item dropped": dataclasses.replace(
            message, header=dataclasses.replace(header, items=(first,)), wrapped_keys=(wrapped[0],)
        ),
        "header mode qkd+pqc": _with_header(message, mode=HopMode.QKD_PQC, qkd_key_id=str(uuid.uuid4())),
        "header qkd_use otp": _with_header(message, qkd_use=QkdUse.OTP),
    }
    for name, value in {
        "timestamp_ms": header.timestamp_ms - 1,
        "nonce": _flip(header.nonce, 0),
        "frame_id": uuid.uuid4().bytes,
        "ek_hash": _flip(header.ek_hash, 0),
        "receiver": "GW3",
        "sender": "GW3",
    }.items():
        variants[f"header {name}"] = _with_header(message, **{name: value})
    item_changes: dict[str, object] = {
        "transfer_id": uuid.uuid4().bytes,
        "hop": 1,
        "path": ("GW1", "GW2", "GW3"),
        "initiator": "SAE-X-A",
        "target": "SAE-R2-B",
        "key_id": str(uuid.uuid4()),
        "extension_json": '{"E1": 1}',
        "no_degrade": True,
    }
    for name, value in item_changes.items():
        variants[f"item {name}"] = _with_item(message, 1, **{name: value})
    encoded = {name: variant.to_bytes() for name, variant in variants.items()}
    raw = message.to_bytes()
    assert raw not in encoded.values()
    encoded["raw byte in header"] = _flip(raw, 40)
    encoded["truncated"] = raw[:-1]
    encoded["extended"] = raw + b"\x00"
    return encoded


def test_tampered_frames_are_refused_and_store_nothing(bed: ThreadedTestbed) -> None:
    frame = seal_by_hand(bed, [entry(), entry(initiator="SAE-R1-B")])
    assert {field.name for field in dataclasses.fields(ItemHeader)} - {"key_size", "pad_key_ids"} <= {
        name.removeprefix("item ") for name in _tampered(frame.message)
    }, "every item field a receiver acts on is tampered with (key_size and pads: by from_bytes' size checks)"
    for name, sealed in _tampered(frame.message).items():
        code, details = _sent(bed, sealed)
        assert code in REFUSED, f"{name}: {code.name} {details}"
        assert details and all(e.key.hex() not in details for e in frame.entries), f"{name}: {details}"
    for sealed in frame.entries:
        assert fetch(bed, sealed.target, sealed.initiator, sealed.key_id).status_code == 400
    # the control: the untampered frame is still accepted (forgeries burned neither its record, nor its
    # replay entry, nor any key)
    outcomes = frame.outcomes(relay_as(bed, "GW1", "GW2", frame.request))
    assert [(o.outcome, o.detail) for o in outcomes] == [(Outcome.STORED, "GW2")] * 2
    _assert_stored_once(bed, frame)


def test_the_request_carries_nothing_outside_the_signed_frame(bed: ThreadedTestbed) -> None:
    """Where the hop RPC had outer fields, the frame RPC has none: an item's route, target or SAE pair
    changed after sealing (what an outer field could once have said) fails the signature, and stores
    nothing anywhere."""
    assert [field.name for field in pb.RelayFrameRequest.DESCRIPTOR.fields] == ["sealed_frame"]
    frame = seal_by_hand(bed)
    rerouted = _with_item(frame.message, 0, path=("GW1", "GW2", "GW3"), target="SAE-R3-A")
    code, details = _sent(bed, rerouted)
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "BadSignature" in details, details
    another_pair = _with_item(frame.message, 0, initiator="SAE-R1-B")
    code, details = _sent(bed, another_pair)
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "BadSignature" in details, details
    assert fetch(bed, "SAE-R3-A", "SAE-R1-A", frame.key_id).status_code == 400
    assert fetch(bed, "SAE-R2-A", "SAE-R1-B", frame.key_id).status_code == 400
    [outcome] = frame.outcomes(relay_as(bed, "GW1", "GW2", frame.request))
    assert outcome.outcome is Outcome.STORED
