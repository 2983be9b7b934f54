"""Header encoding: injective, canonical, and a decoder that only raises MalformedMessage."""

import contextlib
import dataclasses
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.crypto.encoding import decode_fields, encode_fields
from relay.crypto.errors import MalformedMessage
from relay.crypto.header import HopHeader, HopMode
from relay.crypto.suites import SUITES

texts = st.text(min_size=1, max_size=40)


@st.composite
def headers(draw: st.DrawFn) -> HopHeader:
    mode = draw(st.sampled_from(list(HopMode)))
    return HopHeader(
        suite=draw(st.sampled_from(list(SUITES.values()))),
        mode=mode,
        transfer_id=draw(st.binary(min_size=16, max_size=16)),
        hop=draw(st.integers(0, 2**16 - 1)),
        sender=draw(texts),
        receiver=draw(texts),
        qkd_key_id="" if mode is HopMode.PQC_ONLY else draw(texts),
        ek_id=draw(st.binary(min_size=16, max_size=16)),
        ek_hash=draw(st.binary(min_size=32, max_size=32)),
        timestamp_ms=draw(st.integers(0, 2**64 - 1)),
        nonce=draw(st.binary(min_size=32, max_size=32)),
        key_id=draw(texts),
        key_size=draw(st.integers(1, 1024)),
    )


@settings(max_examples=100)
@given(headers())
def test_decode_inverts_encode(header: HopHeader) -> None:
    assert HopHeader.decode(header.encode()) == header


@settings(max_examples=100)
@given(headers(), headers())
def test_encoding_is_injective(first: HopHeader, second: HopHeader) -> None:
    assert (first.encode() == second.encode()) == (first == second)


@settings(max_examples=100)
@given(headers(), st.data())
def test_mutated_encodings_decode_canonically_or_raise(header: HopHeader, data: st.DataObject) -> None:
    """Any byte string either is the unique encoding of a header or raises MalformedMessage."""
    encoded = bytearray(header.encode())
    index = data.draw(st.integers(0, len(encoded) - 1))
    encoded[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    for candidate in (bytes(encoded), bytes(encoded[:cut])):
        try:
            decoded = HopHeader.decode(candidate)
        except MalformedMessage:
            continue
        assert decoded.encode() == candidate


@settings(max_examples=100)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_escape_as_other_errors(data: bytes) -> None:
    with contextlib.suppress(MalformedMessage):
        HopHeader.decode(data)


def _sample() -> HopHeader:
    return HopHeader(
        suite=SUITES["A"],
        mode=HopMode.QKD_PQC,
        transfer_id=os.urandom(16),
        hop=3,
        sender="gw-1",
        receiver="gw-2",
        qkd_key_id="5b0ad7a4-0c1e-4f54-9d29-2a3c4e6f8a90",
        ek_id=os.urandom(16),
        ek_hash=os.urandom(32),
        timestamp_ms=1_800_000_000_000,
        nonce=os.urandom(32),
        key_id="9f1c2e47-1111-4c3b-8f0e-0123456789ab",
        key_size=32,
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"mode": HopMode.PQC_ONLY},  # pqc-only with a QKD key_ID
        {"qkd_key_id": ""},  # qkd+pqc without one
        {"transfer_id": bytes(15)},
        {"nonce": bytes(31)},
        {"hop": 2**16},
        {"key_size": 0},
        {"key_size": 1025},
        {"sender": ""},
        {"key_id": "x" * 256},
    ],
)
def test_invalid_headers_cannot_be_built(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(_sample(), **changes)


def _reencode(header: HopHeader, index: int, value: bytes) -> bytes:
    """Replace field ``index`` of the encoding, keeping the framing valid."""
    fields = decode_fields(header.encode(), 14)
    fields[index] = value
    return encode_fields(*fields)


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (0, b"QKDRELAY-v2"),  # label / version
        (1, b"Z"),  # unknown suite
        (2, b"qkd-only"),  # unknown mode
        (4, b"\x00\x00\x03"),  # hop not u16
        (5, b"\xff\xfe"),  # sender not UTF-8
        (10, b"\x00" * 7),  # timestamp not u64
    ],
)
def test_decoder_rejects_bad_fields(index: int, value: bytes) -> None:
    with pytest.raises(MalformedMessage):
        HopHeader.decode(_reencode(_sample(), index, value))


def test_decoder_rejects_framing_errors() -> None:
    encoded = _sample().encode()
    for bad in (b"", encoded[:-1], encoded + b"\x00", b"\xff\xff\xff\xff" + encoded[4:]):
        with pytest.raises(MalformedMessage):
            HopHeader.decode(bad)
