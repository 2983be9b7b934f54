"""One strict JSON parser for the HTTP interfaces (014 and 020 request bodies, 020 peers' answers).

Python's ``json`` module is lenient where a key-management API must not be: it keeps the last of
duplicate members (so two parsers could read two different requests from one body), accepts ``NaN`` and
``Infinity``, and lets a string carry an unpaired surrogate that no UTF-8 system downstream can store.
Hostile nesting or a huge integer makes it raise ``RecursionError`` or a bare ``ValueError``, which a
server would report as its own failure. Here each of those is a :class:`StrictJsonError` with a stable
``kind``, so each interface maps it onto its own 400 error type.
"""

from __future__ import annotations

import json
import re
from typing import Any

NOT_UTF8 = "not_utf8"
MALFORMED_JSON = "malformed_json"
DUPLICATE_MEMBER = "duplicate_member"
LIMIT_EXCEEDED = "limit_exceeded"

_SURROGATE = re.compile("[\ud800-\udfff]")


class StrictJsonError(ValueError):
    """The body is not strict JSON; ``kind`` is one of the module's constants, ``message`` says why."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def parse_strict_json(raw: bytes) -> Any:
    """Decode ``raw`` as UTF-8 JSON (RFC 8259) with unique member names and finite numbers only."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StrictJsonError(NOT_UTF8, f"not UTF-8 (invalid byte at offset {exc.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_unique_members, parse_constant=_no_constant)
    except StrictJsonError:
        raise  # from the hooks: already says what is wrong
    except json.JSONDecodeError as exc:
        raise StrictJsonError(MALFORMED_JSON, f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise StrictJsonError(LIMIT_EXCEEDED, "arrays or objects nested too deeply") from None
    except ValueError as exc:  # after JSONDecodeError: what is left is the int-digits limit (CVE-2020-10735)
        raise StrictJsonError(LIMIT_EXCEEDED, f"a number is too long: {exc}"[:200]) from None
    if _has_unpaired_surrogate(value):
        raise StrictJsonError(NOT_UTF8, "a string escapes an unpaired surrogate, which has no UTF-8 form")
    return value


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise StrictJsonError(DUPLICATE_MEMBER, f"JSON member {name[:64]!r} appears more than once")
        result[name] = value
    return result


def _no_constant(name: str) -> Any:
    raise StrictJsonError(MALFORMED_JSON, f"not valid JSON: {name} is not a JSON value")


def _has_unpaired_surrogate(value: Any) -> bool:
    """``json`` joins escaped surrogate pairs into one character, so any surrogate left is unpaired."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
