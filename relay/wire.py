"""Wire encodings shared by the ETSI interfaces: base64 key data (RFC 4648, Table 1).

Each returns None on bad input so that every interface raises its own error type (014 Error bodies,
020 problem details) without catching another interface's exceptions.
"""

from __future__ import annotations

import base64
import binascii


def strict_base64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
