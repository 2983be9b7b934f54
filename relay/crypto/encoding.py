"""Injective length-prefixed encoding shared by every hashed, signed or transmitted structure.

Each field is preceded by its byte length as u32 big-endian (the ``f()`` of ETSI TS 103 744 s7.2.2, with
byte rather than hex-character lengths). Because each field carries its own length, two different field
tuples never encode to the same bytes, which is what makes it safe to hash or sign the encoding instead
of the structure.
"""

import struct

from relay.crypto.errors import MalformedMessage

_LENGTH = struct.Struct(">I")


def encode_fields(*fields: bytes) -> bytes:
    """Concatenate ``u32be(len(f)) || f`` for each field, in order."""
    return b"".join(_LENGTH.pack(len(field)) + field for field in fields)


def decode_fields(data: bytes, count: int) -> list[bytes]:
    """Split ``data`` into exactly ``count`` fields, rejecting truncation and trailing bytes."""
    fields: list[bytes] = []
    offset = 0
    for _ in range(count):
        if len(data) - offset < _LENGTH.size:
            raise MalformedMessage(f"truncated before field {len(fields)}")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if length > len(data) - offset:
            raise MalformedMessage(f"field {len(fields)} claims {length} bytes, only {len(data) - offset} left")
        fields.append(bytes(data[offset : offset + length]))
        offset += length
    if offset != len(data):
        raise MalformedMessage(f"{len(data) - offset} trailing bytes after {count} fields")
    return fields


def encode_uint(value: int, width: int) -> bytes:
    """Fixed-width big-endian encoding, so that an integer has exactly one byte representation."""
    return value.to_bytes(width, "big")


def parse_uint(field: bytes, width: int, name: str) -> int:
    """Inverse of :func:`encode_uint`; any other width is refused to keep the encoding canonical."""
    if len(field) != width:
        raise MalformedMessage(f"{name} must be {width} bytes, got {len(field)}")
    return int.from_bytes(field, "big")


def parse_text(field: bytes, name: str) -> str:
    """Strict UTF-8 decoding, so that a text field has exactly one byte representation."""
    try:
        return field.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage(f"{name} is not valid UTF-8") from None
