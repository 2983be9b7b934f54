"""Frame header encoding: injective, canonical, a decoder that only raises MalformedMessage, and the
construction-time invariants (mode and QKD key_IDs, pads exactly on otp frames, no shared QKD key)."""

import contextlib
import dataclasses
import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.crypto.encoding import decode_fields, encode_fields, encode_uint
from relay.crypto.errors import MalformedMessage
from relay.crypto.header import (
    MAX_FRAME_KEYS,
    FrameHeader,
    HopMode,
    ItemHeader,
    QkdUse,
    pad_keys_needed,
)
from relay.crypto.suites import SUITES

texts = st.text(min_size=1, max_size=40)
FRAME_FIELDS = 14
ITEM_FIELDS = 10


@st.composite
def items(draw: st.DrawFn, transfer_id: bytes, pad_base: str | None) -> ItemHeader:
    """One item; with ``pad_base`` its pad key_IDs are ``pad_base#<n>`` (unique within the frame)."""
    key_size = draw(st.integers(1, 1024))
    return ItemHeader(
        transfer_id=transfer_id,
        hop=draw(st.integers(0, 2**16 - 1)),
        path=tuple(draw(st.lists(texts, min_size=2, max_size=16))),
        initiator=draw(texts),
        target=draw(texts),
        key_id=draw(texts),
        key_size=key_size,
        pad_key_ids=() if pad_base is None else tuple(f"{pad_base}#{n}" for n in range(pad_keys_needed(key_size))),
        extension_json=draw(st.text(max_size=40)),
        no_degrade=draw(st.booleans()),
    )


@st.composite
def headers(draw: st.DrawFn) -> FrameHeader:
    mode = draw(st.sampled_from(list(HopMode)))
    qkd_use = draw(st.sampled_from(list(QkdUse)))
    padded = mode is HopMode.QKD_PQC and qkd_use is QkdUse.OTP
    transfer_ids = draw(st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=4, unique=True))
    pad_base = draw(texts)
    return FrameHeader(
        suite=draw(st.sampled_from(list(SUITES.values()))),
        mode=mode,
        qkd_use=qkd_use,
        frame_id=draw(st.binary(min_size=16, max_size=16)),
        sender=draw(texts),
        receiver=draw(texts),
        ek_id=draw(st.binary(min_size=16, max_size=16)),
        ek_hash=draw(st.binary(min_size=32, max_size=32)),
        timestamp_ms=draw(st.integers(0, 2**64 - 1)),
        nonce=draw(st.binary(min_size=32, max_size=32)),
        # pad key_IDs contain '#', so the combiner's never equals one of them
        qkd_key_id="" if mode is HopMode.PQC_ONLY else draw(texts.filter(lambda text: "#" not in text)),
        items=tuple(
            draw(items(transfer_id, f"{pad_base}/{index}" if padded else None))
            for index, transfer_id in enumerate(transfer_ids)
        ),
    )


@settings(max_examples=100)
@given(headers())
def test_decode_inverts_encode(header: FrameHeader) -> None:
    assert FrameHeader.decode(header.encode()) == header


@settings(max_examples=100)
@given(headers(), headers())
def test_encoding_is_injective(first: FrameHeader, second: FrameHeader) -> None:
    assert (first.encode() == second.encode()) == (first == second)


@settings(max_examples=100)
@given(headers(), st.data())
def test_mutated_encodings_decode_canonically_or_raise(header: FrameHeader, data: st.DataObject) -> None:
    """Any byte string either is the unique encoding of a header or raises MalformedMessage."""
    encoded = bytearray(header.encode())
    index = data.draw(st.integers(0, len(encoded) - 1))
    encoded[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    for candidate in (bytes(encoded), bytes(encoded[:cut])):
        try:
            decoded = FrameHeader.decode(candidate)
        except MalformedMessage:
            continue
        assert decoded.encode() == candidate


@settings(max_examples=100)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_escape_as_other_errors(data: bytes) -> None:
    with contextlib.suppress(MalformedMessage):
        FrameHeader.decode(data)


@pytest.mark.parametrize(("size", "needed"), [(1, 1), (31, 1), (32, 1), (33, 2), (64, 2), (65, 3), (1024, 32)])
def test_a_pad_takes_whole_qkd_keys(size: int, needed: int) -> None:
    assert pad_keys_needed(size) == needed


def _item(key_size: int = 32, pads: int = 0, **changes: Any) -> ItemHeader:
    fields: dict[str, Any] = {
        "transfer_id": os.urandom(16),
        "hop": 1,
        "path": ("gw-0", "gw-1", "gw-2"),
        "initiator": "SAE-A",
        "target": "SAE-B",
        "key_id": str(uuid.uuid4()),
        "key_size": key_size,
        "pad_key_ids": tuple(str(uuid.uuid4()) for _ in range(pads)),
    }
    return ItemHeader(**(fields | changes))


def _sample(qkd_use: QkdUse = QkdUse.OTP) -> FrameHeader:
    """A qkd+pqc frame of two items (32 and 33 bytes), padded when ``qkd_use`` is otp."""
    otp = qkd_use is QkdUse.OTP
    return FrameHeader(
        suite=SUITES["A"],
        mode=HopMode.QKD_PQC,
        qkd_use=qkd_use,
        frame_id=os.urandom(16),
        sender="gw-1",
        receiver="gw-2",
        ek_id=os.urandom(16),
        ek_hash=os.urandom(32),
        timestamp_ms=1_800_000_000_000,
        nonce=os.urandom(32),
        qkd_key_id="5b0ad7a4-0c1e-4f54-9d29-2a3c4e6f8a90",
        items=(_item(32, 1 if otp else 0), _item(33, 2 if otp else 0)),
    )


def test_qkd_key_ids_are_the_combiners_then_each_pad_in_item_order() -> None:
    header = _sample()
    assert header.qkd_key_ids == (header.qkd_key_id, *header.items[0].pad_key_ids, *header.items[1].pad_key_ids)
    assert _sample(QkdUse.HKDF).qkd_key_ids == (header.qkd_key_id,)
    pqc = dataclasses.replace(_sample(QkdUse.HKDF), mode=HopMode.PQC_ONLY, qkd_key_id="")
    assert pqc.qkd_key_ids == ()


def _replace_item(header: FrameHeader, index: int, **changes: Any) -> dict[str, Any]:
    items = list(header.items)
    items[index] = dataclasses.replace(items[index], **changes)
    return {"items": tuple(items)}


Changes = Callable[[FrameHeader], dict[str, Any]]


@pytest.mark.parametrize(
    ("base", "changes"),
    [
        (QkdUse.OTP, lambda h: {"mode": HopMode.PQC_ONLY}),  # pqc-only with a QKD key_ID (and pads)
        (QkdUse.HKDF, lambda h: {"qkd_key_id": ""}),  # qkd+pqc without one
        (QkdUse.HKDF, lambda h: {"frame_id": bytes(15)}),
        (QkdUse.HKDF, lambda h: {"nonce": bytes(31)}),
        (QkdUse.HKDF, lambda h: {"ek_hash": bytes(31)}),
        (QkdUse.HKDF, lambda h: {"timestamp_ms": 2**64}),
        (QkdUse.HKDF, lambda h: {"sender": ""}),
        (QkdUse.HKDF, lambda h: {"receiver": "x" * 256}),
        (QkdUse.HKDF, lambda h: {"items": ()}),
        (QkdUse.OTP, lambda h: {"qkd_use": QkdUse.HKDF}),  # pads on an hkdf frame
        (QkdUse.HKDF, lambda h: {"qkd_use": QkdUse.OTP}),  # an otp frame without pads
        (QkdUse.OTP, lambda h: {"qkd_key_id": h.items[1].pad_key_ids[1]}),  # the combiner's key is also a pad
        (QkdUse.OTP, lambda h: _replace_item(h, 1, pad_key_ids=(h.items[0].pad_key_ids[0], "other"))),  # shared
        (QkdUse.HKDF, lambda h: _replace_item(h, 1, transfer_id=h.items[0].transfer_id)),  # a transfer twice
    ],
)
def test_invalid_frame_headers_cannot_be_built(base: QkdUse, changes: Changes) -> None:
    header = _sample(base)
    with pytest.raises(ValueError):
        dataclasses.replace(header, **changes(header))


def test_frame_holds_at_most_max_frame_keys() -> None:
    header = _sample(QkdUse.HKDF)
    full = tuple(_item() for _ in range(MAX_FRAME_KEYS))
    assert len(FrameHeader.decode(dataclasses.replace(header, items=full).encode()).items) == MAX_FRAME_KEYS
    with pytest.raises(ValueError, match="1..4096"):
        dataclasses.replace(header, items=(*full, _item()))


@pytest.mark.parametrize(
    "changes",
    [
        {"transfer_id": bytes(15)},
        {"hop": 2**16},
        {"key_size": 0},
        {"key_size": 1025},
        {"path": ("gw-0",)},
        {"path": tuple(f"gw-{n}" for n in range(17))},
        {"path": ("gw-0", "")},
        {"initiator": ""},
        {"target": "x" * 256},
        {"key_id": ""},
        {"extension_json": "x" * 8193},
        {"key_size": 33, "pad_key_ids": ("only-one",)},  # 33 bytes take two pad keys
        {"key_size": 32, "pad_key_ids": ("one", "two")},  # a pad never spans more QKD keys than needed
        {"pad_key_ids": ("",)},
    ],
)
def test_invalid_items_cannot_be_built(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _item(**changes)


def _reencode(header: FrameHeader, index: int, value: bytes) -> bytes:
    """Replace frame field ``index`` of the encoding, keeping the framing valid."""
    fields = decode_fields(header.encode(), FRAME_FIELDS)
    fields[index] = value
    return encode_fields(*fields)


def _reencode_item(header: FrameHeader, index: int, value: bytes) -> bytes:
    """Replace field ``index`` of the first item's encoding, keeping every framing valid."""
    items = decode_fields(decode_fields(header.encode(), FRAME_FIELDS)[13], len(header.items))
    fields = decode_fields(items[0], ITEM_FIELDS)
    fields[index] = value
    return _reencode(header, 13, encode_fields(encode_fields(*fields), *items[1:]))


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (0, b"QKDRELAY-v1"),  # the v1 (one key per hop) label
        (1, b"Z"),  # unknown suite
        (2, b"qkd-only"),  # unknown mode
        (3, b"xor"),  # unknown qkd_use
        (4, bytes(15)),  # frame_id not 16 bytes
        (5, b"\xff\xfe"),  # sender not UTF-8
        (9, b"\x00" * 7),  # timestamp not u64
        (12, encode_uint(3, 2)),  # item count says 3, two items follow
        (12, encode_uint(1, 2)),  # item count says 1: trailing bytes
        (12, b"\x02"),  # item count not u16
    ],
)
def test_decoder_rejects_bad_frame_fields(index: int, value: bytes) -> None:
    with pytest.raises(MalformedMessage):
        FrameHeader.decode(_reencode(_sample(), index, value))


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (0, bytes(17)),  # transfer_id not 16 bytes
        (1, b"\x00\x00\x03"),  # hop not u16
        (2, b""),  # path without its count byte
        (2, b"\x03" + encode_fields(b"gw-0", b"gw-1")),  # path count says 3, two follow
        (5, b"\xc3"),  # key_ID not UTF-8
        (6, encode_uint(64, 2)),  # |K| = 64 takes two pad keys, the item names one
        (7, b"\x00"),  # no pad on an otp frame
        (9, b"\x02"),  # no_degrade neither 0 nor 1
        (9, b""),  # no_degrade not u8
    ],
)
def test_decoder_rejects_bad_item_fields(index: int, value: bytes) -> None:
    with pytest.raises(MalformedMessage):
        FrameHeader.decode(_reencode_item(_sample(), index, value))


def test_decoder_rejects_framing_errors() -> None:
    encoded = _sample().encode()
    for bad in (b"", encoded[:-1], encoded + b"\x00", b"\xff\xff\xff\xff" + encoded[4:]):
        with pytest.raises(MalformedMessage):
            FrameHeader.decode(bad)
